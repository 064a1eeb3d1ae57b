package repair

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/pebble-ae/pebble-ae/reconcile"
	"golang.org/x/time/rate"
)

// ThrottleConfig configures a Throttle: token buckets on bytes/s, keys/s and
// busy time. A zero rate is unlimited.
type ThrottleConfig struct {
	// BytesPerSec and KeysPerSec are the full-speed rates.
	BytesPerSec, KeysPerSec float64
	// BurstBytes and BurstKeys are the bucket sizes (defaults: 1/10 of a
	// second at full speed, at least 64 KiB and 256 keys). Requests larger
	// than a burst are split into bursts.
	BurstBytes, BurstKeys int
	// BusyFraction is the budget of busy time: the seconds of work per
	// second (a fraction of one core) that the throttled work may take,
	// measured by Busy's callers (ThrottledReplica times every call it
	// makes). Bytes and keys do not bound CPU: descending a tree, building
	// and decoding sketches, hashing and applying cost CPU that no byte
	// count sees, and on a small machine that CPU is the foreground's.
	BusyFraction float64
	// BurstBusy is the busy-time bucket (default 10ms): the longest
	// stretch of work before the throttle makes its caller rest.
	BurstBusy time.Duration
}

// DefaultLoopBusyFraction is the busy-time budget `pebble-ae serve` gives
// each of its repair loop's throttles (ThrottleConfig.BusyFraction, whose
// zero means none): a quarter of a core, which admission control scales
// down while the foreground suffers, and up to its ceiling (4× by default)
// while the foreground leaves room. With the session's own decoding paced
// too (SyncOptions.Pace), a quarter core kept a flat-out writer on a 2-core
// machine at ≥ 0.93 of its idle throughput, and a 500 000-record repair
// then took ~23 s instead of ~4 (docs/benchmarks.md); a saturated
// foreground is lent nothing above it.
const DefaultLoopBusyFraction = 0.25

// DefaultBurstBusy is the default ThrottleConfig.BurstBusy.
const DefaultBurstBusy = 10 * time.Millisecond

// Throttle limits background work to a rate of bytes and keys and a budget
// of busy time, scaled by a factor that admission control moves (below 1
// while the foreground suffers, above 1 while it leaves room). It is safe for concurrent
// use.
type Throttle struct {
	name  string
	cfg   ThrottleConfig
	bytes *rate.Limiter // nil: unlimited
	keys  *rate.Limiter
	busy  *rate.Limiter // tokens are microseconds of busy time

	mu struct {
		sync.Mutex
		scale      float64
		bytesTaken uint64
		keysTaken  uint64
		busyTaken  time.Duration
		// inflight counts the calls between Start and their end;
		// virtual advances at 1/inflight of wall time while any is in
		// flight (processor sharing), vlast is when it last advanced.
		inflight int
		virtual  time.Duration
		vlast    time.Time
	}
}

// Start marks the start of a call whose busy time its caller will charge
// with Busy, and returns the context to make the call with and the function
// that ends it and returns the call's share of the busy time: the wall time
// it ran, divided among the calls in flight through the throttle at each
// moment (so n concurrent calls that each took d are charged d in all, not
// n*d: a round of many concurrent pages, each waiting for the others, is
// not n times the work), less the time it waited in this throttle's Wait
// with the returned context (a replica's scan throttled by the same
// throttle, engine.Options.Throttle: that wait is the rate limit at work,
// not busy time, and charging it too would make the call pay twice). On a
// nil Throttle the share is the wall time.
func (t *Throttle) Start(ctx context.Context) (context.Context, func() time.Duration) {
	start := time.Now()
	if t == nil {
		return ctx, func() time.Duration { return time.Since(start) }
	}
	c := &throttleCall{t: t}
	t.mu.Lock()
	t.advanceLocked(start)
	t.mu.inflight++
	c.v0 = t.mu.virtual
	t.mu.Unlock()
	return context.WithValue(ctx, throttleCallKey{}, c), func() time.Duration {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.advanceLocked(time.Now())
		if c.paused == 0 {
			t.mu.inflight--
		}
		c.paused = -1 // ended: later waits with its context are not its own
		return max(t.mu.virtual-c.v0-c.excluded, 0)
	}
}

// throttleCall is a call between Start and its end: Wait pauses it (it
// leaves the calls sharing the wall time, and the virtual time that passes
// meanwhile is excluded from its share).
type throttleCall struct {
	t  *Throttle
	v0 time.Duration
	// paused counts the waits in progress (-1: the call ended); pausedAt
	// is the virtual time the first of them began at.
	paused   int
	pausedAt time.Duration
	excluded time.Duration
}

type throttleCallKey struct{}

// pause takes the call of ctx, if it is in one (Start), out of the calls in
// flight through its throttle while it waits; the function returned puts
// it back.
func pause(ctx context.Context) func() {
	c, _ := ctx.Value(throttleCallKey{}).(*throttleCall)
	if c == nil {
		return func() {}
	}
	t := c.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.paused < 0 {
		return func() {}
	}
	if c.paused == 0 {
		t.advanceLocked(time.Now())
		t.mu.inflight--
		c.pausedAt = t.mu.virtual
	}
	c.paused++
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if c.paused <= 0 {
			return
		}
		c.paused--
		if c.paused == 0 {
			t.advanceLocked(time.Now())
			t.mu.inflight++
			c.excluded += t.mu.virtual - c.pausedAt
		}
	}
}

func (t *Throttle) advanceLocked(now time.Time) {
	if t.mu.inflight > 0 && now.After(t.mu.vlast) {
		t.mu.virtual += now.Sub(t.mu.vlast) / time.Duration(t.mu.inflight)
	}
	if now.After(t.mu.vlast) {
		t.mu.vlast = now
	}
}

// NewThrottle returns a throttle named name (for metrics and logs).
func NewThrottle(name string, cfg ThrottleConfig) (*Throttle, error) {
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"bytes per second", cfg.BytesPerSec}, {"keys per second", cfg.KeysPerSec},
		{"burst bytes", float64(cfg.BurstBytes)}, {"burst keys", float64(cfg.BurstKeys)},
		{"busy fraction", cfg.BusyFraction}, {"busy burst", cfg.BurstBusy.Seconds()},
	} {
		if f.v < 0 {
			return nil, fmt.Errorf("%w: throttle %q: %s %v is negative (0: no limit)", ErrInvalidSchedule, name, f.name, f.v)
		}
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
	if cfg.BusyFraction > 0 {
		if t.cfg.BurstBusy == 0 {
			t.cfg.BurstBusy = DefaultBurstBusy
		}
		t.busy = rate.NewLimiter(rate.Limit(cfg.BusyFraction*1e6), max(int(t.cfg.BurstBusy/time.Microsecond), 1))
	}
	return t, nil
}

// Name returns the throttle's name.
func (t *Throttle) Name() string { return t.name }

// Wait blocks until keys and bytes may proceed at the current rates, or
// returns ctx's error. Amounts above the burst sizes are taken a burst at a
// time. Its signature is that of Options.Throttle. A nil Throttle
// never waits.
func (t *Throttle) Wait(ctx context.Context, keys, bytes int) error {
	if t == nil {
		return ctx.Err()
	}
	resume := pause(ctx)
	err := waitSplit(ctx, t.keys, keys)
	if err == nil {
		err = waitSplit(ctx, t.bytes, bytes)
	}
	resume()
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.mu.bytesTaken += uint64(max(bytes, 0))
	t.mu.keysTaken += uint64(max(keys, 0))
	t.mu.Unlock()
	return nil
}

// Busy charges d of busy time (work its caller just did) to the busy-time
// budget and blocks until the budget covers it, or returns ctx's error: a
// caller that worked for d rests about d*(1/BusyFraction - 1) once its burst
// is spent. A nil Throttle, or one without a budget, only counts.
func (t *Throttle) Busy(ctx context.Context, d time.Duration) error {
	if t == nil || d <= 0 {
		return nil
	}
	t.mu.Lock()
	t.mu.busyTaken += d
	t.mu.Unlock()
	return waitSplit(ctx, t.busy, int(d/time.Microsecond))
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
			return fmt.Errorf("repair: throttle: %w", err)
		}
		n -= c
	}
	return nil
}

// MaxThrottleScale is the largest scale a Throttle takes (SetScale).
const MaxThrottleScale = 64

// SetScale sets the multiple of the configured rates in force, clamped to
// [1e-4, MaxThrottleScale]: below 1 admission control holds background work
// back, above 1 it lends it room the foreground leaves.
func (t *Throttle) SetScale(f float64) {
	if t == nil {
		return
	}
	f = min(max(f, 1e-4), MaxThrottleScale)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mu.scale = f
	if t.bytes != nil {
		t.bytes.SetLimit(rate.Limit(t.cfg.BytesPerSec * f))
	}
	if t.keys != nil {
		t.keys.SetLimit(rate.Limit(t.cfg.KeysPerSec * f))
	}
	if t.busy != nil {
		t.busy.SetLimit(rate.Limit(t.cfg.BusyFraction * 1e6 * f))
	}
}

// ThrottleStatus is a throttle's state.
type ThrottleStatus struct {
	Name string
	// Scale is the multiple of the configured rates in force.
	Scale float64
	// BytesPerSec and KeysPerSec are the rates in force (+Inf: unlimited).
	BytesPerSec, KeysPerSec float64
	// BytesTaken and KeysTaken count everything that went through.
	BytesTaken, KeysTaken uint64
	// BurstBytes and BurstKeys are the bucket sizes (0: unlimited).
	BurstBytes, BurstKeys int
	// BusyFraction is the busy-time budget in force (+Inf: unlimited);
	// BusyTaken the busy time charged with Busy.
	BusyFraction float64
	BusyTaken    time.Duration
}

// Status returns the throttle's state.
func (t *Throttle) Status() ThrottleStatus {
	if t == nil {
		return ThrottleStatus{Scale: 1, BytesPerSec: math.Inf(1), KeysPerSec: math.Inf(1), BusyFraction: math.Inf(1)}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	st := ThrottleStatus{Name: t.name, Scale: t.mu.scale, BytesPerSec: math.Inf(1), KeysPerSec: math.Inf(1), BusyFraction: math.Inf(1),
		BytesTaken: t.mu.bytesTaken, KeysTaken: t.mu.keysTaken, BusyTaken: t.mu.busyTaken}
	if t.busy != nil {
		st.BusyFraction = t.cfg.BusyFraction * t.mu.scale
	}
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
// before a write. Every call (RangeHash, scans, fetches, sketches, applies)
// is also timed and its share of the wall time (Throttle.Start: concurrent
// calls through the same throttle split it) charged to the busy-time budget
// of the same throttle (Throttle.Busy) after it returns; over a network the
// duration includes the network's, so the budget is then conservative. Apply is split into calls of at most ApplyChunk entries
// (default 128), each throttled, so that a large repair never commits one
// large batch in front of foreground writes; Apply merges with the
// resolver, so a partial Apply followed by an error is safe.
type ThrottledReplica struct {
	reconcile.Replica

	Scan, Write *Throttle
	ApplyChunk  int
}

// DefaultApplyChunk is the default ThrottledReplica.ApplyChunk.
const DefaultApplyChunk = 128

var _ reconcile.Replica = ThrottledReplica{}

func entriesSize(es []reconcile.Entry) (keys, bytes int) {
	for _, e := range es {
		bytes += len(e.Key) + len(e.Record) + 8
	}
	return len(es), bytes
}

// charge charges busy time to th and then waits for keys and bytes.
func charge(ctx context.Context, th *Throttle, busy time.Duration, keys, bytes int) error {
	if err := th.Busy(ctx, busy); err != nil {
		return err
	}
	return th.Wait(ctx, keys, bytes)
}

// RangeHash implements Replica; only its busy time is throttled.
func (r ThrottledReplica) RangeHash(ctx context.Context, req reconcile.RangeHashRequest) ([]reconcile.RangeHash, error) {
	cctx, end := r.Scan.Start(ctx)
	hs, err := r.Replica.RangeHash(cctx, req)
	busy := end()
	if err != nil {
		return hs, err
	}
	return hs, charge(ctx, r.Scan, busy, 0, 0)
}

// RangeScan implements Replica.
func (r ThrottledReplica) RangeScan(ctx context.Context, req reconcile.RangeScanRequest) (reconcile.RangeScanResult, error) {
	cctx, end := r.Scan.Start(ctx)
	res, err := r.Replica.RangeScan(cctx, req)
	busy := end()
	if err != nil {
		return res, err
	}
	k, b := entriesSize(res.Entries)
	return res, charge(ctx, r.Scan, busy, k, b)
}

// Fetch implements Replica.
func (r ThrottledReplica) Fetch(ctx context.Context, partition uint32, keys [][]byte) ([]reconcile.Entry, error) {
	cctx, end := r.Scan.Start(ctx)
	es, err := r.Replica.Fetch(cctx, partition, keys)
	busy := end()
	if err != nil {
		return es, err
	}
	k, b := entriesSize(es)
	return es, charge(ctx, r.Scan, busy, k, b)
}

// Apply implements Replica.
func (r ThrottledReplica) Apply(ctx context.Context, partition uint32, entries []reconcile.Entry) error {
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
		cctx, end := r.Write.Start(ctx)
		err := r.Replica.Apply(cctx, partition, c)
		busy := end()
		if err != nil {
			return err
		}
		if err := r.Write.Busy(ctx, busy); err != nil {
			return err
		}
	}
	return nil
}
