// Package keyspace defines pebble-ae's layout of the Pebble key space: user
// keys are stored as given and must sort below InternalPrefix; everything at
// or above it belongs to pebble-ae.
//
//	""  ........ user keys ........  \xff\xffae\x00 | m meta
//	                                                | l leaf records   (l partition(4) start)
//	                                                | d dirty markers  (d gen(8) partition(4) pos)
//	                                                | f entry fragments (f partition(4) start)
//	                                                | x entry IDs       (x partition(4) id(6) start)
//	                                                | y symbol prefixes (y partition(4) ...)
package keyspace

import "encoding/binary"

// InternalPrefix starts the reserved key space. User keys must be strictly
// less than it.
var InternalPrefix = []byte("\xff\xffae\x00")

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

// IsUser reports whether key lies in the user key space.
func IsUser(key []byte) bool { return string(key) < string(InternalPrefix) }

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
