package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/merkle"
)

// RebuildConfig configures the rebuild benchmark.
type RebuildConfig struct {
	Dir      string
	Keys     int
	LeafSize uint32
	Seed     uint64
}

// RebuildResult is what the rebuild benchmark measured.
type RebuildResult struct {
	Keys               int     `json:"keys"`
	LeafSize           uint32  `json:"leaf_size"`
	KeysPerSec         float64 `json:"keys_per_sec"`
	ScanHashKeysPerSec float64 `json:"scan_hash_keys_per_sec"`
	Ratio              float64 `json:"ratio"`
	Seconds            float64 `json:"seconds"`
	ScanHashSeconds    float64 `json:"scan_hash_seconds"`
	Leaves             int     `json:"leaves"`
	TreeMemoryBytes    int     `json:"tree_memory_bytes"`
}

// Rebuild loads Keys records into an engine, then measures, on the same DB,
// a full tree rebuild against the floor: a plain Pebble scan that BLAKE3s
// every (key, value) with the same leaf digest function.
func Rebuild(ctx context.Context, cfg RebuildConfig) (RebuildResult, error) {
	if err := nonNegative(intField{"keys", cfg.Keys}); err != nil {
		return RebuildResult{}, err
	}
	if cfg.Keys == 0 {
		cfg.Keys = 1_000_000
	}
	params := merkle.Params{LeafSize: cfg.LeafSize}.EnsureDefaults()
	if err := params.Validate(); err != nil {
		return RebuildResult{}, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	res := RebuildResult{Keys: cfg.Keys, LeafSize: params.LeafSize}
	dir, cleanup, err := scratchDir(cfg.Dir, "rebuild")
	if err != nil {
		return res, err
	}
	defer cleanup()
	e, err := engine.Open(dir, &engine.Options{ReplicaID: "bench", Tree: params, CheckpointInterval: -1})
	if err != nil {
		return res, err
	}
	defer e.Close()
	rng := rand.New(rand.NewPCG(cfg.Seed, 2))
	key := make([]byte, 16)
	value := make([]byte, 100)
	for i := 0; i < cfg.Keys; {
		b := e.NewBatch()
		for j := 0; j < 1000 && i < cfg.Keys; j, i = j+1, i+1 {
			if err := b.Put(keyAt(key, rng), value); err != nil {
				return res, err
			}
		}
		if err := b.Commit(ctx, engine.NoSync); err != nil {
			return res, err
		}
	}
	if err := e.DB().Flush(); err != nil {
		return res, err
	}

	// The floor (a plain scan + BLAKE3 of every record) and the rebuild
	// alternate three times on the same DB; the best run of each counts.
	n := 0
	for round := 0; round < 3; round++ {
		start := time.Now()
		it, err := merkle.NewUserIter(ctx, e.DB(), nil, nil)
		if err != nil {
			return res, err
		}
		var sum merkle.Sum
		var scratch []byte
		var d merkle.Digest
		n = 0
		for valid := it.First(); valid; valid = it.Next() {
			d, scratch = merkle.LeafDigest(scratch, it.Key(), it.Value())
			sum = sum.Add(d)
			n++
		}
		if err := it.Close(); err != nil {
			return res, err
		}
		if secs := time.Since(start).Seconds(); round == 0 || secs < res.ScanHashSeconds {
			res.ScanHashSeconds = secs
		}
		if err := e.Tree().MarkRebuild(ctx, -1); err != nil {
			return res, err
		}
		start = time.Now()
		if err := e.Tree().Rebuild(ctx, nil); err != nil {
			return res, err
		}
		if secs := time.Since(start).Seconds(); round == 0 || secs < res.Seconds {
			res.Seconds = secs
		}
	}
	for _, p := range e.Tree().Partitions() {
		res.Leaves += p.Leaves
	}
	res.TreeMemoryBytes = e.Tree().MemoryBytes()
	res.KeysPerSec = float64(n) / res.Seconds
	res.ScanHashKeysPerSec = float64(n) / res.ScanHashSeconds
	res.Ratio = res.KeysPerSec / res.ScanHashKeysPerSec
	return res, nil
}
