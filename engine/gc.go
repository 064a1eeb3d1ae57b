package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pebble-ae/pebble-ae/hooks"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// ErrGCNotInstalled reports a TombstoneGC whose Hook is not among the
// engine's Options.Hooks: without it a purge could delete a value written
// concurrently, so the GC refuses to run.
var ErrGCNotInstalled = errors.New("engine: tombstone GC hook not installed")

// GCOptions configure a TombstoneGC.
type GCOptions struct {
	// Grace is the time a tombstone is kept at least, beyond the repair
	// rounds that make it safe to purge (default 24h). It must exceed the
	// maximum clock offset between replicas by a wide margin: a write
	// stamped by a lagging clock before the tombstone's time, but arriving
	// after the purge, would otherwise come back.
	Grace time.Duration
	// BatchKeys is the number of tombstones purged per atomic batch
	// (default 128). Writes wait while a batch is checked and committed.
	BatchKeys int
	// Throttle slows the scan for tombstones down (engine.Options.Throttle's
	// signature; nil: unthrottled).
	Throttle func(ctx context.Context, keys, bytes int) error
	// Logger (default: discard).
	Logger *slog.Logger
	// OnPurge, if set, is told how many tombstones each Collect purged per
	// partition (metrics).
	OnPurge func(partition uint32, purged int)
}

// DefaultGCGrace is the default GCOptions.Grace.
const DefaultGCGrace = 24 * time.Hour

// GCStats are a TombstoneGC's counters.
type GCStats struct {
	// Purged counts tombstones deleted; Scanned records examined.
	Purged, Scanned uint64
	// Runs counts partition purges.
	Runs uint64
	// SafeBefore is, per partition, the newest watermark received (see
	// MarkSafe); Cutoff the tombstone time below which the
	// last purge deleted.
	SafeBefore map[uint32]time.Time
	Cutoff     map[uint32]time.Time
}

// TombstoneGC purges tombstones (LWW mode only) once that is safe: a
// tombstone goes only when it is older than its partition's latest
// watermark (MarkSafe) minus the grace period. The repair loop supplies the
// watermark after two complete repair rounds with every replica of the
// partition's preference list (repair.FullRound.SafeBefore), so every
// replica holds the tombstone or a newer record, and no replica can hand
// the deleted value back.
//
// The purge is a Pebble point Delete written through the engine's hook
// pipeline, so the Merkle tree follows. It re-reads each candidate under an
// exclusive lock that every write takes shared in the GC's Hook, so a value
// written concurrently is never deleted.
//
// Wiring: add Hook() to the engine's Options.Hooks before Open, Attach the
// engine, call MarkSafe from the repair loop's OnFullRound and run Collect
// as a loop task (package reconcile/repair's Node does all of it). Safe for
// concurrent use.
type TombstoneGC struct {
	opts GCOptions

	// guard: writes hold it shared from PreCommit to PostCommit; a purge
	// batch holds it exclusively from its re-reads to its commit.
	guard    sync.RWMutex
	own      atomic.Pointer[hooks.Batch]
	hookSeen atomic.Bool
	e        atomic.Pointer[Engine]

	mu struct {
		sync.Mutex
		safe   map[uint32]time.Time
		done   map[uint32]time.Time // the SafeBefore of the last purge
		cutoff map[uint32]time.Time
		stats  GCStats
	}
}

// NewTombstoneGC returns a tombstone collector.
func NewTombstoneGC(opts GCOptions) (*TombstoneGC, error) {
	if opts.Grace == 0 {
		opts.Grace = DefaultGCGrace
	}
	if opts.BatchKeys == 0 {
		opts.BatchKeys = 128
	}
	if opts.Grace < 0 || opts.BatchKeys < 1 {
		return nil, fmt.Errorf("%w: GC grace %v and batch %d must be positive", ErrInvalidOptions, opts.Grace, opts.BatchKeys)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	g := &TombstoneGC{opts: opts}
	g.mu.safe = make(map[uint32]time.Time)
	g.mu.done = make(map[uint32]time.Time)
	g.mu.cutoff = make(map[uint32]time.Time)
	return g, nil
}

// Hook returns the write hook that serializes writes with purges. It must be
// among the engine's Options.Hooks.
func (g *TombstoneGC) Hook() hooks.Hook {
	return hooks.Hook{
		PreCommit: func(b *hooks.Batch) error {
			if b == g.own.Load() {
				g.hookSeen.Store(true)
				return nil
			}
			g.guard.RLock()
			return nil
		},
		PostCommit: func(b *hooks.Batch, _ error) {
			if b == g.own.Load() {
				return
			}
			g.guard.RUnlock()
		},
	}
}

// Attach binds the collector to its engine and checks that the hook is
// installed (ErrGCNotInstalled) and the engine is in LWW mode
// (ErrWrongMode: in causal mode a purged tombstone's version vector is lost
// and a later write could reuse a dot it covered, so causal tombstones are
// kept).
func (g *TombstoneGC) Attach(e *Engine) error {
	if e.Mode() != record.ModeLWW {
		return fmt.Errorf("%w: tombstone GC needs LWW mode", ErrWrongMode)
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	b := e.getBatch()
	defer e.putBatch(b)
	g.own.Store(b)
	err := e.commit(b, NoSync) // an empty batch: only to see the hook run
	g.own.Store(nil)
	if err != nil {
		return err
	}
	if !g.hookSeen.Load() {
		return ErrGCNotInstalled
	}
	g.e.Store(e)
	return nil
}

// MarkSafe records that every replica of partition holds every record
// written before safeBefore (or a newer one): the watermark of two complete
// repair rounds with every replica (repair.FullRound.SafeBefore). It only
// records; Collect purges. A watermark older than the last one is ignored.
func (g *TombstoneGC) MarkSafe(partition uint32, safeBefore time.Time) {
	if safeBefore.IsZero() {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if safeBefore.After(g.mu.safe[partition]) {
		g.mu.safe[partition] = safeBefore
		if g.mu.stats.SafeBefore == nil {
			g.mu.stats.SafeBefore = make(map[uint32]time.Time)
		}
		g.mu.stats.SafeBefore[partition] = safeBefore
	}
}

// Collect purges, in every partition whose round watermark advanced since
// its last purge, the tombstones older than watermark - Grace. It returns
// the number purged.
func (g *TombstoneGC) Collect(ctx context.Context) (int, error) {
	e := g.e.Load()
	if e == nil {
		return 0, fmt.Errorf("%w: not attached", ErrGCNotInstalled)
	}
	g.mu.Lock()
	type job struct {
		part uint32
		safe time.Time
	}
	var jobs []job
	for p, s := range g.mu.safe {
		if s.After(g.mu.done[p]) {
			jobs = append(jobs, job{p, s})
		}
	}
	g.mu.Unlock()
	total := 0
	for _, j := range jobs {
		cutoff := j.safe.Add(-g.opts.Grace)
		n, scanned, err := e.purgeTombstones(ctx, g, j.part, cutoff)
		total += n
		g.mu.Lock()
		g.mu.stats.Purged += uint64(n)
		g.mu.stats.Scanned += scanned
		if err == nil {
			g.mu.stats.Runs++
			g.mu.done[j.part] = j.safe
			g.mu.cutoff[j.part] = cutoff
		}
		g.mu.Unlock()
		if g.opts.OnPurge != nil {
			g.opts.OnPurge(j.part, n)
		}
		if err != nil {
			return total, fmt.Errorf("engine: tombstone GC of partition %d: %w", j.part, err)
		}
		g.opts.Logger.Info("tombstones purged", "partition", j.part, "purged", n, "scanned", scanned, "cutoff", cutoff)
	}
	return total, nil
}

// Stats returns the collector's counters.
func (g *TombstoneGC) Stats() GCStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.mu.stats
	st.SafeBefore = make(map[uint32]time.Time, len(g.mu.safe))
	st.Cutoff = make(map[uint32]time.Time, len(g.mu.cutoff))
	for p, t := range g.mu.safe {
		st.SafeBefore[p] = t
	}
	for p, t := range g.mu.cutoff {
		st.Cutoff[p] = t
	}
	return st
}

// purgeableTombstone reports whether rec is an LWW tombstone written before
// cutoff.
func purgeableTombstone(value []byte, cutoff int64) bool {
	rec, err := record.DecodeRecord(value)
	if err != nil || rec.Mode != record.ModeLWW || !rec.IsTombstone() {
		return false
	}
	return rec.Winner().Timestamp.WallTime < cutoff
}

// purgeTombstones deletes the LWW tombstones of partition part written
// before cutoff: it scans the partition from an iterator (throttled by
// g.opts.Throttle) for candidates and deletes them in batches of BatchKeys,
// each candidate re-read under g's exclusive guard so that a concurrent
// write is never deleted. It returns the number purged and scanned.
func (e *Engine) purgeTombstones(ctx context.Context, g *TombstoneGC, part uint32, cutoff time.Time) (purged int, scanned uint64, err error) {
	if err := e.checkPartition(part); err != nil {
		return 0, 0, err
	}
	if err := e.enter(); err != nil {
		return 0, 0, err
	}
	defer e.exit()
	start, end := e.opts.Partitioner.Bounds(int(part))
	it, err := merkle.NewUserIter(ctx, e.rd, start, end)
	if err != nil {
		return 0, 0, err
	}
	defer it.Close()
	ns := cutoff.UnixNano()
	var cands [][]byte
	var keys, bytes int
	flush := func() error {
		if len(cands) == 0 {
			return nil
		}
		n, err := e.purgeChunk(g, cands, ns)
		purged += n
		cands = cands[:0]
		return err
	}
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return purged, scanned, err
		}
		scanned++
		keys++
		bytes += len(it.Key()) + len(v)
		if purgeableTombstone(v, ns) {
			cands = append(cands, append([]byte(nil), it.Key()...))
		}
		if keys >= 256 {
			if g.opts.Throttle != nil {
				if err := g.opts.Throttle(ctx, keys, bytes); err != nil {
					return purged, scanned, err
				}
			} else if err := ctx.Err(); err != nil {
				return purged, scanned, err
			}
			keys, bytes = 0, 0
		}
		if len(cands) >= g.opts.BatchKeys {
			if err := flush(); err != nil {
				return purged, scanned, err
			}
		}
	}
	if err := it.Error(); err != nil {
		return purged, scanned, err
	}
	return purged, scanned, flush()
}

// purgeChunk re-reads keys under the exclusive guard and deletes those
// still purgeable tombstones in one batch.
func (e *Engine) purgeChunk(g *TombstoneGC, keys [][]byte, cutoff int64) (int, error) {
	g.guard.Lock()
	defer g.guard.Unlock()
	b := e.getBatch()
	defer e.putBatch(b)
	n := 0
	for _, k := range keys {
		v, closer, err := e.rd.Get(k)
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, err
		}
		ok := purgeableTombstone(v, cutoff)
		_ = closer.Close()
		if !ok {
			continue
		}
		if err := b.Delete(k); err != nil {
			return 0, err
		}
		n++
	}
	if n == 0 {
		return 0, nil
	}
	g.own.Store(b)
	defer g.own.Store(nil)
	if err := e.commit(b, NoSync); err != nil {
		return 0, err
	}
	return n, nil
}
