package record

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// TestAppendCausalPutMatchesEncode checks the fast causal encoder byte for
// byte against CausalPut(...).Encode() over random histories: records built
// by causal writes and syncs at up to 12 replicas (more than the encoder's
// stack buffers hold), contexts that are empty, stale, current, ahead of the
// record, hold zero entries or cover only some siblings, tombstones, LWW
// records and absent keys, and counters next to saturation.
func TestAppendCausalPutMatchesEncode(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	replicas := make([]ReplicaID, 12)
	for i := range replicas {
		replicas[i] = ReplicaID(fmt.Sprintf("r%02d", i))
	}
	replica := func() ReplicaID { return replicas[rng.IntN(1+rng.IntN(len(replicas)))] }
	value := func() []byte { return fmt.Appendf(nil, "v%d", rng.IntN(1000)) }
	randomContext := func(cur Record) VersionVector {
		switch rng.IntN(6) {
		case 0:
			return nil
		case 1:
			return VersionVector{}
		case 2:
			return cur.Context
		}
		v := VersionVector{}
		for range rng.IntN(5) {
			id := replica()
			switch rng.IntN(4) {
			case 0:
				v[id] = 0 // a zero entry: the same as absent
			case 1:
				v[id] = cur.Context[id] + uint64(rng.IntN(3)) // ahead
			case 2:
				v[id] = math.MaxUint64 - uint64(rng.IntN(2))
			default:
				if n := cur.Context[id]; n < math.MaxUint64 {
					v[id] = rng.Uint64N(n + 1) // stale or current
				} else {
					v[id] = rng.Uint64()
				}
			}
		}
		return v
	}
	check := func(cur Record, ctx VersionVector, at ReplicaID, ts Timestamp, v []byte, tomb bool) Record {
		t.Helper()
		want := CausalPut(cur, ctx, at, ts, v, tomb)
		prefix := []byte("prefix")
		got := AppendCausalPut(prefix, cur, ctx, at, ts, v, tomb)
		if !bytes.Equal(got[:len(prefix)], []byte("prefix")) || !bytes.Equal(got[len(prefix):], want.Encode()) {
			t.Fatalf("AppendCausalPut(%+v, ctx %v, %q, %v, %q, %t)\n = %x\nwant %x",
				cur, ctx, at, ts, v, tomb, got[len(prefix):], want.Encode())
		}
		return want
	}
	for range 300 {
		var rec Record // absent key
		if rng.IntN(8) == 0 {
			rec = NewLWW(replica(), Timestamp{WallTime: rng.Int64N(100)}, value(), rng.IntN(4) == 0)
		}
		if rng.IntN(16) == 0 {
			id := replica()
			rec = Record{Mode: ModeCausal, Context: VersionVector{id: math.MaxUint64},
				Siblings: []Sibling{{Dot: Dot{Replica: id, Counter: math.MaxUint64}, Value: value()}}}
		}
		for range 1 + rng.IntN(20) {
			ts := Timestamp{WallTime: rng.Int64N(1 << 40), Logical: rng.Uint32N(4)}
			next := check(rec, randomContext(rec), replica(), ts, value(), rng.IntN(5) == 0)
			if rng.IntN(4) == 0 && rec.Mode == ModeCausal {
				// A concurrent write elsewhere, synced in: more siblings.
				next = Sync(next, CausalPut(Record{}, nil, replica(), ts, value(), false))
			}
			if err := next.Validate(); err != nil {
				break // saturated or contradictory: start a new history
			}
			rec = next
		}
	}
}

// TestAppendCausalPutAllocations checks that the causal write path's
// encoder allocates nothing for a record with a few replicas and siblings
// when dst has room.
func TestAppendCausalPutAllocations(t *testing.T) {
	cur := CausalPut(Record{}, nil, "a", Timestamp{WallTime: 1}, []byte("red"), false)
	cur = Sync(cur, CausalPut(Record{}, nil, "b", Timestamp{WallTime: 2}, []byte("blue"), false))
	ctx := VersionVector{"a": 1}
	value := make([]byte, 100)
	dst := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(100, func() {
		dst = AppendCausalPut(dst[:0], cur, ctx, "c", Timestamp{WallTime: 3}, value, false)
	})
	if allocs != 0 {
		t.Fatalf("AppendCausalPut allocates %.1f times, want 0", allocs)
	}
}
