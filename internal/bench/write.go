// Package bench holds the measurements behind `pebble-ae bench`: each one
// runs pebble-ae and its baseline side by side in one process, on the same
// machine, with the same data.
package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/reconcile"
)

// WriteConfig configures the write-path benchmark.
type WriteConfig struct {
	Dir       string // scratch directory (default: a temp dir)
	Keys      int    // number of writes (default 1e6)
	KeySize   int    // default 16
	ValueSize int    // default 100
	BatchSize int    // default 100 (LWW); causal writes are single ops
	Mode      reconcile.Mode
	Seed      uint64
}

// WriteResult is what the write-path benchmark measured.
type WriteResult struct {
	Mode            string  `json:"mode"`
	Keys            int     `json:"keys"`
	BatchSize       int     `json:"batch_size"`
	EngineOpsPerSec float64 `json:"engine_ops_per_sec"`
	PebbleOpsPerSec float64 `json:"pebble_ops_per_sec"`
	Ratio           float64 `json:"ratio"`
	Baseline        string  `json:"baseline"`
	EngineSeconds   float64 `json:"engine_seconds"`
	PebbleSeconds   float64 `json:"pebble_seconds"`
	MarkersWritten  uint64  `json:"markers_written"`
	TreeLeaves      int     `json:"tree_leaves"`
}

func (c *WriteConfig) defaults() {
	if c.Keys == 0 {
		c.Keys = 1_000_000
	}
	if c.KeySize == 0 {
		c.KeySize = 16
	}
	if c.ValueSize == 0 {
		c.ValueSize = 100
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	if c.Mode == 0 {
		c.Mode = reconcile.ModeLWW
	}
}

func keyAt(dst []byte, rng *rand.Rand) []byte {
	for i := 0; i < len(dst); i += 8 {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], rng.Uint64())
		copy(dst[i:], b[:])
	}
	// Keep keys out of the reserved space.
	if dst[0] == 0xff {
		dst[0] = 0xfe
	}
	return dst
}

func scratchDir(dir, name string) (string, func(), error) {
	if dir == "" {
		d, err := os.MkdirTemp("", "pebble-ae-bench-")
		if err != nil {
			return "", nil, err
		}
		return filepath.Join(d, name), func() { os.RemoveAll(d) }, nil
	}
	p := filepath.Join(dir, name)
	if err := os.RemoveAll(p); err != nil {
		return "", nil, err
	}
	return p, func() { os.RemoveAll(p) }, nil
}

// Write measures the engine's write path against raw Pebble in one run: the
// same keys, values, batch size and sync mode (NoSync), each on a fresh DB
// on disk. LWW is compared with raw Pebble Set; causal with raw Pebble
// Get+Set (the read is inherent to causal mode).
func Write(ctx context.Context, cfg WriteConfig) (WriteResult, error) {
	cfg.defaults()
	res := WriteResult{Mode: cfg.Mode.String(), Keys: cfg.Keys, BatchSize: cfg.BatchSize}
	value := make([]byte, cfg.ValueSize)
	for i := range value {
		value[i] = byte(i)
	}
	causal := cfg.Mode == reconcile.ModeCausal
	if causal {
		res.Baseline = "pebble Get+Set"
	} else {
		res.Baseline = "pebble Set"
	}

	// Raw Pebble.
	pdir, cleanup, err := scratchDir(cfg.Dir, "pebble")
	if err != nil {
		return res, err
	}
	defer cleanup()
	db, err := pebble.Open(pdir, &pebble.Options{FormatMajorVersion: engine.FormatMajorVersion, Logger: silent{}})
	if err != nil {
		return res, err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	key := make([]byte, cfg.KeySize)
	start := time.Now()
	for i := 0; i < cfg.Keys; {
		b := db.NewBatch()
		for j := 0; j < cfg.BatchSize && i < cfg.Keys; j, i = j+1, i+1 {
			keyAt(key, rng)
			if causal {
				if _, closer, err := db.Get(key); err == nil {
					closer.Close()
				}
			}
			if err := b.Set(key, value, nil); err != nil {
				return res, err
			}
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			return res, err
		}
		b.Close()
	}
	res.PebbleSeconds = time.Since(start).Seconds()
	if err := db.Close(); err != nil {
		return res, err
	}

	// The engine.
	edir, cleanup2, err := scratchDir(cfg.Dir, "engine")
	if err != nil {
		return res, err
	}
	defer cleanup2()
	e, err := engine.Open(edir, &engine.Options{ReplicaID: "bench", Mode: cfg.Mode})
	if err != nil {
		return res, err
	}
	rng = rand.New(rand.NewPCG(cfg.Seed, 1))
	start = time.Now()
	if causal {
		for i := 0; i < cfg.Keys; i++ {
			keyAt(key, rng)
			if err := e.Put(ctx, key, value, engine.NoSync); err != nil {
				return res, err
			}
		}
	} else {
		for i := 0; i < cfg.Keys; {
			b := e.NewBatch()
			for j := 0; j < cfg.BatchSize && i < cfg.Keys; j, i = j+1, i+1 {
				keyAt(key, rng)
				if err := b.Put(key, value); err != nil {
					return res, err
				}
			}
			if err := b.Commit(ctx, engine.NoSync); err != nil {
				return res, err
			}
		}
	}
	res.EngineSeconds = time.Since(start).Seconds()
	st := e.Tree().Stats()
	res.MarkersWritten = st.MarkersWritten
	for _, p := range e.Tree().Partitions() {
		res.TreeLeaves += p.Leaves
	}
	if err := e.Close(); err != nil {
		return res, err
	}
	res.PebbleOpsPerSec = float64(cfg.Keys) / res.PebbleSeconds
	res.EngineOpsPerSec = float64(cfg.Keys) / res.EngineSeconds
	res.Ratio = res.EngineOpsPerSec / res.PebbleOpsPerSec
	return res, nil
}

type silent struct{}

func (silent) Infof(string, ...interface{})  {}
func (silent) Errorf(string, ...interface{}) {}
func (silent) Fatalf(format string, args ...interface{}) {
	panic(fmt.Sprintf(format, args...))
}
