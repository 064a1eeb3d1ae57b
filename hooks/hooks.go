package hooks

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// OpKind is the kind of one user operation in a batch.
type OpKind uint8

// The user operations a batch can carry.
const (
	OpSet OpKind = iota + 1
	OpMerge
	OpDelete
	OpDeleteRange
)

// String returns the operation's name.
func (k OpKind) String() string {
	switch k {
	case OpSet:
		return "set"
	case OpMerge:
		return "merge"
	case OpDelete:
		return "delete"
	case OpDeleteRange:
		return "delete-range"
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// Op is one user operation. For OpDeleteRange the range is [Key, End).
// Key, Value and End are owned by the Batch (they point into the Pebble
// batch's own copy) and are valid until the batch is closed or reset; hooks
// must copy what they keep.
type Op struct {
	Kind  OpKind
	Key   []byte
	Value []byte
	End   []byte
}

// Batch is a set of user operations on their way to one atomic commit,
// together with the Pebble batch that carries them. It is not safe for
// concurrent use.
type Batch struct {
	ops []Op
	pb  *pebble.Batch
}

// NewBatch wraps pb. The Batch records every user operation made through its
// methods; operations added directly to Pebble() are not seen by hooks.
func NewBatch(pb *pebble.Batch) *Batch { return &Batch{pb: pb} }

// Ops returns the user operations in the order they were added. The slice
// must not be modified.
func (b *Batch) Ops() []Op { return b.ops }

// Pebble returns the Pebble batch. A hook's PreCommit may add internal
// operations to it; they commit atomically with the user's operations.
func (b *Batch) Pebble() *pebble.Batch { return b.pb }

// Len is the number of user operations.
func (b *Batch) Len() int { return len(b.ops) }

// Set adds a Set of key to value. The batch copies key and value.
func (b *Batch) Set(key, value []byte) error {
	d := b.pb.SetDeferred(len(key), len(value))
	copy(d.Key, key)
	copy(d.Value, value)
	b.ops = append(b.ops, Op{Kind: OpSet, Key: d.Key, Value: d.Value})
	return d.Finish()
}

// SetFunc adds a Set of key to a value of valueLen bytes that fill writes
// in place, straight into the Pebble batch (no intermediate buffer): fill
// gets a zero-length slice with capacity valueLen, must append exactly
// valueLen bytes to it and return the result. A fill that appends any other
// number of bytes is a bug in the caller's length computation that would
// commit a corrupt value: SetFunc panics.
func (b *Batch) SetFunc(key []byte, valueLen int, fill func(dst []byte) []byte) error {
	d := b.pb.SetDeferred(len(key), valueLen)
	copy(d.Key, key)
	if got := fill(d.Value[:0:valueLen]); len(got) != valueLen || (valueLen > 0 && &got[0] != &d.Value[0]) {
		panic(fmt.Sprintf("hooks: SetFunc: fill wrote %d bytes (in place: %t), want %d in place", len(got), valueLen > 0 && len(got) > 0 && &got[0] == &d.Value[0], valueLen))
	}
	b.ops = append(b.ops, Op{Kind: OpSet, Key: d.Key, Value: d.Value})
	return d.Finish()
}

// Merge adds a Merge of value into key. The batch copies key and value.
func (b *Batch) Merge(key, value []byte) error {
	d := b.pb.MergeDeferred(len(key), len(value))
	copy(d.Key, key)
	copy(d.Value, value)
	b.ops = append(b.ops, Op{Kind: OpMerge, Key: d.Key, Value: d.Value})
	return d.Finish()
}

// Delete adds a point deletion of key. The batch copies key.
func (b *Batch) Delete(key []byte) error {
	d := b.pb.DeleteDeferred(len(key))
	copy(d.Key, key)
	b.ops = append(b.ops, Op{Kind: OpDelete, Key: d.Key})
	return d.Finish()
}

// DeleteRange adds a deletion of every key in [start, end).
func (b *Batch) DeleteRange(start, end []byte) error {
	if err := b.pb.DeleteRange(start, end, nil); err != nil {
		return err
	}
	b.ops = append(b.ops, Op{Kind: OpDeleteRange, Key: append([]byte(nil), start...), End: append([]byte(nil), end...)})
	return nil
}

// Reset empties the batch (and its Pebble batch) for reuse.
func (b *Batch) Reset() {
	b.pb.Reset()
	clear(b.ops)
	b.ops = b.ops[:0]
}

// Hook is a write hook: a struct of functions, any of which may be nil, in
// the manner of pebble.EventListener.
type Hook struct {
	// PreCommit runs before the batch is applied. It may add operations to
	// b.Pebble(). An error aborts the commit; the batch is not applied.
	PreCommit func(b *Batch) error
	// PostCommit runs after the apply, with the apply's error, for every
	// batch whose PreCommit succeeded (including when a later hook's
	// PreCommit failed: then err is that failure).
	PostCommit func(b *Batch, err error)
}

// ErrAborted wraps a PreCommit failure.
var ErrAborted = errors.New("hooks: batch aborted by a pre-commit hook")

// Tee returns a hook that runs every given hook in order. If a PreCommit
// fails, the PostCommit of every hook whose PreCommit succeeded runs with the
// error, in reverse order, and the error is returned.
func Tee(hs ...Hook) Hook {
	hs = append([]Hook(nil), hs...)
	return Hook{
		PreCommit: func(b *Batch) error {
			for i, h := range hs {
				if h.PreCommit == nil {
					continue
				}
				if err := h.PreCommit(b); err != nil {
					err = fmt.Errorf("%w: hook %d: %w", ErrAborted, i, err)
					for j := i - 1; j >= 0; j-- {
						if hs[j].PostCommit != nil {
							hs[j].PostCommit(b, err)
						}
					}
					return err
				}
			}
			return nil
		},
		PostCommit: func(b *Batch, err error) {
			for i := len(hs) - 1; i >= 0; i-- {
				if hs[i].PostCommit != nil {
					hs[i].PostCommit(b, err)
				}
			}
		},
	}
}

// Commit runs h around applying b to db: PreCommit, Apply, PostCommit.
func Commit(db *pebble.DB, h Hook, b *Batch, opts *pebble.WriteOptions) error {
	if h.PreCommit != nil {
		if err := h.PreCommit(b); err != nil {
			return err
		}
	}
	err := db.Apply(b.pb, opts)
	if h.PostCommit != nil {
		h.PostCommit(b, err)
	}
	return err
}
