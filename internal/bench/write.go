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
	Rounds    int // alternating runs of each side; the best counts (default 3)
}

// WriteResult is what the write-path benchmark measured.
type WriteResult struct {
	Mode            string  `json:"mode"`
	Keys            int     `json:"keys"`
	BatchSize       int     `json:"batch_size"`
	Rounds          int     `json:"rounds"`
	EngineOpsPerSec float64 `json:"engine_ops_per_sec"`
	PebbleOpsPerSec float64 `json:"pebble_ops_per_sec"`
	Ratio           float64 `json:"ratio"`
	Baseline        string  `json:"baseline"`
	EngineSeconds   float64 `json:"engine_seconds"`
	PebbleSeconds   float64 `json:"pebble_seconds"`
	MarkersWritten  uint64  `json:"markers_written"`
	// RecordBytes is the length of one encoded record (the value the engine
	// stores); the same-bytes baseline writes raw values of that length.
	RecordBytes              int     `json:"record_bytes"`
	PebbleSameBytesOpsPerSec float64 `json:"pebble_same_bytes_ops_per_sec,omitempty"`
	PebbleSameBytesSeconds   float64 `json:"pebble_same_bytes_seconds,omitempty"`
	RatioSameBytes           float64 `json:"ratio_same_bytes,omitempty"`
	TreeLeaves               int     `json:"tree_leaves"`
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
// on disk. LWW is compared with raw Pebble Set in batches; causal (whose
// puts are single read-modify-writes) with raw Pebble Get+Set, one op per
// commit. The two sides alternate Rounds times (default 3) and the best run
// of each counts, so that background noise on the machine hits both alike.
func Write(ctx context.Context, cfg WriteConfig) (WriteResult, error) {
	cfg.defaults()
	if cfg.Rounds == 0 {
		cfg.Rounds = 3
	}
	res := WriteResult{Mode: cfg.Mode.String(), Keys: cfg.Keys, BatchSize: cfg.BatchSize, Rounds: cfg.Rounds}
	causal := cfg.Mode == reconcile.ModeCausal
	if causal {
		res.Baseline = "pebble Get+Set"
		res.BatchSize = 1
	} else {
		res.Baseline = "pebble Set"
	}
	// The same writes with values as long as the engine's encoded records:
	// what the record format itself costs Pebble.
	sameBytes := cfg
	sameBytes.ValueSize = len(reconcile.NewLWW("bench", reconcile.NewHLC(nil).Now(), benchValue(cfg.ValueSize), false).Encode())
	res.RecordBytes = sameBytes.ValueSize
	for r := 0; r < cfg.Rounds; r++ {
		ps, err := writePebble(cfg)
		if err != nil {
			return res, err
		}
		if !causal {
			pb, err := writePebble(sameBytes)
			if err != nil {
				return res, err
			}
			if r == 0 || pb < res.PebbleSameBytesSeconds {
				res.PebbleSameBytesSeconds = pb
			}
		}
		es, markers, leaves, err := writeEngine(ctx, cfg)
		if err != nil {
			return res, err
		}
		if r == 0 || ps < res.PebbleSeconds {
			res.PebbleSeconds = ps
		}
		if r == 0 || es < res.EngineSeconds {
			res.EngineSeconds = es
		}
		res.MarkersWritten, res.TreeLeaves = markers, leaves
	}
	res.PebbleOpsPerSec = float64(cfg.Keys) / res.PebbleSeconds
	res.EngineOpsPerSec = float64(cfg.Keys) / res.EngineSeconds
	res.Ratio = res.EngineOpsPerSec / res.PebbleOpsPerSec
	if res.PebbleSameBytesSeconds > 0 {
		res.PebbleSameBytesOpsPerSec = float64(cfg.Keys) / res.PebbleSameBytesSeconds
		res.RatioSameBytes = res.EngineOpsPerSec / res.PebbleSameBytesOpsPerSec
	}
	return res, nil
}

func benchValue(n int) []byte {
	value := make([]byte, n)
	for i := range value {
		value[i] = byte(i)
	}
	return value
}

func writePebble(cfg WriteConfig) (float64, error) {
	dir, cleanup, err := scratchDir(cfg.Dir, "pebble")
	if err != nil {
		return 0, err
	}
	defer cleanup()
	db, err := pebble.Open(dir, &pebble.Options{FormatMajorVersion: engine.FormatMajorVersion, Logger: silent{}})
	if err != nil {
		return 0, err
	}
	value := benchValue(cfg.ValueSize)
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	key := make([]byte, cfg.KeySize)
	start := time.Now()
	if cfg.Mode == reconcile.ModeCausal {
		for i := 0; i < cfg.Keys; i++ {
			keyAt(key, rng)
			if _, closer, err := db.Get(key); err == nil {
				closer.Close()
			}
			if err := db.Set(key, value, pebble.NoSync); err != nil {
				return 0, err
			}
		}
	} else {
		for i := 0; i < cfg.Keys; {
			b := db.NewBatch()
			for j := 0; j < cfg.BatchSize && i < cfg.Keys; j, i = j+1, i+1 {
				if err := b.Set(keyAt(key, rng), value, nil); err != nil {
					return 0, err
				}
			}
			if err := b.Commit(pebble.NoSync); err != nil {
				return 0, err
			}
			b.Close()
		}
	}
	secs := time.Since(start).Seconds()
	return secs, db.Close()
}

func writeEngine(ctx context.Context, cfg WriteConfig) (secs float64, markers uint64, leaves int, err error) {
	dir, cleanup, err := scratchDir(cfg.Dir, "engine")
	if err != nil {
		return 0, 0, 0, err
	}
	defer cleanup()
	e, err := engine.Open(dir, &engine.Options{ReplicaID: "bench", Mode: cfg.Mode})
	if err != nil {
		return 0, 0, 0, err
	}
	value := benchValue(cfg.ValueSize)
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	key := make([]byte, cfg.KeySize)
	start := time.Now()
	if cfg.Mode == reconcile.ModeCausal {
		for i := 0; i < cfg.Keys; i++ {
			if err := e.Put(ctx, keyAt(key, rng), value, engine.NoSync); err != nil {
				return 0, 0, 0, err
			}
		}
	} else {
		for i := 0; i < cfg.Keys; {
			b := e.NewBatch()
			for j := 0; j < cfg.BatchSize && i < cfg.Keys; j, i = j+1, i+1 {
				if err := b.Put(keyAt(key, rng), value); err != nil {
					return 0, 0, 0, err
				}
			}
			if err := b.Commit(ctx, engine.NoSync); err != nil {
				return 0, 0, 0, err
			}
		}
	}
	secs = time.Since(start).Seconds()
	markers = e.Tree().Stats().MarkersWritten
	for _, p := range e.Tree().Partitions() {
		leaves += p.Leaves
	}
	return secs, markers, leaves, e.Close()
}

type silent struct{}

func (silent) Infof(string, ...interface{})  {}
func (silent) Errorf(string, ...interface{}) {}
func (silent) Fatalf(format string, args ...interface{}) {
	panic(fmt.Sprintf(format, args...))
}
