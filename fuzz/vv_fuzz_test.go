package fuzz

import (
	"bytes"
	"errors"
	"testing"

	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// versionVector builds a vector of up to 4 entries from the input, zero
// entries included (they must behave as absent).
func (r *fuzzReader) versionVector() record.VersionVector {
	v := record.VersionVector{}
	for range int(r.byte()) % 5 {
		id := r.replica()
		v[id] = r.counter()
	}
	return v
}

func FuzzVersionVectorMergeLaws(f *testing.F) {
	// Three concurrent vectors.
	f.Add([]byte{2, 0, 1, 1, 2, 2, 1, 1, 2, 3, 2, 2, 5, 3, 1})
	// Equal vectors, one with a zero entry.
	f.Add([]byte{1, 0, 3, 2, 0, 3, 1, 0, 1, 0})
	// Counters near 2^64.
	f.Add([]byte{1, 0, 0xff, 1, 0, 0xfe, 1, 1, 0xf8, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &fuzzReader{b: data}
		a, b, c := r.versionVector(), r.versionVector(), r.versionVector()
		ab, ba := a.Merge(b), b.Merge(a)
		if ab.Compare(ba) != record.Equal {
			t.Fatalf("Merge not commutative: %v, %v", ab, ba)
		}
		if aa := a.Merge(a); aa.Compare(a) != record.Equal {
			t.Fatalf("Merge not idempotent: %v -> %v", a, aa)
		}
		if l, rr := ab.Merge(c), a.Merge(b.Merge(c)); l.Compare(rr) != record.Equal {
			t.Fatalf("Merge not associative: %v vs %v", l, rr)
		}
		if !ab.Descends(a) || !ab.Descends(b) {
			t.Fatalf("%v does not descend %v and %v", ab, a, b)
		}
		for id, n := range ab {
			if n == 0 {
				t.Fatalf("Merge produced a zero entry for %q", id)
			}
			if n != max(a[id], b[id]) {
				t.Fatalf("Merge[%q] = %d, want max(%d, %d)", id, n, a[id], b[id])
			}
		}
		// Compare agrees with Descends, and with Covers on every dot.
		want := map[[2]bool]record.Ordering{
			{true, true}: record.Equal, {false, true}: record.Before,
			{true, false}: record.After, {false, false}: record.Concurrent,
		}[[2]bool{a.Descends(b), b.Descends(a)}]
		if got := a.Compare(b); got != want {
			t.Fatalf("%v.Compare(%v) = %v, Descends says %v", a, b, got, want)
		}
		for id, n := range b {
			d := record.Dot{Replica: id, Counter: n}
			if a.Descends(b) && !a.Covers(d) {
				t.Fatalf("%v descends %v but does not cover %v", a, b, d)
			}
			if !ab.Covers(d) {
				t.Fatalf("merge %v does not cover %v", ab, d)
			}
		}
		// Merge and Clone do not alias their arguments.
		clone := a.Clone()
		for id := range ab {
			ab[id]++
		}
		if clone.Compare(a) != record.Equal {
			t.Fatalf("mutating a merge result changed its argument")
		}
	})
}

func FuzzContextCodec(f *testing.F) {
	// The empty context.
	f.Add([]byte{})
	// {a:1}.
	f.Add([]byte{1, 1, 1, 'a', 1})
	// {a:2, bb:300}.
	f.Add([]byte{1, 2, 1, 'a', 2, 2, 'b', 'b', 0xac, 0x02})
	// Rejected: present but empty, out of order, zero counter, non-minimal.
	f.Add([]byte{1, 0})
	f.Add([]byte{1, 2, 1, 'b', 1, 1, 'a', 1})
	f.Add([]byte{1, 1, 1, 'a', 0})
	f.Add([]byte{1, 1, 1, 'a', 0x81, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Arbitrary bytes: no panic, and only canonical encodings accepted.
		v, err := record.DecodeContext(data)
		if err != nil {
			if !errors.Is(err, record.ErrMalformedContext) {
				t.Fatalf("DecodeContext error %v does not wrap ErrMalformedContext", err)
			}
		} else {
			if v == nil {
				t.Fatalf("DecodeContext returned a nil vector and no error")
			}
			for id, n := range v {
				if n == 0 || id.Validate() != nil {
					t.Fatalf("DecodeContext accepted entry %q:%d", id, n)
				}
			}
			if enc := record.EncodeContext(v); !bytes.Equal(enc, data) {
				t.Fatalf("DecodeContext accepted a non-canonical encoding:\n in  %x\n out %x", data, enc)
			}
		}
		// A vector built from the bytes round-trips.
		built := (&fuzzReader{b: data}).versionVector()
		enc := record.EncodeContext(built)
		back, err := record.DecodeContext(enc)
		if err != nil {
			t.Fatalf("DecodeContext(EncodeContext(%v)) = %v", built, err)
		}
		if back.Compare(built) != record.Equal {
			t.Fatalf("context round trip: %v -> %v", built, back)
		}
		if again := record.EncodeContext(back); !bytes.Equal(again, enc) {
			t.Fatalf("context re-encoding differs: %x vs %x", again, enc)
		}
	})
}
