package fuzz

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// fuzzReader hands out fuzz input a piece at a time; an exhausted reader
// returns zeros, so every input builds something.
type fuzzReader struct{ b []byte }

func (r *fuzzReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *fuzzReader) uint64() uint64 {
	var buf [8]byte
	n := copy(buf[:], r.b)
	r.b = r.b[n:]
	return binary.LittleEndian.Uint64(buf[:])
}

func (r *fuzzReader) bytes(max int) []byte {
	n := min(int(r.byte())%(max+1), len(r.b))
	b := r.b[:n:n]
	r.b = r.b[n:]
	return b
}

// fuzzReplicas are the replica IDs records are built from: short, bytewise
// tricky (a prefix of another, multi-byte UTF-8, which sorts after ASCII)
// and maximal length. (Non-UTF-8 IDs are invalid; FuzzRecordCodec still
// feeds them to the decoder.)
var fuzzReplicas = []record.ReplicaID{
	"a", "b", "ab", "c", "\x00", "\u00e9\u00e8",
	record.ReplicaID(strings.Repeat("r", record.MaxReplicaIDLen)),
}

func (r *fuzzReader) replica() record.ReplicaID {
	return fuzzReplicas[int(r.byte())%len(fuzzReplicas)]
}

// counter returns a small counter or, rarely, one near the uint64 limit.
func (r *fuzzReader) counter() uint64 {
	c := r.byte()
	switch {
	case c < 0xf0:
		return uint64(c % 6)
	case c < 0xf8:
		return r.uint64()
	}
	return math.MaxUint64 - uint64(c&7)
}

func (r *fuzzReader) timestamp() record.Timestamp {
	t := record.Timestamp{WallTime: int64(r.uint64() >> 1)}
	if c := r.byte(); c < 0x80 {
		// Few distinct wall times, so that LWW ties happen.
		t.WallTime = int64(c % 4)
	}
	t.Logical = uint32(r.byte() % 3)
	if r.byte() == 0xff {
		t.Logical = math.MaxUint32
	}
	return t
}

// sibling returns a sibling with the given dot and fuzzed contents.
func (r *fuzzReader) sibling(d record.Dot) record.Sibling {
	s := record.Sibling{Dot: d, Timestamp: r.timestamp(), Tombstone: r.byte()%4 == 0}
	if !s.Tombstone {
		s.Value = r.bytes(8)
	}
	return s
}

// causalRecord builds a valid causal record: a context over a few replicas,
// and siblings at dots it covers.
func (r *fuzzReader) causalRecord() record.Record {
	ctx := record.VersionVector{}
	for range 1 + int(r.byte())%4 {
		id, n := r.replica(), r.counter()
		if n > 0 {
			ctx[id] = max(ctx[id], n)
		}
	}
	var sibs []record.Sibling
	for _, id := range sortedIDs(ctx) { // sorted: building must be deterministic
		// Up to 3 of the last 3 dots of id, chosen by a bit mask.
		n, mask := ctx[id], r.byte()
		for k := uint64(0); k < 3 && k < n; k++ {
			if mask&(1<<k) != 0 {
				sibs = append(sibs, r.sibling(record.Dot{Replica: id, Counter: n - k}))
			}
		}
	}
	if len(sibs) == 0 {
		id := r.replica()
		ctx[id] = max(ctx[id], 1)
		sibs = append(sibs, r.sibling(record.Dot{Replica: id, Counter: ctx[id]}))
	}
	slices.SortFunc(sibs, func(a, b record.Sibling) int { return a.Dot.Compare(b.Dot) })
	return record.Record{Mode: record.ModeCausal, Context: ctx, Siblings: sibs}
}

// sortedIDs returns the replicas of v in ascending order.
func sortedIDs(v record.VersionVector) []record.ReplicaID {
	ids := make([]record.ReplicaID, 0, len(v))
	for id := range v {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// mustRoundTrip checks that r is valid and survives encode/decode exactly.
func mustRoundTrip(t *testing.T, r record.Record) {
	t.Helper()
	if err := r.Validate(); err != nil {
		t.Fatalf("built an invalid record: %v\n%+v", err, r)
	}
	enc := r.Encode()
	if n := r.EncodedLen(); n != len(enc) {
		t.Fatalf("EncodedLen() = %d, Encode() has %d bytes\nrecord %+v", n, len(enc), r)
	}
	got, err := record.DecodeRecord(enc)
	if err != nil {
		t.Fatalf("DecodeRecord(Encode(r)) = %v\nrecord %+v\nbytes %x", err, r, enc)
	}
	if !got.Equal(r) {
		t.Fatalf("round trip changed the record:\n got %+v\nwant %+v", got, r)
	}
	if again := got.Encode(); !bytes.Equal(again, enc) {
		t.Fatalf("re-encoding differs:\n%x\n%x", again, enc)
	}
}

func FuzzRecordCodec(f *testing.F) {
	// A minimal format-2 LWW value: version 2, kind LWW, wall 5 (8 bytes
	// big-endian), logical 1, writer "a", value "xy"; and a tombstone.
	f.Add([]byte{2, 1, 0, 0, 0, 0, 0, 0, 0, 5, 1, 1, 'a', 'x', 'y'})
	f.Add([]byte{2, 5, 0, 0, 0, 0, 0, 0, 1, 0x2c, 0, 1, 'a'})
	// Format 2 with the tombstone bit and a value, and a causal record
	// with a replica index beyond its context: must be rejected.
	f.Add([]byte{2, 5, 0, 0, 0, 0, 0, 0, 1, 0x2c, 0, 1, 'a', 'v'})
	f.Add([]byte{2, 2, 1, 1, 'a', 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0})
	// A minimal format-1 LWW value: version 1, mode 1, no context, 1
	// sibling "a":0, wall 5, logical 1, no flags, value "xy".
	f.Add([]byte{1, 1, 0, 1, 1, 'a', 0, 5, 1, 0, 2, 'x', 'y'})
	// An LWW tombstone at wall 300 (two-byte varint).
	f.Add([]byte{1, 1, 0, 1, 1, 'a', 0, 0xac, 0x02, 0, 1, 0})
	// A causal record with two siblings, one a tombstone.
	f.Add(record.Record{Mode: record.ModeCausal,
		Context: record.VersionVector{"a": 2, "b": 1},
		Siblings: []record.Sibling{
			{Dot: record.Dot{Replica: "a", Counter: 2}, Timestamp: record.Timestamp{WallTime: 6, Logical: 3}, Tombstone: true},
			{Dot: record.Dot{Replica: "b", Counter: 1}, Timestamp: record.Timestamp{WallTime: 7}, Value: []byte("v")},
		}}.Encode())
	// Non-minimal varint for the value length: must be rejected.
	f.Add([]byte{1, 1, 0, 1, 1, 'a', 0, 5, 1, 0, 0x80, 0x00})
	// Context entries out of order: must be rejected.
	f.Add([]byte{1, 2, 2, 1, 'b', 1, 1, 'a', 1, 1, 1, 'a', 1, 1, 0, 0, 0})
	// Unsupported version and garbage.
	f.Add([]byte{2, 1})
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	// A RecordDecoder whose memory already holds a record with other
	// replicas, more siblings and a context: reuse must not leak into
	// the next decode.
	prior := record.Record{Mode: record.ModeCausal,
		Context: record.VersionVector{"a": 3, "c": 1, "d": 9},
		Siblings: []record.Sibling{
			{Dot: record.Dot{Replica: "a", Counter: 3}, Value: []byte("stale")},
			{Dot: record.Dot{Replica: "c", Counter: 1}, Tombstone: true},
			{Dot: record.Dot{Replica: "d", Counter: 9}, Value: []byte("old")},
		}}.Encode()
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := record.DecodeRecord(data)
		var rd record.RecordDecoder
		if _, err := rd.Decode(prior); err != nil {
			t.Fatal(err)
		}
		reused, reusedErr := rd.Decode(data)
		if (err == nil) != (reusedErr == nil) || (err != nil && err.Error() != reusedErr.Error()) {
			t.Fatalf("RecordDecoder.Decode error %v, DecodeRecord error %v", reusedErr, err)
		}
		// canonical re-encodes a decoded record in the format it was read
		// in: format 1 for format-1 input, else format 2.
		canonical := func(r record.Record) []byte {
			if data[0] == record.RecordFormatV1 {
				return r.AppendEncodeV1(nil)
			}
			return r.Encode()
		}
		if err == nil && (!reused.Equal(r) || !bytes.Equal(canonical(reused), data)) {
			t.Fatalf("RecordDecoder.Decode = %+v, DecodeRecord = %+v", reused, r)
		}
		if err != nil {
			if !errors.Is(err, record.ErrMalformedRecord) && !errors.Is(err, record.ErrUnsupportedRecordVersion) {
				t.Fatalf("DecodeRecord error %v wraps neither sentinel", err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("DecodeRecord accepted an invalid record: %v", err)
		}
		if enc := canonical(r); !bytes.Equal(enc, data) {
			t.Fatalf("DecodeRecord accepted a non-canonical encoding:\n in  %x\n out %x", data, enc)
		}
		// Format 1 and 2 encode the same record: either decodes back to it.
		for _, enc := range [][]byte{r.Encode(), r.AppendEncodeV1(nil)} {
			if back, err := record.DecodeRecord(enc); err != nil || !back.Equal(r) {
				t.Fatalf("DecodeRecord(%x) = %+v, %v; want %+v", enc, back, err, r)
			}
		}
		if n := r.EncodedLen(); n != len(r.Encode()) {
			t.Fatalf("EncodedLen() = %d, len(Encode()) = %d", n, len(r.Encode()))
		}
		_ = r.Winner()
		_ = r.IsTombstone()
		if r.Mode == record.ModeCausal && !record.Sync(r, r).Equal(r) {
			t.Fatalf("Sync(r, r) != r for %+v", r)
		}
		if got, err := record.ResolverFor(r.Mode).Resolve(nil, r, r); err != nil || !got.Equal(r) {
			t.Fatalf("Resolve(r, r) = %+v, %v; want r", got, err)
		}
	})
}

func FuzzRecordRoundTrip(f *testing.F) {
	// An LWW value.
	f.Add(false, int64(1700000000_000000000), uint32(0), []byte("value"), []byte{0, 1, 2})
	// An LWW tombstone with the maximal timestamp.
	f.Add(false, int64(math.MaxInt64), uint32(math.MaxUint32), []byte(nil), []byte{0, 0, 0})
	// A causal record with several siblings.
	f.Add(true, int64(5), uint32(1), []byte("vvvvvvvvvvvv"), []byte{1, 3, 2, 0xff, 1, 3, 3, 0xff, 0, 7})
	// A causal record with counters near 2^64.
	f.Add(true, int64(0), uint32(0), []byte("x"), []byte{1, 1, 0xff, 0xff, 0xff, 0x07})
	f.Fuzz(func(t *testing.T, causal bool, wall int64, logical uint32, value, shape []byte) {
		if wall < 0 {
			wall = -(wall + 1)
		}
		r := &fuzzReader{b: shape}
		var rec record.Record
		if causal {
			rec = r.causalRecord()
			// The first sibling gets the fuzzed timestamp and value.
			s := &rec.Siblings[0]
			s.Timestamp = record.Timestamp{WallTime: wall, Logical: logical}
			if !s.Tombstone {
				s.Value = value
			}
		} else {
			rec = record.NewLWW(r.replica(), record.Timestamp{WallTime: wall, Logical: logical}, value, r.byte()%2 == 1)
		}
		mustRoundTrip(t, rec)

		// Canonical encoding: order of siblings and zero context entries do
		// not change the bytes.
		shuffled := record.Record{Mode: rec.Mode, Context: rec.Context.Clone(), Siblings: slices.Clone(rec.Siblings)}
		slices.Reverse(shuffled.Siblings)
		if rec.Mode == record.ModeCausal {
			shuffled.Context["zero-entry"] = 0
		}
		if n := shuffled.EncodedLen(); n != len(rec.Encode()) {
			t.Fatalf("EncodedLen() with a zero context entry = %d, want %d", n, len(rec.Encode()))
		}
		if !shuffled.Equal(rec) || !bytes.Equal(shuffled.Encode(), rec.Encode()) {
			t.Fatalf("equal records encode differently:\n%x\n%x", shuffled.Encode(), rec.Encode())
		}

		// A causal write over the record yields a valid record that
		// round-trips.
		if rec.Mode == record.ModeCausal {
			at, tomb := r.replica(), r.byte()%2 == 1
			next := record.CausalPut(rec, rec.Context, at, record.Timestamp{WallTime: wall}, value, tomb)
			mustRoundTrip(t, next)
			// The write path's encoder gives the same bytes, with the
			// full context and with none (a new sibling).
			if got := record.AppendCausalPut(nil, rec, rec.Context, at, record.Timestamp{WallTime: wall}, value, tomb); !bytes.Equal(got, next.Encode()) {
				t.Fatalf("AppendCausalPut = %x, CausalPut encodes %x", got, next.Encode())
			}
			blind := record.CausalPut(rec, nil, at, record.Timestamp{WallTime: wall}, value, tomb)
			if got := record.AppendCausalPut(nil, rec, nil, at, record.Timestamp{WallTime: wall}, value, tomb); !bytes.Equal(got, blind.Encode()) {
				t.Fatalf("AppendCausalPut without context = %x, CausalPut encodes %x", got, blind.Encode())
			}
			if len(next.Siblings) != 1 {
				t.Fatalf("a write with the full context left %d siblings", len(next.Siblings))
			}
		}
	})
}

func FuzzSyncLaws(f *testing.F) {
	// Three small causal records over the same replicas.
	f.Add([]byte{1, 2, 1, 3, 2, 3, 7, 1, 1, 2, 0, 3, 1, 1, 2, 1, 1, 0xff, 5, 1, 3})
	// Records with conflicting copies of one dot.
	f.Add([]byte{1, 0, 0, 1, 1, 1, 2, 0, 0, 'x', 1, 0, 0, 1, 1, 1, 2, 0, 0, 'y'})
	// Contradictory records (each covers the other's sibling).
	f.Add([]byte{1, 1, 0, 2, 1, 1, 2, 1, 1, 2, 0, 0})
	// Counters near 2^64 and the longest replica ID (index 6).
	f.Add([]byte{2, 6, 0xff, 6, 0xfe, 7, 0, 0, 0, 1, 6, 0xf8, 7, 0, 0, 0, 0, 6, 0xfd, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &fuzzReader{b: data}
		a, b, c := r.causalRecord(), r.causalRecord(), r.causalRecord()
		for _, x := range []record.Record{a, b, c} {
			if err := x.Validate(); err != nil {
				t.Fatalf("built an invalid record: %v", err)
			}
		}
		ab, ba := record.Sync(a, b), record.Sync(b, a)
		if !ab.Equal(ba) {
			t.Fatalf("Sync not commutative:\na  %+v\nb  %+v\nab %+v\nba %+v", a, b, ab, ba)
		}
		if !record.Sync(a, a).Equal(a) {
			t.Fatalf("Sync not idempotent on %+v", a)
		}
		if !record.Sync(ab, b).Equal(ab) {
			t.Fatalf("Sync(Sync(a, b), b) != Sync(a, b)")
		}
		if !record.Sync(a, record.Record{}).Equal(a) {
			t.Fatalf("the zero record is not the identity")
		}
		l, rr := record.Sync(ab, c), record.Sync(a, record.Sync(b, c))
		if !l.Equal(rr) {
			t.Fatalf("Sync not associative:\n(ab)c %+v\na(bc) %+v", l, rr)
		}
		if !ab.Context.Descends(a.Context) || !ab.Context.Descends(b.Context) {
			t.Fatalf("Sync context %v does not descend %v and %v", ab.Context, a.Context, b.Context)
		}
		// The resolver agrees with Sync, and its results are valid.
		got, err := record.KeepSiblings{}.Resolve(nil, a, b)
		if len(ab.Siblings) == 0 {
			if !errors.Is(err, record.ErrMalformedRecord) {
				t.Fatalf("Resolve of contradictory records = %v, want ErrMalformedRecord", err)
			}
			return
		}
		if err != nil || !got.Equal(ab) {
			t.Fatalf("KeepSiblings.Resolve = %+v, %v; want %+v", got, err, ab)
		}
		mustRoundTrip(t, ab)
		// LWW reduction of the causal record: commutative, and the result
		// is either the LWW record or the causal winner.
		lww := record.NewLWW(r.replica(), r.timestamp(), r.bytes(4), false)
		w := ab.Winner()
		reduced := record.NewLWW(w.Dot.Replica, w.Timestamp, w.Value, w.Tombstone)
		lw1, err1 := record.LWW{}.Resolve(nil, lww, ab)
		lw2, err2 := record.LWW{}.Resolve(nil, ab, lww)
		if err1 != nil || err2 != nil || !lw1.Equal(lw2) || !(lw1.Equal(lww) || lw1.Equal(reduced)) {
			t.Fatalf("LWW reduction of %+v and %+v = %+v, %+v (%v, %v)", ab, lww, lw1, lw2, err1, err2)
		}
	})
}
