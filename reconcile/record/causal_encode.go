package record

import (
	"cmp"
	"slices"
)

// vvEntry is one nonzero entry of a version vector, for encoding without a
// map.
type vvEntry struct {
	id ReplicaID
	n  uint64
}

// AppendCausalPut appends exactly the bytes of CausalPut(cur, ctx, at, ts,
// value, tombstone).Encode() to dst, without building the result Record:
// the causal write path encodes straight into the Pebble batch with it. For
// contexts of up to 8 replicas and records of up to 8 siblings it allocates
// nothing beyond growing dst. It does not modify cur or ctx.
func AppendCausalPut(dst []byte, cur Record, ctx VersionVector, at ReplicaID, ts Timestamp, value []byte, tombstone bool) []byte {
	dot := nextDot(cur, ctx, at)
	counter := dot.Counter
	if tombstone {
		value = nil
	}

	// Context: merge(cur.Context, ctx) with at set to counter, nonzero
	// entries in replica order (what Merge, then AppendEncode, produce).
	var entryBuf [8]vvEntry
	entries := entryBuf[:0]
	for id, n := range cur.Context {
		if n != 0 && id != at {
			entries = append(entries, vvEntry{id, max(n, ctx[id])})
		}
	}
	for id, n := range ctx {
		if n != 0 && id != at && cur.Context[id] == 0 {
			entries = append(entries, vvEntry{id, n})
		}
	}
	entries = append(entries, vvEntry{at, counter})
	slices.SortFunc(entries, func(a, b vvEntry) int { return cmp.Compare(a.id, b.id) })

	// Siblings: those of cur that ctx does not cover (and that do not hold
	// the new dot), and the new one, in dot order.
	var sibBuf [8]Sibling
	sibs := sibBuf[:0]
	for _, s := range cur.Siblings {
		if !ctx.Covers(s.Dot) && s.Dot != dot {
			sibs = append(sibs, s)
		}
	}
	sibs = append(sibs, Sibling{Dot: dot, Timestamp: ts, Tombstone: tombstone, Value: value})
	slices.SortStableFunc(sibs, compareDots)

	dst = append(dst, RecordFormatVersion, byte(ModeCausal))
	dst = appendUvarint(dst, uint64(len(entries)))
	var idBuf [8]ReplicaID
	ids := idBuf[:0]
	for _, e := range entries {
		dst = appendReplicaID(dst, e.id)
		dst = appendUvarint(dst, e.n)
		ids = append(ids, e.id)
	}
	// Every sibling's dot is covered by the context: cur's by cur.Context
	// (a valid record) and the new one by its own entry.
	return appendSiblingsV2(dst, sibs, ids)
}

// appendSiblings appends the sibling count and the siblings, which must be
// in dot order, in format 1 (see AppendEncodeV1).
func appendSiblings(dst []byte, sibs []Sibling) []byte {
	dst = appendUvarint(dst, uint64(len(sibs)))
	for _, s := range sibs {
		dst = appendReplicaID(dst, s.Dot.Replica)
		dst = appendUvarint(dst, s.Dot.Counter)
		dst = appendUvarint(dst, uint64(s.Timestamp.WallTime))
		dst = appendUvarint(dst, uint64(s.Timestamp.Logical))
		var flags byte
		if s.Tombstone {
			flags |= flagTombstone
		}
		dst = append(dst, flags)
		dst = appendUvarint(dst, uint64(len(s.Value)))
		dst = append(dst, s.Value...)
	}
	return dst
}
