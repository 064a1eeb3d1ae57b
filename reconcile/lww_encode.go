package reconcile

import "encoding/binary"

// LWWEncodedLen returns the length of NewLWW(writer, ts, value,
// tombstone).Encode() without building the record.
func LWWEncodedLen(writer ReplicaID, ts Timestamp, value []byte, tombstone bool) int {
	if tombstone {
		value = nil
	}
	n := 2 + 1 + 1 // version, mode, empty context, one sibling
	n += uvarintLen(uint64(len(writer))) + len(writer)
	n += 1 // counter 0
	n += uvarintLen(uint64(ts.WallTime)) + uvarintLen(uint64(ts.Logical))
	n += 1 // flags
	n += uvarintLen(uint64(len(value))) + len(value)
	return n
}

// AppendLWW appends exactly the bytes of NewLWW(writer, ts, value,
// tombstone).Encode() to dst, without allocating a Record: the LWW write
// path encodes straight into the Pebble batch with it.
func AppendLWW(dst []byte, writer ReplicaID, ts Timestamp, value []byte, tombstone bool) []byte {
	if tombstone {
		value = nil
	}
	dst = append(dst, RecordFormatVersion, byte(ModeLWW), 0, 1)
	dst = appendReplicaID(dst, writer)
	dst = append(dst, 0)
	dst = binary.AppendUvarint(dst, uint64(ts.WallTime))
	dst = binary.AppendUvarint(dst, uint64(ts.Logical))
	var flags byte
	if tombstone {
		flags |= flagTombstone
	}
	dst = append(dst, flags)
	dst = binary.AppendUvarint(dst, uint64(len(value)))
	return append(dst, value...)
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}
