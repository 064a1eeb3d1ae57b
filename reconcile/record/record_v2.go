package record

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
)

// Format 2 of the record encoding (see Record.AppendEncode): what this
// release writes. Format 1 (Record.AppendEncodeV1) is still read.

// The kind byte of a format-2 record: the mode in bits 0-1, and for LWW the
// tombstone flag in bit 2.
const (
	kindModeMask  = 0x03
	kindTombstone = 0x04
	// kindInvalid is what AppendEncode writes for a record it cannot
	// encode (an LWW record of the wrong shape): DecodeRecord rejects it.
	kindInvalid = 0xff
)

// siblings returns a zeroed slice of n siblings: the decoder's memory when
// rd is not nil and large enough (cleared whole, so that no stale Value
// keeps old memory alive), else a new slice (which rd then keeps).
func (rd *RecordDecoder) siblings(n int) []Sibling {
	if rd != nil && cap(rd.rec.Siblings) >= n {
		sibs := rd.rec.Siblings[:cap(rd.rec.Siblings)]
		clear(sibs)
		return sibs[:n]
	}
	sibs := make([]Sibling, n)
	if rd != nil {
		rd.rec.Siblings = sibs
	}
	return sibs
}

// appendTimestampV2 appends ts as format 2 writes it: the wall time as 8
// big-endian bytes, then the logical counter as a uvarint.
func appendTimestampV2(dst []byte, ts Timestamp) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts.WallTime))
	return binary.AppendUvarint(dst, uint64(ts.Logical))
}

// appendSiblingsV2 appends the sibling count and the siblings, which must
// be in dot order, in format 2; ids are the context's replica IDs in
// ascending order. A dot whose replica is not among them (an invalid
// record) gets the index len(ids), which DecodeRecord rejects.
func appendSiblingsV2(dst []byte, sibs []Sibling, ids []ReplicaID) []byte {
	dst = appendUvarint(dst, uint64(len(sibs)))
	for _, s := range sibs {
		dst = appendUvarint(dst, uint64(replicaIndex(ids, s.Dot.Replica)))
		dst = appendUvarint(dst, s.Dot.Counter)
		dst = appendTimestampV2(dst, s.Timestamp)
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

// replicaIndex returns the index of id in the ascending ids, or len(ids)
// if it is not there.
func replicaIndex(ids []ReplicaID, id ReplicaID) int {
	if i, found := slices.BinarySearch(ids, id); found {
		return i
	}
	return len(ids)
}

// timestampV2 reads a format-2 timestamp.
func (d *decoder) timestampV2(i int) (Timestamp, error) {
	wallStart := d.off
	b, err := d.bytes(8, "wall time")
	if err != nil {
		return Timestamp{}, err
	}
	wall := binary.BigEndian.Uint64(b)
	if wall > math.MaxInt64 {
		return Timestamp{}, d.failAt(wallStart, "sibling %d: wall time %d exceeds the int64 range", i, wall)
	}
	logicalStart := d.off
	logical, err := d.uvarint("logical time")
	if err != nil {
		return Timestamp{}, err
	}
	if logical > math.MaxUint32 {
		return Timestamp{}, d.failAt(logicalStart, "sibling %d: logical time %d exceeds the uint32 range", i, logical)
	}
	return Timestamp{WallTime: int64(wall), Logical: uint32(logical)}, nil
}

// decodeV2 decodes the rest of a format-2 record (the version byte read).
func decodeV2(d *decoder, rd *RecordDecoder) (Record, error) {
	kindStart := d.off
	kind, err := d.byte("kind")
	if err != nil {
		return Record{}, err
	}
	mode := Mode(kind & kindModeMask)
	if !mode.valid() || kind&^(kindModeMask|kindTombstone) != 0 {
		return Record{}, fmt.Errorf("%w: offset %d: %w: kind %#02x", ErrMalformedRecord, kindStart, ErrUnknownMode, kind)
	}
	if mode == ModeLWW {
		return decodeLWWV2(d, rd, kind&kindTombstone != 0)
	}
	if kind&kindTombstone != 0 {
		return Record{}, d.failAt(kindStart, "causal record with the LWW tombstone bit (kind %#02x)", kind)
	}
	r := Record{Mode: ModeCausal}
	var into VersionVector
	var ids []ReplicaID
	if rd != nil {
		if rd.rec.Context == nil {
			rd.rec.Context = make(VersionVector, 4)
		}
		into = rd.rec.Context
		ids = rd.ctxIDs[:0]
	}
	if r.Context, err = d.versionVectorIDs(into, &ids); err != nil {
		return Record{}, err
	}
	if rd != nil {
		rd.ctxIDs = ids
	}
	countStart := d.off
	count, err := d.uvarint("sibling count")
	if err != nil {
		return Record{}, err
	}
	if count > uint64(d.remaining()/minSiblingLenV2) {
		return Record{}, d.failAt(countStart, "sibling count %d exceeds the %d remaining bytes", count, d.remaining())
	}
	r.Siblings = rd.siblings(int(count))
	for i := range r.Siblings {
		s := &r.Siblings[i]
		dotStart := d.off
		idx, err := d.uvarint("dot replica index")
		if err != nil {
			return Record{}, err
		}
		if idx >= uint64(len(ids)) {
			return Record{}, d.failAt(dotStart, "sibling %d: replica index %d, the context has %d replicas", i, idx, len(ids))
		}
		s.Dot.Replica = ids[idx]
		if s.Dot.Counter, err = d.uvarint("dot counter"); err != nil {
			return Record{}, err
		}
		if i > 0 {
			switch c := s.Dot.Compare(r.Siblings[i-1].Dot); {
			case c == 0:
				return Record{}, d.failAt(dotStart, "siblings %d and %d have the same dot %s", i-1, i, s.Dot)
			case c < 0:
				return Record{}, d.failAt(dotStart, "sibling %d (dot %s) not after sibling %d (dot %s)",
					i, s.Dot, i-1, r.Siblings[i-1].Dot)
			}
		}
		if s.Timestamp, err = d.timestampV2(i); err != nil {
			return Record{}, err
		}
		flagsStart := d.off
		flags, err := d.byte("flags")
		if err != nil {
			return Record{}, err
		}
		if flags&^flagTombstone != 0 {
			return Record{}, d.failAt(flagsStart, "sibling %d: unknown flags %#02x", i, flags)
		}
		s.Tombstone = flags&flagTombstone != 0
		valueLen, err := d.uvarint("value length")
		if err != nil {
			return Record{}, err
		}
		if s.Value, err = d.bytes(valueLen, "value"); err != nil {
			return Record{}, err
		}
		if len(s.Value) == 0 {
			s.Value = nil
		}
	}
	if err := d.finish(); err != nil {
		return Record{}, err
	}
	if err := r.Validate(); err != nil {
		return Record{}, err
	}
	return r, nil
}

// decodeLWWV2 decodes the body of a format-2 LWW record.
func decodeLWWV2(d *decoder, rd *RecordDecoder, tombstone bool) (Record, error) {
	r := Record{Mode: ModeLWW, Siblings: rd.siblings(1)}
	s := &r.Siblings[0]
	s.Tombstone = tombstone
	var err error
	if s.Timestamp, err = d.timestampV2(0); err != nil {
		return Record{}, err
	}
	if s.Dot.Replica, err = d.replicaID(); err != nil {
		return Record{}, err
	}
	valueStart := d.off
	if s.Value, err = d.bytes(uint64(d.remaining()), "value"); err != nil {
		return Record{}, err
	}
	if len(s.Value) == 0 {
		s.Value = nil
	}
	if tombstone && s.Value != nil {
		return Record{}, d.failAt(valueStart, "tombstone with a %d-byte value", len(s.Value))
	}
	if err := r.Validate(); err != nil {
		return Record{}, err
	}
	return r, nil
}
