// Package keyspace defines pebble-ae's layout of the Pebble key space: user
// keys are stored as given; the keys that start with InternalPrefix belong to
// pebble-ae. Every other key, including the keys that sort above the internal
// range, is a user key.
//
//	""  ... user keys ...  \xff\xffae\x00 | m meta                             | \xff\xffae\x01 ... user keys ...
//	                                      | l leaf records   (l partition(4) start)
//	                                      | d dirty markers  (d gen(8) partition(4) pos)
//	                                      | f entry fragments (f partition(4) start)
//	                                      | x entry IDs       (x partition(4) id(6) start)
//	                                      | y symbol prefixes (y partition(4) ...)
//
// Code that iterates user keys must skip the internal range [InternalPrefix,
// InternalEnd) and go on above it (merkle.NewUserIter does).
//
// Releases before this layout reserved every key at or above InternalPrefix
// (a half-line). A database they wrote holds no user key above the internal
// range, so it reads the same under both layouts: its trees, markers and
// records need no migration.
package keyspace

import (
	"bytes"
	"encoding/binary"
)

// InternalPrefix starts the reserved key space: a key is reserved if and
// only if it starts with InternalPrefix.
var InternalPrefix = []byte("\xff\xffae\x00")

// InternalEnd is the smallest key above every reserved key: the reserved
// range is [InternalPrefix, InternalEnd).
var InternalEnd = PrefixEnd(InternalPrefix)

// Sub-spaces of the internal key space.
const (
	SpaceMeta   = 'm'
	SpaceLeaf   = 'l'
	SpaceMarker = 'd'
	// The engine's entry index (engine/entries.go).
	SpaceFragment = 'f'
	SpaceEntryID  = 'x'
	SpacePrefix   = 'y'
)

// Key returns InternalPrefix + space + parts...
func Key(space byte, parts ...[]byte) []byte {
	n := len(InternalPrefix) + 1
	for _, p := range parts {
		n += len(p)
	}
	k := make([]byte, 0, n)
	k = append(k, InternalPrefix...)
	k = append(k, space)
	for _, p := range parts {
		k = append(k, p...)
	}
	return k
}

// Uint32 encodes v big-endian (so keys sort numerically).
func Uint32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// Uint64 encodes v big-endian (so keys sort numerically).
func Uint64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// IsUser reports whether key lies in the user key space: whether it does not
// start with InternalPrefix.
func IsUser(key []byte) bool { return !bytes.HasPrefix(key, InternalPrefix) }

// OverlapsInternal reports whether the range [start, end) (end nil: no upper
// bound) holds a reserved key.
func OverlapsInternal(start, end []byte) bool {
	return bytes.Compare(start, InternalEnd) < 0 && (end == nil || bytes.Compare(end, InternalPrefix) > 0)
}

// UserSpans returns the parts of [start, end) (end nil: no upper bound) that
// lie outside the reserved range, in key order: none, one or two ranges (a
// nil end in the last one means no upper bound).
func UserSpans(start, end []byte) [][2][]byte {
	if end != nil && bytes.Compare(start, end) >= 0 {
		return nil
	}
	if !OverlapsInternal(start, end) {
		return [][2][]byte{{start, end}}
	}
	var out [][2][]byte
	if bytes.Compare(start, InternalPrefix) < 0 {
		out = append(out, [2][]byte{start, InternalPrefix})
	}
	if end == nil || bytes.Compare(end, InternalEnd) > 0 {
		out = append(out, [2][]byte{InternalEnd, end})
	}
	return out
}

// CompareEnd compares two range ends where nil means no upper bound (above
// every key).
func CompareEnd(a, b []byte) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	return bytes.Compare(a, b)
}

// PrefixEnd returns the smallest key greater than every key with prefix p, or
// nil if there is none.
func PrefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}
