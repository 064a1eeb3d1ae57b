package record_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

type vv = record.VersionVector

func TestReplicaIDValidate(t *testing.T) {
	for _, tc := range []struct {
		id    record.ReplicaID
		valid bool
	}{
		{"a", true},
		{"node-1.example.com", true},
		{"\x00a", true},
		{"\x00\xff", false}, // not UTF-8: IDs travel as proto strings
		{record.ReplicaID(strings.Repeat("x", record.MaxReplicaIDLen)), true},
		{"", false},
		{record.ReplicaID(strings.Repeat("x", record.MaxReplicaIDLen+1)), false},
	} {
		err := tc.id.Validate()
		if tc.valid && err != nil {
			t.Errorf("ReplicaID(%q).Validate() = %v, want nil", tc.id, err)
		}
		if !tc.valid && !errors.Is(err, record.ErrInvalidReplicaID) {
			t.Errorf("ReplicaID(%q).Validate() = %v, want ErrInvalidReplicaID", tc.id, err)
		}
	}
}

func TestVersionVectorCompare(t *testing.T) {
	for _, tc := range []struct {
		name string
		v, o vv
		want record.Ordering
	}{
		{"nil nil", nil, nil, record.Equal},
		{"nil empty", nil, vv{}, record.Equal},
		{"zero entries are absent", vv{"a": 0}, nil, record.Equal},
		{"zero entry vs absent", vv{"a": 1, "b": 0}, vv{"a": 1, "c": 0}, record.Equal},
		{"equal", vv{"a": 1, "b": 2}, vv{"b": 2, "a": 1}, record.Equal},
		{"before by count", vv{"a": 1}, vv{"a": 2}, record.Before},
		{"before by missing entry", vv{"a": 1}, vv{"a": 1, "b": 1}, record.Before},
		{"before from empty", nil, vv{"a": 1}, record.Before},
		{"after by count", vv{"a": 3, "b": 1}, vv{"a": 2, "b": 1}, record.After},
		{"after by extra entry", vv{"a": 1, "b": 1}, vv{"a": 1}, record.After},
		{"after empty", vv{"a": 1}, vv{"a": 0}, record.After},
		{"concurrent disjoint", vv{"a": 1}, vv{"b": 1}, record.Concurrent},
		{"concurrent crossing", vv{"a": 2, "b": 1}, vv{"a": 1, "b": 2}, record.Concurrent},
		{"concurrent one extra each", vv{"a": 1, "b": 1}, vv{"a": 1, "c": 1}, record.Concurrent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.v.Compare(tc.o); got != tc.want {
				t.Errorf("%v.Compare(%v) = %v, want %v", tc.v, tc.o, got, tc.want)
			}
			reverse := map[record.Ordering]record.Ordering{
				record.Equal: record.Equal, record.Before: record.After,
				record.After: record.Before, record.Concurrent: record.Concurrent,
			}[tc.want]
			if got := tc.o.Compare(tc.v); got != reverse {
				t.Errorf("%v.Compare(%v) = %v, want %v", tc.o, tc.v, got, reverse)
			}
			wantVDescO := tc.want == record.Equal || tc.want == record.After
			if got := tc.v.Descends(tc.o); got != wantVDescO {
				t.Errorf("%v.Descends(%v) = %t, want %t", tc.v, tc.o, got, wantVDescO)
			}
			wantODescV := tc.want == record.Equal || tc.want == record.Before
			if got := tc.o.Descends(tc.v); got != wantODescV {
				t.Errorf("%v.Descends(%v) = %t, want %t", tc.o, tc.v, got, wantODescV)
			}
		})
	}
}

func TestVersionVectorDescends(t *testing.T) {
	for _, tc := range []struct {
		v, o vv
		want bool
	}{
		{nil, nil, true},
		{vv{"a": 1}, nil, true},
		{nil, vv{"a": 1}, false},
		{nil, vv{"a": 0}, true},
		{vv{"a": 2, "b": 1}, vv{"a": 2}, true},
		{vv{"a": 2}, vv{"a": 2, "b": 1}, false},
		{vv{"a": 2, "b": 1}, vv{"a": 1, "b": 1}, true},
		{vv{"a": 1, "b": 2}, vv{"a": 2, "b": 1}, false},
	} {
		if got := tc.v.Descends(tc.o); got != tc.want {
			t.Errorf("%v.Descends(%v) = %t, want %t", tc.v, tc.o, got, tc.want)
		}
	}
}

func TestVersionVectorCovers(t *testing.T) {
	for _, tc := range []struct {
		v    vv
		d    record.Dot
		want bool
	}{
		{nil, record.Dot{Replica: "a", Counter: 1}, false},
		{nil, record.Dot{Replica: "a", Counter: 0}, true},
		{vv{"a": 3}, record.Dot{Replica: "a", Counter: 1}, true},
		{vv{"a": 3}, record.Dot{Replica: "a", Counter: 3}, true},
		{vv{"a": 3}, record.Dot{Replica: "a", Counter: 4}, false},
		{vv{"a": 3}, record.Dot{Replica: "b", Counter: 1}, false},
		{vv{"a": 3, "b": 1}, record.Dot{Replica: "b", Counter: 1}, true},
	} {
		if got := tc.v.Covers(tc.d); got != tc.want {
			t.Errorf("%v.Covers(%v) = %t, want %t", tc.v, tc.d, got, tc.want)
		}
	}
}

func TestVersionVectorMerge(t *testing.T) {
	for _, tc := range []struct {
		v, o, want vv
	}{
		{nil, nil, vv{}},
		{vv{"a": 1}, nil, vv{"a": 1}},
		{nil, vv{"a": 1}, vv{"a": 1}},
		{vv{"a": 0}, vv{"b": 0}, vv{}},
		{vv{"a": 2, "b": 1}, vv{"a": 1, "b": 3, "c": 1}, vv{"a": 2, "b": 3, "c": 1}},
		{vv{"a": 5}, vv{"a": 5}, vv{"a": 5}},
	} {
		vBefore, oBefore := tc.v.Clone(), tc.o.Clone()
		got := tc.v.Merge(tc.o)
		if got == nil {
			t.Errorf("%v.Merge(%v) = nil, want a non-nil map", tc.v, tc.o)
		}
		if got.Compare(tc.want) != record.Equal || len(got) != len(tc.want) {
			t.Errorf("%v.Merge(%v) = %v, want %v", tc.v, tc.o, got, tc.want)
		}
		if tc.v.Compare(vBefore) != record.Equal || tc.o.Compare(oBefore) != record.Equal {
			t.Errorf("Merge modified its arguments")
		}
	}
}

// TestVersionVectorMergeLaws checks the semilattice laws over every pair and
// triple of a set of vectors.
func TestVersionVectorMergeLaws(t *testing.T) {
	vectors := []vv{
		nil, {"a": 1}, {"a": 2}, {"b": 1}, {"a": 1, "b": 1}, {"a": 2, "b": 0, "c": 7},
		{"c": 1}, {"a": 3, "b": 3, "c": 3},
	}
	for _, x := range vectors {
		if got := x.Merge(x); got.Compare(x) != record.Equal {
			t.Errorf("idempotence: %v.Merge(itself) = %v", x, got)
		}
		for _, y := range vectors {
			xy, yx := x.Merge(y), y.Merge(x)
			if xy.Compare(yx) != record.Equal {
				t.Errorf("commutativity: %v, %v: %v vs %v", x, y, xy, yx)
			}
			if !xy.Descends(x) || !xy.Descends(y) {
				t.Errorf("%v.Merge(%v) = %v does not descend both", x, y, xy)
			}
			// The merge is the least upper bound: it equals y iff y descends x.
			if (xy.Compare(y) == record.Equal) != y.Descends(x) {
				t.Errorf("least upper bound: %v, %v: merge %v", x, y, xy)
			}
			for _, z := range vectors {
				l, r := x.Merge(y).Merge(z), x.Merge(y.Merge(z))
				if l.Compare(r) != record.Equal {
					t.Errorf("associativity: %v, %v, %v: %v vs %v", x, y, z, l, r)
				}
			}
		}
	}
}

func TestVersionVectorClone(t *testing.T) {
	v := vv{"a": 1, "b": 0}
	c := v.Clone()
	if len(c) != 1 || c["a"] != 1 {
		t.Fatalf("Clone() = %v, want {a:1} without zero entries", c)
	}
	c["a"] = 9
	if v["a"] != 1 {
		t.Fatalf("mutating the clone changed the original")
	}
	if nilClone := vv(nil).Clone(); nilClone == nil {
		t.Fatalf("nil.Clone() = nil, want an empty map")
	}
}

func TestVersionVectorString(t *testing.T) {
	if got, want := (vv{"b": 2, "a": 1, "z": 0}).String(), "{a:1, b:2}"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	if got, want := vv(nil).String(), "{}"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

func TestContextCodecRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		v       vv
		wantHex string
	}{
		{nil, ""},
		{vv{"a": 0}, ""},
		// version 1, 1 entry, len 1 "a", counter 1.
		{vv{"a": 1}, "01" + "01" + "01" + "61" + "01"},
		// Entries sorted by replica; counter 300 = ac 02.
		{vv{"bb": 300, "a": 2, "c": 0}, "01" + "02" + "0161" + "02" + "026262" + "ac02"},
	} {
		got := record.EncodeContext(tc.v)
		if hex.EncodeToString(got) != tc.wantHex {
			t.Errorf("EncodeContext(%v) = %x, want %s", tc.v, got, tc.wantHex)
		}
		back, err := record.DecodeContext(got)
		if err != nil {
			t.Fatalf("DecodeContext(%x): %v", got, err)
		}
		if back == nil || back.Compare(tc.v) != record.Equal {
			t.Errorf("DecodeContext(EncodeContext(%v)) = %v", tc.v, back)
		}
	}
}

func TestDecodeContextMalformed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []byte
		wantMsg string
	}{
		{"unknown version", []byte{2, 1, 1, 'a', 1}, "version"},
		{"version zero", []byte{0}, "version"},
		{"only version", []byte{1}, "truncated vector length"},
		{"present but empty", []byte{1, 0}, "empty context"},
		{"count exceeds input", []byte{1, 5, 1, 'a', 1}, "exceeds"},
		{"huge count", []byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 'a', 1}, "exceeds"},
		{"truncated id", []byte{1, 1, 3, 'a', 'b'}, "exceeds"},
		{"truncated counter", []byte{1, 1, 2, 'a', 'b'}, "truncated vector counter"},
		{"truncated varint", []byte{1, 1, 1, 'a', 0x80}, "truncated vector counter"},
		{"zero counter", []byte{1, 1, 1, 'a', 0}, "zero counter"},
		{"empty id", []byte{1, 1, 0, 1, 0}, "invalid replica ID"},
		{"id too long", append([]byte{1, 1, 129, 1}, bytes.Repeat([]byte{'x'}, 131)...), "invalid replica ID"},
		{"out of order", []byte{1, 2, 1, 'b', 1, 1, 'a', 1}, "not after"},
		{"duplicate", []byte{1, 2, 1, 'a', 1, 1, 'a', 2}, "not after"},
		{"non-minimal counter", []byte{1, 1, 1, 'a', 0x81, 0x00}, "non-minimal"},
		{"non-minimal count", []byte{1, 0x81, 0x00, 1, 'a', 1}, "non-minimal"},
		{"counter overflow", []byte{1, 1, 1, 'a', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, "overflows"},
		{"trailing byte", []byte{1, 1, 1, 'a', 1, 0}, "trailing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := record.DecodeContext(tc.in)
			if !errors.Is(err, record.ErrMalformedContext) {
				t.Fatalf("DecodeContext(%x) = %v, %v; want ErrMalformedContext", tc.in, v, err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("DecodeContext(%x) error %q does not mention %q", tc.in, err, tc.wantMsg)
			}
			if !strings.HasPrefix(err.Error(), "record: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestDecodeContextEmpty(t *testing.T) {
	for _, in := range [][]byte{nil, {}} {
		v, err := record.DecodeContext(in)
		if err != nil || v == nil || len(v) != 0 {
			t.Fatalf("DecodeContext(%#v) = %v, %v; want an empty vector and nil", in, v, err)
		}
	}
}

func TestDecodeContextDoesNotAlias(t *testing.T) {
	in := []byte{1, 1, 1, 'a', 1}
	v, err := record.DecodeContext(in)
	if err != nil {
		t.Fatal(err)
	}
	in[3] = 'z'
	if v["a"] != 1 {
		t.Fatalf("decoded vector changed when its input was modified: %v", v)
	}
}
