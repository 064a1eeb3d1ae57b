package record

// LWWEncodedLen returns the length of NewLWW(writer, ts, value,
// tombstone).Encode() without building the record.
func LWWEncodedLen(writer ReplicaID, ts Timestamp, value []byte, tombstone bool) int {
	if tombstone {
		value = nil
	}
	return 2 + 8 + uvarintLen(uint64(ts.Logical)) + uvarintLen(uint64(len(writer))) + len(writer) + len(value)
}

// AppendLWW appends exactly the bytes of NewLWW(writer, ts, value,
// tombstone).Encode() to dst, without allocating a Record: the LWW write
// path encodes straight into the Pebble batch with it. The layout is
// format 2's LWW record (see Record.AppendEncode).
func AppendLWW(dst []byte, writer ReplicaID, ts Timestamp, value []byte, tombstone bool) []byte {
	kind := byte(ModeLWW)
	if tombstone {
		value = nil
		kind |= kindTombstone
	}
	dst = append(dst, RecordFormatVersion, kind)
	dst = appendTimestampV2(dst, ts)
	dst = appendReplicaID(dst, writer)
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
