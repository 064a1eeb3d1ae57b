package engine

import (
	"context"
	"fmt"
)

// KV is the application's key-value interface to a replica: the calls an
// application makes to read and write its own data. Both *Engine (in
// process) and the plugin package's *Client (out of process: a go-plugin
// subprocess, or a node over gRPC) implement it, so a host chooses where
// the replica runs by configuration and keeps the same code:
//
//	var kv engine.KV = e           // in process
//	var kv engine.KV = pluginClient // out of process
//
// The contract is the engine's: the same validation and the same errors
// (test with errors.Is: ErrNotFound, ErrEmptyKey, ErrKeyTooLarge,
// ErrReservedKey, ErrValueTooLarge, ErrWrongMode, ErrBadRequest,
// record.ErrMalformedContext, ...). An out-of-process implementation
// adds its transport's errors (the plugin's ErrUnavailable, and its
// ErrLimitExceeded for a request over the message size limit).
//
// A nil *WriteOptions means Sync: true. Byte slices passed in are not
// retained. Byte slices returned belong to the caller, except those an
// Item passed to a Scan callback carries (see Scan).
type KV interface {
	// Put writes value under key (LWW: blind; causal: a new sibling).
	Put(ctx context.Context, key, value []byte, wo *WriteOptions) error
	// Delete deletes key.
	Delete(ctx context.Context, key []byte, wo *WriteOptions) error
	// Get returns key's value; ErrNotFound if it is absent or deleted.
	Get(ctx context.Context, key []byte) ([]byte, error)
	// GetVersions returns key's live siblings and causal context (causal
	// mode).
	GetVersions(ctx context.Context, key []byte) (Versions, error)
	// PutContext writes value superseding the versions causal covers
	// (causal mode).
	PutContext(ctx context.Context, key, value, causal []byte, wo *WriteOptions) error
	// DeleteContext deletes the versions causal covers (causal mode).
	DeleteContext(ctx context.Context, key, causal []byte, wo *WriteOptions) error
	// Write applies every write of b atomically, in one Pebble batch with
	// one pass of the write hooks: all of them or, if any is refused, none
	// (the error names the first refused write). An empty batch writes
	// nothing. b is not modified and may be reused (Reset) after Write
	// returns.
	Write(ctx context.Context, b *WriteBatch, wo *WriteOptions) error
	// GetMany reads many keys from one consistent snapshot: one Item per
	// key, in the order of keys (duplicates allowed). An absent or deleted
	// key gives an Item with Found false. At most MaxKeysPerRequest keys.
	GetMany(ctx context.Context, keys [][]byte, ro *ReadOptions) ([]Item, error)
	// Scan calls fn with every live key of [req.Start, req.End) in key
	// order, from one consistent snapshot, at most req.Limit keys (0: no
	// limit). It returns the pagination token: nil if the range is
	// exhausted, else the key the next page starts at (pass it as the
	// next request's Start; the next page reads a newer snapshot). An
	// error from fn stops the scan and is returned. The Item's slices are
	// valid only until fn returns: copy what you keep.
	Scan(ctx context.Context, req ScanRequest, fn func(Item) error) (next []byte, err error)
}

var _ KV = (*Engine)(nil)

// ReadOptions control a GetMany. A nil *ReadOptions reads values only.
type ReadOptions struct {
	// Versions also returns every live sibling and the causal context of
	// each key (causal mode only; ErrWrongMode otherwise).
	Versions bool
}

func (ro *ReadOptions) versions() bool { return ro != nil && ro.Versions }

// Item is one key's answer in a GetMany or a Scan.
type Item struct {
	// Key is the key.
	Key []byte
	// Found reports a live value: false for an absent or deleted key. A
	// Scan skips the keys with neither a live value nor (when asked for)
	// a live version.
	Found bool
	// Value is the key's value when Found (in causal mode the LWW winner
	// among its siblings, as Get reads it).
	Value []byte
	// Versions are the live siblings (when asked for, causal mode).
	Versions [][]byte
	// Context is the causal context covering every version seen (when
	// asked for, causal mode); pass it to PutContext or to a WriteBatch.
	Context []byte
}

// ScanRequest is a range of user keys to scan and how.
type ScanRequest struct {
	// Start is the first key (inclusive); empty: the first user key.
	Start []byte
	// End is the bound (exclusive); empty: the end of the user key space.
	// A non-empty End must be greater than Start, else ErrBadRequest.
	End []byte
	// Limit is the most keys to return (0: no limit; negative:
	// ErrBadRequest).
	Limit int
	// Versions also returns each key's live siblings and causal context
	// (causal mode only).
	Versions bool
}

// WriteOpKind is the kind of one write of a WriteBatch.
type WriteOpKind uint8

// The kinds of writes of a WriteBatch.
const (
	// OpPut is Put: blind in LWW mode, a new sibling in causal mode.
	OpPut WriteOpKind = iota + 1
	// OpDelete is Delete.
	OpDelete
	// OpPutContext is PutContext (causal mode).
	OpPutContext
	// OpDeleteContext is DeleteContext (causal mode).
	OpDeleteContext
)

// String returns the kind's name.
func (k WriteOpKind) String() string {
	switch k {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpPutContext:
		return "put-context"
	case OpDeleteContext:
		return "delete-context"
	}
	return fmt.Sprintf("WriteOpKind(%d)", uint8(k))
}

// WriteOp is one write of a WriteBatch. Its slices point into the batch's
// memory.
type WriteOp struct {
	Kind  WriteOpKind
	Key   []byte
	Value []byte
	// Context is the causal context of OpPutContext and OpDeleteContext
	// (empty: none, i.e. cover nothing).
	Context []byte
}

// WriteBatch is a list of writes an application builds and then commits
// atomically with KV.Write, in process or through the plugin: the same
// batch works with every KV. It mirrors the engine's own Batch (which is
// bound to an engine and stamps as it goes) with the causal calls added,
// and is plain data: adding a write validates nothing (Write does, and
// refuses the whole batch for one bad write).
//
// The zero value is an empty batch. Key, value and context bytes are
// copied in. A WriteBatch is not safe for concurrent use.
//
// In LWW mode a batch may hold Put and Delete only (ErrWrongMode
// otherwise); the writes are stamped at commit time with strictly
// increasing HLC timestamps in batch order, so a later write of the same
// key wins. In causal mode every write is a read-modify-write of its key
// (Put is PutContext with no context, Delete covers every version the
// replica has) and a key may appear only once per batch (ErrBadRequest).
type WriteBatch struct {
	ops   []WriteOp
	arena []byte
	bytes int
}

// Put adds a Put of value under key.
func (b *WriteBatch) Put(key, value []byte) { b.add(OpPut, key, value, nil) }

// Delete adds a Delete of key.
func (b *WriteBatch) Delete(key []byte) { b.add(OpDelete, key, nil, nil) }

// PutContext adds a PutContext of value under key with the causal context
// causal (causal mode).
func (b *WriteBatch) PutContext(key, value, causal []byte) {
	b.add(OpPutContext, key, value, causal)
}

// DeleteContext adds a DeleteContext of key with the causal context causal
// (causal mode).
func (b *WriteBatch) DeleteContext(key, causal []byte) {
	b.add(OpDeleteContext, key, nil, causal)
}

// Add adds op (its slices are copied): the form a transport uses to
// rebuild a batch it received.
func (b *WriteBatch) Add(op WriteOp) { b.add(op.Kind, op.Key, op.Value, op.Context) }

func (b *WriteBatch) add(kind WriteOpKind, key, value, causal []byte) {
	n := len(key) + len(value) + len(causal)
	if len(b.arena)+n > cap(b.arena) {
		// A new arena: the old one stays referenced by earlier ops.
		b.arena = make([]byte, 0, max(n, 2*cap(b.arena), 4<<10))
	}
	op := WriteOp{Kind: kind}
	op.Key, b.arena = b.carve(key)
	if value != nil {
		op.Value, b.arena = b.carve(value)
	}
	if len(causal) > 0 {
		op.Context, b.arena = b.carve(causal)
	}
	b.ops = append(b.ops, op)
	b.bytes += n
}

// carve copies p into the arena (which has room) and returns the copy.
func (b *WriteBatch) carve(p []byte) ([]byte, []byte) {
	start := len(b.arena)
	a := append(b.arena, p...)
	return a[start:len(a):len(a)], a
}

// Len is the number of writes in the batch.
func (b *WriteBatch) Len() int { return len(b.ops) }

// Bytes is the total size of the batch's keys, values and contexts.
func (b *WriteBatch) Bytes() int { return b.bytes }

// Ops returns the batch's writes, in order. The result aliases the batch:
// do not modify it, nor use it after Reset.
func (b *WriteBatch) Ops() []WriteOp { return b.ops }

// Reset empties the batch, keeping its memory.
func (b *WriteBatch) Reset() {
	clear(b.ops)
	b.ops = b.ops[:0]
	b.arena = b.arena[:0]
	b.bytes = 0
}
