package record

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxReplicaIDLen is the maximum length of a ReplicaID in bytes.
const MaxReplicaIDLen = 128

// ReplicaID names a replica. It is an opaque byte string (not necessarily
// UTF-8), compared bytewise, non-empty and at most MaxReplicaIDLen bytes long.
// It is stored in every record the replica writes, so it must be stable for
// the lifetime of the replica's data and unique among the replicas that
// exchange records; reusing the ID of a replica whose data was lost can
// resurrect that replica's causal dots.
type ReplicaID string

// Validate returns nil if id is a valid replica ID, and an error wrapping
// ErrInvalidReplicaID otherwise.
func (id ReplicaID) Validate() error {
	switch {
	case len(id) == 0:
		return fmt.Errorf("%w: empty", ErrInvalidReplicaID)
	case len(id) > MaxReplicaIDLen:
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidReplicaID, len(id), MaxReplicaIDLen)
	case !utf8.ValidString(string(id)):
		// IDs travel as proto strings and name certificates.
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidReplicaID, string(id))
	}
	return nil
}

// Dot identifies one write event: the Counter-th causal write at Replica to a
// given key. Dots are per key: every replica numbers its writes to each key
// 1, 2, 3, ... A dot with Counter 0 identifies no event; it is the dot of
// every LWW write.
type Dot struct {
	Replica ReplicaID
	Counter uint64
}

// Compare orders dots by Replica (bytewise), then by Counter. It is the order
// of the siblings of a causal record.
func (d Dot) Compare(o Dot) int {
	if c := strings.Compare(string(d.Replica), string(o.Replica)); c != 0 {
		return c
	}
	return cmp.Compare(d.Counter, o.Counter)
}

// String formats d as "replica:counter" for logs and tests.
func (d Dot) String() string {
	return fmt.Sprintf("%s:%d", d.Replica, d.Counter)
}

// VersionVector maps each replica to the number of that replica's writes
// (to one key) that are known: it stands for the set of dots
// {(r, 1), ..., (r, v[r])} for every r. Entries with a zero counter are
// equivalent to absent entries; every function of this package treats them
// so, and none produces them. A nil VersionVector is the empty vector and is
// valid for every read-only method.
//
// A VersionVector is a plain map: it is not safe for concurrent mutation, and
// the functions of this package never mutate their arguments.
type VersionVector map[ReplicaID]uint64

// Ordering is the causal order of two version vectors.
type Ordering int

const (
	// Equal: the vectors know exactly the same writes.
	Equal Ordering = iota
	// Before: the receiver knows strictly less than the argument.
	Before
	// After: the receiver knows strictly more than the argument.
	After
	// Concurrent: each vector knows a write the other does not.
	Concurrent
)

// String returns "equal", "before", "after" or "concurrent".
func (o Ordering) String() string {
	switch o {
	case Equal:
		return "equal"
	case Before:
		return "before"
	case After:
		return "after"
	case Concurrent:
		return "concurrent"
	}
	return fmt.Sprintf("Ordering(%d)", int(o))
}

// Compare returns the causal order of v relative to o: Equal if they are
// pointwise equal, Before if o descends v and they differ, After if v
// descends o and they differ, Concurrent otherwise.
func (v VersionVector) Compare(o VersionVector) Ordering {
	vAhead, oAhead := false, false
	for r, n := range v {
		m := o[r]
		if n > m {
			vAhead = true
		} else if n < m {
			oAhead = true
		}
	}
	if !oAhead {
		for r, m := range o {
			if m > v[r] {
				oAhead = true
				break
			}
		}
	}
	switch {
	case vAhead && oAhead:
		return Concurrent
	case vAhead:
		return After
	case oAhead:
		return Before
	}
	return Equal
}

// Descends reports whether v knows every write o knows: v[r] >= o[r] for
// every replica r. Every vector descends itself and the empty vector.
func (v VersionVector) Descends(o VersionVector) bool {
	for r, m := range o {
		if v[r] < m {
			return false
		}
	}
	return true
}

// Covers reports whether v knows the write d: v[d.Replica] >= d.Counter. A
// dot with Counter 0 is covered by every vector.
func (v VersionVector) Covers(d Dot) bool {
	return v[d.Replica] >= d.Counter
}

// Merge returns a new vector, the pointwise maximum of v and o (the union of
// the writes they know). It is commutative, associative and idempotent, and
// the result descends both arguments. The result never aliases v or o and is
// never nil.
func (v VersionVector) Merge(o VersionVector) VersionVector {
	out := make(VersionVector, max(len(v), len(o)))
	for r, n := range v {
		if n != 0 {
			out[r] = n
		}
	}
	for r, m := range o {
		if m > out[r] {
			out[r] = m
		}
	}
	return out
}

// Clone returns a copy of v without its zero entries. The result is never
// nil.
func (v VersionVector) Clone() VersionVector {
	out := make(VersionVector, len(v))
	for r, n := range v {
		if n != 0 {
			out[r] = n
		}
	}
	return out
}

// String formats v as "{a:1, b:2}", replicas in ascending order, zero entries
// omitted, for logs and tests.
func (v VersionVector) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, r := range v.sortedReplicas() {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s:%d", r, v[r])
	}
	b.WriteByte('}')
	return b.String()
}

// sortedReplicas returns the replicas of v's nonzero entries in ascending
// order.
func (v VersionVector) sortedReplicas() []ReplicaID {
	return v.appendSortedReplicas(make([]ReplicaID, 0, len(v)))
}

// appendSortedReplicas appends the replicas of v's nonzero entries to ids,
// sorted, so that a caller with few entries can pass a stack buffer.
func (v VersionVector) appendSortedReplicas(ids []ReplicaID) []ReplicaID {
	for r, n := range v {
		if n != 0 {
			ids = append(ids, r)
		}
	}
	slices.Sort(ids)
	return ids
}

// contextFormatVersion is the leading byte of an encoded causal context.
const contextFormatVersion = 1

// EncodeContext returns the opaque causal context handed to clients for v:
// the canonical encoding of v, so equal vectors give identical bytes. The
// empty vector (nil, or only zero entries) encodes as nil; any other vector
// encodes as
//
//	+---------+----------+--------------------------------------+
//	| version | count    | count × (idLen  id  counter)         |
//	| 1 byte  | uvarint  | uvarint bytes uvarint, ids ascending |
//	+---------+----------+--------------------------------------+
//
// with version 1 and minimal uvarints. v's replica IDs must be valid (see
// ReplicaID.Validate) for DecodeContext to accept the result. The result is a
// new slice owned by the caller.
func EncodeContext(v VersionVector) []byte {
	ids := v.sortedReplicas()
	if len(ids) == 0 {
		return nil
	}
	dst := make([]byte, 0, 2+len(ids)*(2+16+10))
	dst = append(dst, contextFormatVersion)
	return appendVersionVector(dst, v, ids)
}

// appendVersionVector appends count and the (id, counter) entries of v for
// the given sorted ids (the nonzero entries of v).
func appendVersionVector(dst []byte, v VersionVector, ids []ReplicaID) []byte {
	dst = appendUvarint(dst, uint64(len(ids)))
	for _, r := range ids {
		dst = appendReplicaID(dst, r)
		dst = appendUvarint(dst, v[r])
	}
	return dst
}

// DecodeContext decodes a causal context produced by EncodeContext. Empty
// input (nil or zero length) is the empty context: it returns an empty,
// non-nil vector and a nil error. Any other input that EncodeContext would
// not produce exactly (unknown version byte, truncation, trailing bytes,
// non-minimal varints, replica IDs not in strictly ascending order, zero
// counters, invalid replica IDs, or a present but empty vector) returns an
// error wrapping ErrMalformedContext. The result does not alias b.
func DecodeContext(b []byte) (VersionVector, error) {
	if len(b) == 0 {
		return VersionVector{}, nil
	}
	d := decoder{b: b, sentinel: ErrMalformedContext}
	if version, _ := d.byte("format version"); version != contextFormatVersion {
		return nil, d.failAt(0, "unknown context format version %d", version)
	}
	v, err := d.versionVector()
	if err != nil {
		return nil, err
	}
	if len(v) == 0 {
		return nil, d.failAt(1, "empty context must be encoded as zero bytes")
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return v, nil
}

// versionVector reads count and the (id, counter) entries, enforcing strictly
// ascending IDs and nonzero counters. The result is non-nil.
func (d *decoder) versionVector() (VersionVector, error) { return d.versionVectorInto(nil) }

// versionVectorInto is versionVector into the map into (cleared first), or
// into a new map if into is nil.
func (d *decoder) versionVectorInto(into VersionVector) (VersionVector, error) {
	return d.versionVectorIDs(into, nil)
}

// versionVectorIDs is versionVectorInto that also appends the vector's
// replica IDs, in their (ascending) order, to *ids if ids is not nil.
func (d *decoder) versionVectorIDs(into VersionVector, ids *[]ReplicaID) (VersionVector, error) {
	start := d.off
	count, err := d.uvarint("vector length")
	if err != nil {
		return nil, err
	}
	// Each entry takes at least 3 bytes: bound the allocation by the input.
	if count > uint64(d.remaining()/3) {
		return nil, d.failAt(start, "vector length %d exceeds the %d remaining bytes", count, d.remaining())
	}
	v := into
	if v == nil {
		v = make(VersionVector, count)
	} else {
		clear(v)
	}
	var prev ReplicaID
	for i := range count {
		entryStart := d.off
		id, err := d.replicaID()
		if err != nil {
			return nil, err
		}
		if i > 0 && id <= prev {
			return nil, d.failAt(entryStart, "vector entry %d: replica %q not after %q", i, id, prev)
		}
		prev = id
		counterStart := d.off
		n, err := d.uvarint("vector counter")
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, d.failAt(counterStart, "vector entry %d: replica %q has a zero counter", i, id)
		}
		v[id] = n
		if ids != nil {
			*ids = append(*ids, id)
		}
	}
	return v, nil
}
