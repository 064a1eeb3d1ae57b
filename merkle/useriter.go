package merkle

import (
	"bytes"
	"context"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pebble-ae/pebble-ae/internal/keyspace"
)

// IterReader is what NewUserIter reads from: a DB, a snapshot or a
// batch.
type IterReader interface {
	NewIterWithContext(ctx context.Context, o *pebble.IterOptions) (*pebble.Iterator, error)
}

// UserIter is a forward Pebble iterator over the user keys of a range: it
// skips the reserved range [keyspace.InternalPrefix, keyspace.InternalEnd)
// with one seek and goes on above it, so a scan that crosses the internal
// range costs no more than one that does not. Its methods mirror
// pebble.Iterator's; Key and Value are valid until the next positioning
// call.
type UserIter struct {
	it *pebble.Iterator
	// cross: the bounds overlap the reserved range, so positioned keys are
	// checked.
	cross bool
}

// NewUserIter returns an iterator over the user keys of [lower, upper)
// (lower nil: from the first key; upper nil: no upper bound).
func NewUserIter(ctx context.Context, r IterReader, lower, upper []byte) (*UserIter, error) {
	it, err := r.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	return &UserIter{it: it, cross: keyspace.OverlapsInternal(lower, upper)}, nil
}

func (u *UserIter) skip(valid bool) bool {
	if valid && u.cross && bytes.HasPrefix(u.it.Key(), keyspace.InternalPrefix) {
		return u.it.SeekGE(keyspace.InternalEnd)
	}
	return valid
}

// First moves to the first user key and reports whether there is one.
func (u *UserIter) First() bool { return u.skip(u.it.First()) }

// Next moves to the next user key and reports whether there is one.
func (u *UserIter) Next() bool { return u.skip(u.it.Next()) }

// SeekGE moves to the first user key >= key and reports whether there is
// one.
func (u *UserIter) SeekGE(key []byte) bool { return u.skip(u.it.SeekGE(key)) }

// Valid reports whether the iterator is positioned at a key.
func (u *UserIter) Valid() bool { return u.it.Valid() }

// Key returns the current key.
func (u *UserIter) Key() []byte { return u.it.Key() }

// Value returns the current value (see pebble.Iterator.Value).
func (u *UserIter) Value() []byte { return u.it.Value() }

// ValueAndErr returns the current value or the error reading it.
func (u *UserIter) ValueAndErr() ([]byte, error) { return u.it.ValueAndErr() }

// Error returns the iterator's accumulated error.
func (u *UserIter) Error() error { return u.it.Error() }

// Close closes the iterator.
func (u *UserIter) Close() error { return u.it.Close() }
