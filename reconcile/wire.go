package reconcile

import "math/bits"

// The wire model: the exact size of the protocol-buffer encoding of each
// request and answer, which the gRPC transport (plugin/) is to use, so its
// measured traffic can be checked against a session's Stats. Sizes are
// proto3 encodings (zero scalars and empty bytes omitted; every field number
// below 16, so every tag is one byte) plus GRPCFrameSize per message. HTTP/2
// frames and headers are not modelled (they are per call, not per byte, and
// HPACK compresses the repeated headers).
//
//	message KeyRange         { bytes start = 1; bytes end = 2; }
//	message Fingerprint      { bytes hash = 1;  /* 16 bytes */ uint64 count = 2; }
//	message RangeHashRequest { uint32 partition = 1; repeated KeyRange ranges = 2;
//	                           uint32 fanout = 3; uint32 depth = 4; }
//	message Node             { Fingerprint fingerprint = 1;
//	                           repeated bytes splits = 2;   // children[1:].start
//	                           repeated Node children = 3; }
//	message RangeHashResponse{ repeated Node ranges = 1; }  // in request order
//	message RangeScanRequest { uint32 partition = 1; KeyRange range = 2;
//	                           bool with_records = 3; uint32 limit = 4; }
//	message Entry            { bytes key = 1; fixed64 digest = 2; bytes record = 3; }
//	message RangeScanResponse{ repeated Entry entries = 1; bool more = 2; bytes next = 3; }
//	message FetchRequest     { uint32 partition = 1; repeated bytes keys = 2; }
//	message FetchResponse    { repeated Entry entries = 1; }
//	message ApplyRequest     { uint32 partition = 1; repeated Entry entries = 2;
//	                           KeyRange confirm = 3; } // set: answer the range's Node
//	message ApplyResponse    { Node confirm = 1; }
//	message RangeSketchRequest  { uint32 partition = 1; repeated KeyRange ranges = 2;
//	                              uint32 cells = 3; uint32 strata = 4; }
//	message RangeSketchResponse { uint64 count = 1;
//	                              bytes cells = 2;  // 9 bytes a cell: count (int8),
//	                                                // check (uint16 BE), ID (48 bits BE)
//	                              bytes strata = 3; } // 2 bytes a value (uint16 BE)
//	message SymbolsRequest      { uint32 partition = 1; repeated KeyRange ranges = 2;
//	                              uint32 max = 3; }
//	message SymbolsChunk        { uint64 count = 1; bytes symbols = 2; } // 9 bytes a symbol, as cells;
//	                                                                    // a stream of chunks
//	message FetchByHashRequest  { uint32 partition = 1; repeated KeyRange ranges = 2;
//	                              bytes ids = 3; }  // 6 bytes an ID (48 bits BE)
//	message FetchByHashResponse { repeated Entry entries = 1; } // digests omitted
//	message InfoRequest      { }
//	message InfoResponse     { bytes id = 1; uint32 mode = 2; TreeParams tree = 3;
//	                           repeated PartitionInfo partitions = 4; }
//	message TreeParams       { uint32 hash_version = 1; uint32 leaf_size = 2;
//	                           uint64 seed = 3; string partitioner = 4; }
//	message PartitionInfo    { uint32 id = 1; KeyRange range = 2; bool ready = 3; }
//
// Answers do not echo their requests: a RangeHash's Range and a child's
// range are rebuilt by the client from the request and the splits (child i
// spans [splits[i-1], splits[i]) inside its parent), so a child costs its
// fingerprint and one boundary key. Fingerprints cost 16 bytes of hash plus
// the count; per-key digests 8 bytes (fixed64). Entries whose Digest is zero
// omit it (proto3): Apply entries and FetchByHash answers, whose receivers
// recompute digests.
//
// Collision probability accepted: a 128-bit fingerprint hash makes two
// differing ranges look equal with probability 2^-128 per comparison; an
// 8-byte digest makes two differing records of one key look equal with
// probability 2^-64 per listed key. Both are far below the rate of
// undetected hardware errors; a miss is repaired by a later session only if
// the records change again.

// GRPCFrameSize is the gRPC length-prefixed-message header: one flag byte
// and a 4-byte length, per message.
const GRPCFrameSize = 5

// ApplyMessageEntries is the most entries of one gRPC ApplyRequest message
// (engine.MaxKeysPerRequest): larger applies are streamed (ApplyStream).
const ApplyMessageEntries = 10000

// varintLen returns the length of the uvarint encoding of x.
func varintLen(x uint64) uint64 { return uint64(bits.Len64(x|1)+6) / 7 }

// bytesField returns the size of a bytes field (omitted when empty).
func bytesField(n int) uint64 {
	if n == 0 {
		return 0
	}
	return 1 + varintLen(uint64(n)) + uint64(n)
}

// repeatedBytes returns the size of one element of a repeated bytes field
// (never omitted).
func repeatedBytes(n int) uint64 { return 1 + varintLen(uint64(n)) + uint64(n) }

// varintField returns the size of a varint field (omitted when zero).
func varintField(x uint64) uint64 {
	if x == 0 {
		return 0
	}
	return 1 + varintLen(x)
}

// boolField returns the size of a bool field.
func boolField(b bool) uint64 {
	if b {
		return 2
	}
	return 0
}

// message returns the size of an embedded message of size n as a field.
func message(n uint64) uint64 { return 1 + varintLen(n) + n }

func keyRangeSize(r KeyRange) uint64 { return bytesField(len(r.Start)) + bytesField(len(r.End)) }

func fingerprintSize(f Fingerprint) uint64 { return 2 + FingerprintSize + varintField(f.Count) }

// nodeSize returns the size of a Node message with the given children.
func nodeSize(f Fingerprint, children []Child) uint64 {
	n := message(fingerprintSize(f))
	for i, c := range children {
		if i > 0 {
			n += repeatedBytes(len(c.Range.Start))
		}
		n += message(nodeSize(c.Fingerprint, c.Children))
	}
	return n
}

// entrySize returns the size of an Entry message, split into its key and
// digest part and its record part.
func entrySize(e Entry) (keys, records uint64) {
	keys = repeatedBytes(len(e.Key))
	if e.Digest != 0 {
		keys += 1 + 8
	}
	return keys, bytesField(len(e.Record))
}

func rangesSize(rs []KeyRange) uint64 {
	var n uint64
	for _, kr := range rs {
		n += message(keyRangeSize(kr))
	}
	return n
}

// RequestWireSize returns the modelled size of a request on the wire, by
// kind.
func RequestWireSize(r Request) Bytes {
	b := Bytes{Overhead: GRPCFrameSize}
	switch r.Kind {
	case RequestInfo:
	case RequestRangeHash:
		rr := r.RangeHash
		n := varintField(uint64(rr.Partition)) + varintField(uint64(rr.Fanout)) + varintField(uint64(rr.Depth))
		for _, kr := range rr.Ranges {
			n += message(keyRangeSize(kr))
		}
		b.Fingerprints += n
	case RequestRangeScan:
		rr := r.RangeScan
		b.KeyLists += varintField(uint64(rr.Partition)) + message(keyRangeSize(rr.Range)) +
			boolField(rr.WithRecords) + varintField(uint64(rr.Limit))
	case RequestFetch:
		b.KeyLists += varintField(uint64(r.Partition))
		for _, k := range r.Keys {
			b.KeyLists += repeatedBytes(len(k))
		}
	case RequestApply:
		// More than ApplyMessageEntries entries go in one ApplyStream
		// call, a message (with its partition) a ApplyMessageEntries.
		msgs := max(1, (uint64(len(r.Entries))+ApplyMessageEntries-1)/ApplyMessageEntries)
		b.Overhead += msgs*varintField(uint64(r.Partition)) + (msgs-1)*GRPCFrameSize
		addEntries(&b, r.Entries)
		if r.Confirm != nil {
			b.Fingerprints += message(keyRangeSize(*r.Confirm))
		}
	case RequestRangeSketch:
		sk := r.Sketch
		b.Sketches += varintField(uint64(sk.Partition)) + rangesSize(sk.Ranges) +
			varintField(uint64(sk.Cells)) + varintField(uint64(sk.Strata))
	case RequestSymbols:
		sy := r.Symbols
		b.Sketches += varintField(uint64(sy.Partition)) + rangesSize(sy.Ranges) + varintField(uint64(sy.Max))
	case RequestFetchByHash:
		f := r.FetchByHash
		b.KeyLists += varintField(uint64(f.Partition)) + rangesSize(f.Ranges) + bytesField(idWireSize*len(f.IDs))
	}
	return b
}

// addEntries adds repeated Entry fields to b.
func addEntries(b *Bytes, es []Entry) {
	for _, e := range es {
		k, rec := entrySize(e)
		b.KeyLists += 1 + varintLen(k+rec) + k
		b.Records += rec
		if len(e.Record) > 0 {
			// The key of a record moved is part of the record.
			b.KeyLists -= uint64(len(e.Key))
			b.RecordKeys += uint64(len(e.Key))
		}
	}
}

// ResponseWireSize returns the modelled size of the answer resp to req, by
// kind.
func ResponseWireSize(req Request, resp Response) Bytes {
	b := Bytes{Overhead: GRPCFrameSize}
	switch req.Kind {
	case RequestInfo:
		i := resp.Info
		tree := varintField(uint64(i.Tree.HashVersion)) + varintField(uint64(i.Tree.LeafSize)) +
			varintField(i.Tree.Seed) + bytesField(len(i.Tree.Partitioner))
		n := bytesField(len(i.ID)) + varintField(uint64(i.Mode)) + message(tree)
		for _, p := range i.Partitions {
			n += message(varintField(uint64(p.ID)) + message(keyRangeSize(p.Range)) + boolField(p.Ready))
		}
		b.Overhead += n
	case RequestRangeHash:
		for _, h := range resp.Hashes {
			b.Fingerprints += message(nodeSize(h.Fingerprint, h.Children))
		}
	case RequestRangeScan:
		addEntries(&b, resp.Scan.Entries)
		b.KeyLists += boolField(resp.Scan.More) + bytesField(len(resp.Scan.Next))
	case RequestFetch:
		addEntries(&b, resp.Entries)
	case RequestApply:
		for _, h := range resp.Hashes {
			b.Fingerprints += message(nodeSize(h.Fingerprint, h.Children))
		}
	case RequestRangeSketch:
		sk := resp.Sketch
		b.Sketches += varintField(sk.Count) + bytesField(sketchCellWireSize*len(sk.Cells)) +
			bytesField(strataCellWireSize*len(sk.Strata))
	case RequestSymbols:
		// One message a chunk; the end of the stream is the call's
		// status, not a message.
		if resp.SymbolsEnd {
			return Bytes{}
		}
		c := resp.Symbols
		b.Sketches += varintField(c.Count) + bytesField(sketchCellWireSize*len(c.Symbols))
	case RequestFetchByHash:
		for _, e := range resp.Entries {
			e.Digest = 0 // not on the wire
			addEntries(&b, []Entry{e})
		}
	}
	return b
}

// countRequest adds a request's wire size to the stats.
func (s *Session) countRequest(r Request) {
	st := s.stats.side(r.Side)
	st.Requests++
	st.Sent = st.Sent.Add(RequestWireSize(r))
}

// countResponse adds an answer's wire size to the stats.
func (s *Session) countResponse(req Request, resp Response) {
	st := s.stats.side(req.Side)
	st.Received = st.Received.Add(ResponseWireSize(req, resp))
}
