package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"
	"github.com/pebble-ae/pebble-ae/hooks"
	"github.com/pebble-ae/pebble-ae/internal/keyspace"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// WriteOptions control one write. A nil *WriteOptions means Sync: true.
type WriteOptions struct {
	// Sync makes the write durable (the WAL is synced) before it returns.
	Sync bool
}

// NoSync is a WriteOptions without sync.
var NoSync = &WriteOptions{}

func (w *WriteOptions) pebble() *pebble.WriteOptions {
	if w == nil || w.Sync {
		return pebble.Sync
	}
	return pebble.NoSync
}

// CheckKey reports whether key may be written: non-empty, at most
// MaxKeySize bytes, not starting with the reserved internal prefix (keys
// that sort above the reserved range are user keys like any other).
func (e *Engine) CheckKey(key []byte) error {
	switch {
	case len(key) == 0:
		return ErrEmptyKey
	case len(key) > e.opts.MaxKeySize:
		return fmt.Errorf("%w: %d bytes > %d", ErrKeyTooLarge, len(key), e.opts.MaxKeySize)
	case !keyspace.IsUser(key):
		return fmt.Errorf("%w: %q", ErrReservedKey, key)
	}
	return nil
}

func (e *Engine) checkValue(value []byte) error {
	if len(value) > e.opts.MaxValueSize {
		return fmt.Errorf("%w: %d bytes > %d", ErrValueTooLarge, len(value), e.opts.MaxValueSize)
	}
	return nil
}

func (e *Engine) getBatch() *hooks.Batch {
	b := e.batchPool.Get().(*hooks.Batch)
	b.Reset()
	return b
}

func (e *Engine) putBatch(b *hooks.Batch) {
	if b.Pebble().Len() > 1<<20 {
		_ = b.Pebble().Close()
		return
	}
	b.Reset()
	e.batchPool.Put(b)
}

func (e *Engine) commit(b *hooks.Batch, wo *WriteOptions) error {
	return hooks.Commit(e.db, e.hook, b, wo.pebble())
}

// Put writes value under key. In LWW mode the write is blind: it reads
// nothing, stamps the record with the HLC and the replica ID and sets it. In
// causal mode it is PutContext with a nil context (a new sibling).
func (e *Engine) Put(ctx context.Context, key, value []byte, wo *WriteOptions) error {
	if f := e.opts.ObserveForeground; f != nil {
		defer observe(f, time.Now())
	}
	if e.opts.Mode == record.ModeCausal {
		return e.PutContext(ctx, key, value, nil, wo)
	}
	return e.writeLWW(key, value, false, wo)
}

// Delete deletes key. In LWW mode it blindly writes a tombstone record; in
// causal mode it writes a tombstone that supersedes every version this
// replica has of key.
func (e *Engine) Delete(ctx context.Context, key []byte, wo *WriteOptions) error {
	if f := e.opts.ObserveForeground; f != nil {
		defer observe(f, time.Now())
	}
	if e.opts.Mode == record.ModeCausal {
		return e.causalWrite(key, nil, true, nil, true, wo)
	}
	return e.writeLWW(key, nil, true, wo)
}

func (e *Engine) writeLWW(key, value []byte, tombstone bool, wo *WriteOptions) error {
	if err := e.CheckKey(key); err != nil {
		return err
	}
	if err := e.checkValue(value); err != nil {
		return err
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	b := e.getBatch()
	defer e.putBatch(b)
	if err := setLWW(b, key, e.opts.ReplicaID, e.clock.Now(), value, tombstone); err != nil {
		return err
	}
	return e.commit(b, wo)
}

// Get returns key's value: in LWW mode the winning value, in causal mode the
// LWW winner among its siblings (use GetVersions for all of them).
// ErrNotFound if the key is absent or deleted.
func (e *Engine) Get(ctx context.Context, key []byte) ([]byte, error) {
	if f := e.opts.ObserveForeground; f != nil {
		defer observe(f, time.Now())
	}
	rec, err := e.GetRecord(ctx, key)
	if err != nil {
		return nil, err
	}
	w := rec.Winner()
	if w.Tombstone {
		return nil, ErrNotFound
	}
	return w.Value, nil
}

// GetRecord returns key's full record (including tombstones). ErrNotFound if
// there is none.
func (e *Engine) GetRecord(ctx context.Context, key []byte) (record.Record, error) {
	if err := e.CheckKey(key); err != nil {
		return record.Record{}, err
	}
	if err := e.enter(); err != nil {
		return record.Record{}, err
	}
	defer e.exit()
	return e.readRecord(key)
}

func (e *Engine) readRecord(key []byte) (record.Record, error) {
	v, closer, err := e.rd.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return record.Record{}, ErrNotFound
	}
	if err != nil {
		return record.Record{}, err
	}
	buf := append([]byte(nil), v...)
	_ = closer.Close()
	rec, err := record.DecodeRecord(buf)
	if err != nil {
		return record.Record{}, fmt.Errorf("engine: key %q: %w", key, err)
	}
	return rec, nil
}

// Versions are the live values of a key in causal mode and the opaque causal
// context to pass to PutContext/DeleteContext to supersede them.
type Versions struct {
	// Values are the concurrent values (siblings), in dot order. Empty if
	// the key is absent or deleted.
	Values [][]byte
	// Context is the causal context covering every version seen.
	Context []byte
}

// GetVersions returns every live sibling of key and the causal context.
// Available in causal mode. An absent key yields empty Versions and no
// error.
func (e *Engine) GetVersions(ctx context.Context, key []byte) (Versions, error) {
	if e.opts.Mode != record.ModeCausal {
		return Versions{}, fmt.Errorf("%w: GetVersions needs causal mode", ErrWrongMode)
	}
	rec, err := e.GetRecord(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return Versions{}, nil
	}
	if err != nil {
		return Versions{}, err
	}
	var vs Versions
	for _, s := range rec.Siblings {
		if !s.Tombstone {
			vs.Values = append(vs.Values, s.Value)
		}
	}
	vs.Context = record.EncodeContext(rec.Context)
	return vs, nil
}

// PutContext writes value under key in causal mode, superseding the
// versions that causal (from GetVersions; nil: none) covers; versions it
// does not cover stay as siblings. It reads the current record (inherent to
// causal mode) under a per-key stripe lock that anti-entropy's Apply also
// takes in causal mode, so a concurrent repair is never lost.
func (e *Engine) PutContext(ctx context.Context, key, value, causal []byte, wo *WriteOptions) error {
	if e.opts.Mode != record.ModeCausal {
		return fmt.Errorf("%w: PutContext needs causal mode", ErrWrongMode)
	}
	return e.causalWrite(key, value, false, causal, false, wo)
}

// DeleteContext deletes the versions of key that causal covers (causal
// mode).
func (e *Engine) DeleteContext(ctx context.Context, key, causal []byte, wo *WriteOptions) error {
	if e.opts.Mode != record.ModeCausal {
		return fmt.Errorf("%w: DeleteContext needs causal mode", ErrWrongMode)
	}
	return e.causalWrite(key, nil, true, causal, false, wo)
}

func (e *Engine) causalWrite(key, value []byte, tombstone bool, causal []byte, coverCurrent bool, wo *WriteOptions) error {
	if err := e.CheckKey(key); err != nil {
		return err
	}
	if err := e.checkValue(value); err != nil {
		return err
	}
	var vv record.VersionVector // nil: the empty context
	if len(causal) > 0 {
		var err error
		if vv, err = record.DecodeContext(causal); err != nil {
			return err
		}
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	st := &e.causalLocks[e.stripe(key)]
	st.Lock()
	defer st.Unlock()
	// The current record is decoded in place, aliasing Pebble's memory
	// until the new record has been encoded into the batch.
	var cur record.Record
	v, closer, err := e.rd.Get(key)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return err
	default:
		// Into the stripe's memory: cur is dropped before the stripe
		// is unlocked.
		cur, err = st.dec.Decode(v)
		if err != nil {
			st.dec.Release()
			_ = closer.Close()
			return fmt.Errorf("engine: key %q: %w", key, err)
		}
	}
	if coverCurrent {
		if len(vv) == 0 {
			vv = cur.Context // read only: no copy needed
		} else {
			vv = vv.Merge(cur.Context)
		}
	}
	// The new record (record.CausalPut's) is encoded without being
	// built, into a stack buffer when it fits. Under the stripe lock no
	// other write of this key can run (causal Apply takes the same locks),
	// so the read-modify-write can Set the result: reads and compactions
	// then have no operands to merge.
	var scratch [causalScratch]byte
	enc := record.AppendCausalPut(scratch[:0], cur, vv, e.opts.ReplicaID, e.clock.Now(), value, tombstone)
	b := e.getBatch()
	defer e.putBatch(b)
	err = b.Set(key, enc)
	if closer != nil {
		st.dec.Release() // the decoded siblings alias Pebble's memory
		_ = closer.Close()
	}
	if err != nil {
		return err
	}
	return e.commit(b, wo)
}

// causalScratch is the size of the stack buffer a causal write encodes its
// record into; larger records are encoded on the heap.
const causalScratch = 512

// stripe returns the index of key's lock stripe.
func (e *Engine) stripe(key []byte) int {
	return int(xxhash.Sum64(key) % uint64(len(e.causalLocks)))
}

// Batch is an atomic group of LWW writes. It is not safe for concurrent
// use.
//
// Writes are stamped as they are added: the first with the HLC's Now, the
// others with its Next, so that a batch reads the physical clock once. A
// batch's writes thus carry the wall time of its first write and strictly
// increasing logical times (and stay strictly ordered with every other
// timestamp the clock issues).
type Batch struct {
	e       *Engine
	hb      *hooks.Batch
	err     error
	stamped bool // a write has been stamped with Now
}

// NewBatch returns an empty batch (LWW mode).
func (e *Engine) NewBatch() *Batch { return &Batch{e: e, hb: e.getBatch()} }

// Put adds a blind LWW write of value under key.
func (b *Batch) Put(key, value []byte) error { return b.add(key, value, false) }

// Delete adds a blind LWW tombstone for key.
func (b *Batch) Delete(key []byte) error { return b.add(key, nil, true) }

func (b *Batch) add(key, value []byte, tombstone bool) error {
	if b.err != nil {
		return b.err
	}
	if b.e.opts.Mode != record.ModeLWW {
		return fmt.Errorf("%w: batches are LWW only", ErrWrongMode)
	}
	if err := b.e.CheckKey(key); err != nil {
		return err
	}
	if err := b.e.checkValue(value); err != nil {
		return err
	}
	var ts record.Timestamp
	if b.stamped {
		ts = b.e.clock.Next()
	} else {
		ts, b.stamped = b.e.clock.Now(), true
	}
	return setLWW(b.hb, key, b.e.opts.ReplicaID, ts, value, tombstone)
}

// Len is the number of writes in the batch.
func (b *Batch) Len() int { return b.hb.Len() }

// Commit applies the batch atomically and releases it.
func (b *Batch) Commit(ctx context.Context, wo *WriteOptions) error {
	if f := b.e.opts.ObserveForeground; f != nil {
		defer observe(f, time.Now())
	}
	if b.hb == nil {
		return fmt.Errorf("engine: batch already committed")
	}
	defer b.Close()
	if err := b.e.enter(); err != nil {
		return err
	}
	defer b.e.exit()
	return b.e.commit(b.hb, wo)
}

// Close releases an uncommitted batch.
func (b *Batch) Close() {
	if b.hb != nil {
		b.e.putBatch(b.hb)
		b.hb = nil
	}
}

// DeleteRange physically removes every key in [start, end) from this
// replica. It is a local operation, not a replicated delete: anti-entropy
// brings the keys back from other replicas unless they are deleted there
// too. The tree marks the range dirty and recomputes it lazily.
func (e *Engine) DeleteRange(ctx context.Context, start, end []byte, wo *WriteOptions) error {
	if len(end) == 0 || string(start) >= string(end) {
		return fmt.Errorf("%w: delete range [%q, %q) is empty or inverted", ErrBadRequest, start, end)
	}
	if !keyspace.IsUser(start) {
		return fmt.Errorf("%w: %q", ErrReservedKey, start)
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	b := e.getBatch()
	defer e.putBatch(b)
	// A range across the reserved key space deletes the user keys on
	// either side of it, never the engine's own state.
	for _, sp := range keyspace.UserSpans(start, end) {
		if err := b.DeleteRange(sp[0], sp[1]); err != nil {
			return err
		}
	}
	return e.commit(b, wo)
}

// setLWW adds a Set of key to the LWW record (writer, ts, value), encoded
// straight into the batch.
func setLWW(b *hooks.Batch, key []byte, writer record.ReplicaID, ts record.Timestamp, value []byte, tombstone bool) error {
	n := record.LWWEncodedLen(writer, ts, value, tombstone)
	return b.SetFunc(key, n, func(dst []byte) []byte {
		return record.AppendLWW(dst, writer, ts, value, tombstone)
	})
}

func observe(f func(time.Duration), start time.Time) { f(time.Since(start)) }
