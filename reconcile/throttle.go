package reconcile

import (
	"context"
	"fmt"
	"math"
	"sync"

	"golang.org/x/time/rate"
)

// ThrottleConfig configures a Throttle: a pair of token buckets, one on
// bytes/s and one on keys/s. A zero rate is unlimited.
type ThrottleConfig struct {
	// BytesPerSec and KeysPerSec are the full-speed rates.
	BytesPerSec, KeysPerSec float64
	// BurstBytes and BurstKeys are the bucket sizes (defaults: 1/10 of a
	// second at full speed, at least 64 KiB and 256 keys). Requests larger
	// than a burst are split into bursts.
	BurstBytes, BurstKeys int
}

// Throttle limits background work to a rate of bytes and keys, scaled by a
// factor in (0, 1] that admission control moves. It is safe for concurrent
// use.
type Throttle struct {
	name  string
	cfg   ThrottleConfig
	bytes *rate.Limiter // nil: unlimited
	keys  *rate.Limiter

	mu struct {
		sync.Mutex
		scale      float64
		bytesTaken uint64
		keysTaken  uint64
	}
}

// NewThrottle returns a throttle named name (for metrics and logs).
func NewThrottle(name string, cfg ThrottleConfig) (*Throttle, error) {
	if cfg.BytesPerSec < 0 || cfg.KeysPerSec < 0 || cfg.BurstBytes < 0 || cfg.BurstKeys < 0 {
		return nil, fmt.Errorf("%w: throttle %q: negative rate or burst", ErrInvalidSchedule, name)
	}
	t := &Throttle{name: name, cfg: cfg}
	t.mu.scale = 1
	if cfg.BytesPerSec > 0 {
		if t.cfg.BurstBytes == 0 {
			t.cfg.BurstBytes = max(int(cfg.BytesPerSec/10), 64<<10)
		}
		t.bytes = rate.NewLimiter(rate.Limit(cfg.BytesPerSec), t.cfg.BurstBytes)
	}
	if cfg.KeysPerSec > 0 {
		if t.cfg.BurstKeys == 0 {
			t.cfg.BurstKeys = max(int(cfg.KeysPerSec/10), 256)
		}
		t.keys = rate.NewLimiter(rate.Limit(cfg.KeysPerSec), t.cfg.BurstKeys)
	}
	return t, nil
}

// Name returns the throttle's name.
func (t *Throttle) Name() string { return t.name }

// Wait blocks until keys and bytes may proceed at the current rates, or
// returns ctx's error. Amounts above the burst sizes are taken a burst at a
// time. Its signature is that of engine.Options.Throttle. A nil Throttle
// never waits.
func (t *Throttle) Wait(ctx context.Context, keys, bytes int) error {
	if t == nil {
		return ctx.Err()
	}
	if err := waitSplit(ctx, t.keys, keys); err != nil {
		return err
	}
	if err := waitSplit(ctx, t.bytes, bytes); err != nil {
		return err
	}
	t.mu.Lock()
	t.mu.bytesTaken += uint64(max(bytes, 0))
	t.mu.keysTaken += uint64(max(keys, 0))
	t.mu.Unlock()
	return nil
}

func waitSplit(ctx context.Context, l *rate.Limiter, n int) error {
	if l == nil || n <= 0 {
		return ctx.Err()
	}
	burst := l.Burst()
	for n > 0 {
		c := min(n, burst)
		if err := l.WaitN(ctx, c); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("reconcile: throttle: %w", err)
		}
		n -= c
	}
	return nil
}

// SetScale sets the fraction of the configured rates in force, clamped to
// [1e-4, 1].
func (t *Throttle) SetScale(f float64) {
	if t == nil {
		return
	}
	f = min(max(f, 1e-4), 1)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mu.scale = f
	if t.bytes != nil {
		t.bytes.SetLimit(rate.Limit(t.cfg.BytesPerSec * f))
	}
	if t.keys != nil {
		t.keys.SetLimit(rate.Limit(t.cfg.KeysPerSec * f))
	}
}

// ThrottleStatus is a throttle's state.
type ThrottleStatus struct {
	Name string
	// Scale is the fraction of the configured rates in force.
	Scale float64
	// BytesPerSec and KeysPerSec are the rates in force (+Inf: unlimited).
	BytesPerSec, KeysPerSec float64
	// BytesTaken and KeysTaken count everything that went through.
	BytesTaken, KeysTaken uint64
	// BurstBytes and BurstKeys are the bucket sizes (0: unlimited).
	BurstBytes, BurstKeys int
}

// Status returns the throttle's state.
func (t *Throttle) Status() ThrottleStatus {
	if t == nil {
		return ThrottleStatus{Scale: 1, BytesPerSec: math.Inf(1), KeysPerSec: math.Inf(1)}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	st := ThrottleStatus{Name: t.name, Scale: t.mu.scale, BytesPerSec: math.Inf(1), KeysPerSec: math.Inf(1), BytesTaken: t.mu.bytesTaken, KeysTaken: t.mu.keysTaken}
	if t.bytes != nil {
		st.BytesPerSec = t.cfg.BytesPerSec * t.mu.scale
		st.BurstBytes = t.cfg.BurstBytes
	}
	if t.keys != nil {
		st.KeysPerSec = t.cfg.KeysPerSec * t.mu.scale
		st.BurstKeys = t.cfg.BurstKeys
	}
	return st
}

// ThrottledReplica wraps a Replica so that the data a session moves through
// it is throttled: the entries of RangeScan pages and Fetch answers by scan,
// the entries given to Apply (repair writes) by write. Either throttle may be
// nil. The wait happens after a read (its size is known only then) and
// before a write. Apply is split into calls of at most ApplyChunk entries
// (default 128), each throttled, so that a large repair never commits one
// large batch in front of foreground writes; Apply merges with the
// resolver, so a partial Apply followed by an error is safe.
type ThrottledReplica struct {
	Replica
	Scan, Write *Throttle
	ApplyChunk  int
}

// DefaultApplyChunk is the default ThrottledReplica.ApplyChunk.
const DefaultApplyChunk = 128

var _ Replica = ThrottledReplica{}

func entriesSize(es []Entry) (keys, bytes int) {
	for _, e := range es {
		bytes += len(e.Key) + len(e.Record) + 8
	}
	return len(es), bytes
}

// RangeScan implements Replica.
func (r ThrottledReplica) RangeScan(ctx context.Context, req RangeScanRequest) (RangeScanResult, error) {
	res, err := r.Replica.RangeScan(ctx, req)
	if err != nil {
		return res, err
	}
	k, b := entriesSize(res.Entries)
	return res, r.Scan.Wait(ctx, k, b)
}

// Fetch implements Replica.
func (r ThrottledReplica) Fetch(ctx context.Context, partition uint32, keys [][]byte) ([]Entry, error) {
	es, err := r.Replica.Fetch(ctx, partition, keys)
	if err != nil {
		return es, err
	}
	k, b := entriesSize(es)
	return es, r.Scan.Wait(ctx, k, b)
}

// Apply implements Replica.
func (r ThrottledReplica) Apply(ctx context.Context, partition uint32, entries []Entry) error {
	chunk := r.ApplyChunk
	if chunk <= 0 {
		chunk = DefaultApplyChunk
	}
	for len(entries) > 0 {
		c := entries[:min(chunk, len(entries))]
		entries = entries[len(c):]
		k, b := entriesSize(c)
		if err := r.Write.Wait(ctx, k, b); err != nil {
			return err
		}
		if err := r.Replica.Apply(ctx, partition, c); err != nil {
			return err
		}
	}
	return nil
}
