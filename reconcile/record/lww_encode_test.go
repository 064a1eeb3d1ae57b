package record

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestAppendLWWMatchesEncode checks the fast LWW encoder byte for byte
// against the canonical Record.Encode.
func TestAppendLWWMatchesEncode(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	ids := []ReplicaID{"a", "node-17", ReplicaID(bytes.Repeat([]byte("x"), 128))}
	for i := 0; i < 2000; i++ {
		id := ids[rng.IntN(len(ids))]
		ts := Timestamp{WallTime: rng.Int64N(1 << uint(rng.IntN(63))), Logical: rng.Uint32N(1 << uint(rng.IntN(32)))}
		value := make([]byte, rng.IntN(300))
		for j := range value {
			value[j] = byte(rng.Uint32())
		}
		tomb := rng.IntN(4) == 0
		want := NewLWW(id, ts, value, tomb).Encode()
		got := AppendLWW([]byte("prefix"), id, ts, value, tomb)
		if !bytes.Equal(got[6:], want) {
			t.Fatalf("case %d: AppendLWW %x != Encode %x", i, got[6:], want)
		}
		if n := LWWEncodedLen(id, ts, value, tomb); n != len(want) {
			t.Fatalf("case %d: LWWEncodedLen %d != %d", i, n, len(want))
		}
		if _, err := DecodeRecord(got[6:]); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
	}
}
