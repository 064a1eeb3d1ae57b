package record

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestRecordDecoderMatchesDecodeRecord decodes a random sequence of LWW and
// causal records (with up to 20 replicas, more than a decoder interns, and
// up to a dozen siblings), truncated encodings among them, with one
// RecordDecoder, and checks every result and error against DecodeRecord's:
// nothing of a previous decode may leak into the next.
func TestRecordDecoderMatchesDecodeRecord(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 5))
	replica := func() ReplicaID { return ReplicaID(fmt.Sprintf("r%d", rng.IntN(1+rng.IntN(20)))) }
	var rd RecordDecoder
	decoded := 0
	for range 2000 {
		var rec Record
		if rng.IntN(4) == 0 {
			rec = NewLWW(replica(), Timestamp{WallTime: rng.Int64N(1 << 40)}, fmt.Appendf(nil, "v%d", rng.IntN(100)), rng.IntN(5) == 0)
		} else {
			for range 1 + rng.IntN(12) {
				rec = Sync(rec, CausalPut(Record{}, nil, replica(), Timestamp{WallTime: rng.Int64N(1 << 40)}, fmt.Appendf(nil, "v%d", rng.IntN(100)), rng.IntN(5) == 0))
			}
		}
		enc := rec.Encode()
		if rng.IntN(5) == 0 {
			enc = enc[:rng.IntN(len(enc))]
		}
		want, wantErr := DecodeRecord(enc)
		got, err := rd.Decode(enc)
		if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
			t.Fatalf("Decode error %v, DecodeRecord error %v", err, wantErr)
		}
		if err == nil {
			decoded++
			if !got.Equal(want) || !bytes.Equal(got.Encode(), enc) {
				t.Fatalf("Decode = %+v, DecodeRecord = %+v", got, want)
			}
		}
		if rng.IntN(2) == 0 {
			rd.Release()
			for i, s := range rd.rec.Siblings[:cap(rd.rec.Siblings)] {
				if s.Value != nil {
					t.Fatalf("after Release, sibling %d still holds %q", i, s.Value)
				}
			}
		}
	}
	if decoded < 1000 {
		t.Fatalf("only %d of 2000 records decoded: the generator is broken", decoded)
	}
	if len(rd.ids) > maxInternedIDs {
		t.Fatalf("the decoder interned %d replica IDs, at most %d allowed", len(rd.ids), maxInternedIDs)
	}
}

// TestRecordDecoderAllocations checks that decoding a causal record whose
// replica IDs the decoder has seen allocates nothing.
func TestRecordDecoderAllocations(t *testing.T) {
	rec := CausalPut(Record{}, nil, "a", Timestamp{WallTime: 1}, []byte("red"), false)
	rec = Sync(rec, CausalPut(Record{}, nil, "node-b", Timestamp{WallTime: 2}, []byte("blue"), false))
	enc := rec.Encode()
	var rd RecordDecoder
	if _, err := rd.Decode(enc); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := rd.Decode(enc); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("RecordDecoder.Decode allocates %.1f times, want 0", allocs)
	}
}
