package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pebble-ae/pebble-ae/hooks"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// reader is the read side of Pebble the engine and its tree use; tests wrap
// it to count reads.
type reader interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewSnapshot() *pebble.Snapshot
	NewIterWithContext(ctx context.Context, o *pebble.IterOptions) (*pebble.Iterator, error)
}

// Engine is a Pebble DB whose user keys hold versioned records and whose
// every write keeps a Merkle tree per partition current, in the same atomic
// batch. It implements reconcile.Replica.
//
// All methods are safe for concurrent use. Byte slices passed in are not
// retained; byte slices returned belong to the caller.
type Engine struct {
	db    *pebble.DB
	rd    reader
	tree  *merkle.Tree
	hook  hooks.Hook
	opts  Options
	clock *record.HLC

	// causalLocks serialize read-modify-write writes per key stripe (causal
	// puts, so that two puts never take the same dot).
	causalLocks [256]causalStripe

	batchPool sync.Pool

	// entries is the entry index of symbol streams and FetchByHash
	// (entries.go).
	entries *entryIndex

	// clockRefused counts the records Apply refused as stamped beyond
	// the clock plus MaxClockOffset.
	clockRefused atomic.Uint64

	// closeMu: operations hold it shared; Close takes it exclusively.
	closeMu   sync.RWMutex
	closeOnce sync.Once
	stop      chan struct{}
	bgDone    chan struct{}
	closed    chan struct{}
}

// Open opens (or creates) the engine's DB in dir.
func Open(dir string, opts *Options) (*Engine, error) {
	o := opts.EnsureDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	po := &pebble.Options{}
	if o.Pebble != nil {
		po = o.Pebble.Clone()
	}
	po.FS = o.FS
	po.Merger = newMerger(o.Resolver, o.Merger)
	po.FormatMajorVersion = FormatMajorVersion
	if po.Logger == nil {
		po.Logger = quietLogger{}
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		if strings.Contains(err.Error(), "merger name from file") {
			return nil, fmt.Errorf("%w: %v", ErrMergerMismatch, err)
		}
		return nil, fmt.Errorf("engine: open %q: %w", dir, err)
	}
	entries, err := openEntryIndex(db, o.Partitioner.NumPartitions(), o.PrefixSymbols)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("engine: open %q: %w", dir, err)
	}
	var rd reader = db
	if o.wrapReader != nil {
		rd = o.wrapReader(rd)
	}
	tree, err := merkle.Open(db, &merkle.Options{
		Params:                o.Tree,
		Partitioner:           o.Partitioner,
		RebuildOnParamsChange: o.RebuildOnParamsChange,
		Throttle:              o.Throttle,
		Reader:                rd,
		SpanObserver:          entries.observe,
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("engine: open %q: %w", dir, err)
	}
	if err := tree.Corruption(); err != nil {
		o.Logger.Warn("corrupt tree state; rebuilding the tree from the data", "dir", dir, "err", err)
	}
	e := &Engine{
		db: db, rd: rd, tree: tree, opts: *o, entries: entries,
		clock:  record.NewHLCWithMaxOffset(o.Clock, max(o.MaxClockOffset, 0)),
		stop:   make(chan struct{}),
		bgDone: make(chan struct{}),
		closed: make(chan struct{}),
	}
	e.hook = hooks.Tee(append([]hooks.Hook{tree.Hook()}, o.Hooks...)...)
	e.batchPool.New = func() any { return hooks.NewBatch(db.NewBatch()) }
	if err := e.migrateEntryIndex(); err != nil {
		tree.Close()
		_ = db.Close()
		return nil, fmt.Errorf("engine: open %q: %w", dir, err)
	}
	go e.background()
	return e, nil
}

// migrateEntryIndex gives the partitions that have no entry index (a
// database written before it existed, or with another prefix length) one:
// an empty partition's is written at once; any other partition is rebuilt
// in the background (not ready until done: a scan of its data, once).
func (e *Engine) migrateEntryIndex() error {
	ctx := context.Background()
	for _, err := range e.entries.corrupt {
		e.opts.Logger.Warn("corrupt entry index; rebuilding the partition from the data", "err", err)
	}
	parts := e.tree.Partitions()
	for _, p := range e.entries.missing {
		if parts[p].Ready {
			start, end := e.tree.Partitioner().Bounds(p)
			fp, err := e.tree.RangeFingerprint(ctx, p, merkle.Range{Start: start, End: end})
			if err != nil {
				return err
			}
			if fp.Count == 0 {
				if err := e.entries.observe(p, nil, true); err != nil {
					return err
				}
				// Synced: a crash must not lose it and find a
				// partition without an index later.
				if err := e.db.LogData(nil, pebble.Sync); err != nil {
					return err
				}
				continue
			}
		}
		e.opts.Logger.Warn("no entry index for the partition: rebuilding it", "partition", p)
		if err := e.tree.MarkRebuild(ctx, p); err != nil {
			return err
		}
	}
	e.entries.missing = nil
	return nil
}

// causalStripe is one stripe of the causal write locks: the mutex and what
// the causal write path reuses while it holds it.
type causalStripe struct {
	sync.Mutex
	// dec decodes the current record of a causal write (guarded by the
	// mutex; the record is dropped before the mutex is released).
	dec record.RecordDecoder
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...interface{})  {}
func (quietLogger) Errorf(string, ...interface{}) {}
func (quietLogger) Fatalf(format string, args ...interface{}) {
	panic(fmt.Sprintf(format, args...))
}

// Tree returns the engine's Merkle tree.
func (e *Engine) Tree() *merkle.Tree { return e.tree }

// DB returns the underlying Pebble DB, for inspection. Writing to it
// directly bypasses the tree and breaks it.
func (e *Engine) DB() *pebble.DB { return e.db }

// ReplicaID returns the replica's ID.
func (e *Engine) ReplicaID() record.ReplicaID { return e.opts.ReplicaID }

// Mode returns the write mode.
func (e *Engine) Mode() record.Mode { return e.opts.Mode }

// Clock returns the engine's hybrid logical clock.
func (e *Engine) Clock() *record.HLC { return e.clock }

// background rebuilds trees that are not ready, then periodically
// checkpoints.
func (e *Engine) background() {
	defer close(e.bgDone)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-e.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := e.tree.Rebuild(ctx, nil); err != nil && ctx.Err() == nil {
		e.opts.Logger.Error("tree rebuild failed", "err", err)
	}
	if e.opts.CheckpointInterval < 0 {
		<-ctx.Done()
		return
	}
	tick := time.NewTicker(e.opts.CheckpointInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			// Checkpoint only: dirty leaves are recomputed lazily, when a
			// range hash needs them, not on every tick (eagerly rescanning
			// leaves that are being written would only waste the disk).
			err := e.tree.Rebuild(ctx, nil)
			if err == nil {
				err = e.tree.Checkpoint(ctx)
			}
			if err != nil && ctx.Err() == nil {
				e.opts.Logger.Error("tree checkpoint failed", "err", err)
			}
		}
	}
}

// Maintain rebuilds any partition that needs it, recomputes every dirty leaf
// and checkpoints the tree: after it, queries need no recompute and a crash
// recovers from a clean checkpoint. (The background worker only rebuilds and
// checkpoints; recomputation is lazy.)
func (e *Engine) Maintain(ctx context.Context) error {
	if err := e.tree.Rebuild(ctx, nil); err != nil {
		return err
	}
	for _, p := range e.tree.Partitions() {
		if p.DirtyLeaves == 0 || !p.Ready {
			continue
		}
		if _, err := e.tree.Recompute(ctx, p.ID, nil, nil, 0); err != nil {
			return err
		}
	}
	return e.tree.Checkpoint(ctx)
}

// Checkpoint persists the tree (see merkle.Tree.Checkpoint).
func (e *Engine) Checkpoint(ctx context.Context) error { return e.tree.Checkpoint(ctx) }

// Verify recomputes the tree from the data and returns every mismatch.
func (e *Engine) Verify(ctx context.Context) ([]merkle.Mismatch, error) {
	return e.VerifyWithProgress(ctx, nil)
}

// VerifyWithProgress is Verify with a progress callback per partition. It
// checks the tree, then every ready partition's entry index (Kind "entry
// index"; a rebuild of the partition repairs it).
func (e *Engine) VerifyWithProgress(ctx context.Context, progress func(done, total int)) ([]merkle.Mismatch, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.exit()
	out, err := e.tree.VerifyWithProgress(ctx, progress)
	if err != nil {
		return nil, err
	}
	for _, p := range e.tree.Partitions() {
		if !p.Ready {
			continue
		}
		ms, err := e.verifyEntries(ctx, p.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, ms...)
	}
	return out, nil
}

// WaitReady blocks until every partition's tree is ready (rebuilt).
func (e *Engine) WaitReady(ctx context.Context) error {
	for {
		ready := true
		for _, p := range e.tree.Partitions() {
			ready = ready && p.Ready
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-e.closed:
			return ErrClosed
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Close stops the background worker, checkpoints the tree and closes the DB.
func (e *Engine) Close() error {
	err := ErrClosed
	e.closeOnce.Do(func() {
		close(e.stop)
		<-e.bgDone
		e.closeMu.Lock()
		defer e.closeMu.Unlock()
		close(e.closed)
		err = e.tree.Checkpoint(context.Background())
		e.tree.Close()
		err = errors.Join(err, e.db.Close())
	})
	return err
}

// enter starts an operation: it fails with ErrClosed after Close, and
// otherwise keeps Close waiting until exit.
func (e *Engine) enter() error {
	e.closeMu.RLock()
	select {
	case <-e.closed:
		e.closeMu.RUnlock()
		return ErrClosed
	default:
		return nil
	}
}

func (e *Engine) exit() { e.closeMu.RUnlock() }
