package record_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// wire builds encoded records and contexts byte by byte for tests.
type wire []byte

func (w wire) raw(b ...byte) wire             { return append(w, b...) }
func (w wire) str(s string) wire              { return append(w, s...) }
func (w wire) uv(x uint64) wire               { return binary.AppendUvarint(w, x) }
func (w wire) id(s string) wire               { return w.uv(uint64(len(s))).str(s) }
func (w wire) entry(id string, n uint64) wire { return w.id(id).uv(n) }

// sib appends one encoded sibling.
func (w wire) sib(id string, counter uint64, wall int64, logical uint32, flags byte, value string) wire {
	return w.id(id).uv(counter).uv(uint64(wall)).uv(uint64(logical)).raw(flags).uv(uint64(len(value))).str(value)
}

// lwwHeader is version 1, mode LWW, empty context, one sibling.
func lwwHeader() wire { return wire{}.raw(1, 1).uv(0).uv(1) }

// be8 appends x as 8 big-endian bytes (a format-2 wall time).
func (w wire) be8(x uint64) wire { return binary.BigEndian.AppendUint64(w, x) }

// sib2 appends one format-2 causal sibling.
func (w wire) sib2(index, counter uint64, wall int64, logical uint32, flags byte, value string) wire {
	return w.uv(index).uv(counter).be8(uint64(wall)).uv(uint64(logical)).raw(flags).uv(uint64(len(value))).str(value)
}

func dot(r string, n uint64) record.Dot {
	return record.Dot{Replica: record.ReplicaID(r), Counter: n}
}

func sibling(r string, n uint64, t record.Timestamp, value string) record.Sibling {
	return record.Sibling{Dot: dot(r, n), Timestamp: t, Value: []byte(value)}
}

func tombstone(r string, n uint64, t record.Timestamp) record.Sibling {
	return record.Sibling{Dot: dot(r, n), Timestamp: t, Tombstone: true}
}

func causal(ctx vv, sibs ...record.Sibling) record.Record {
	return record.Record{Mode: record.ModeCausal, Context: ctx, Siblings: sibs}
}

func TestModeStringParse(t *testing.T) {
	for _, tc := range []struct {
		m    record.Mode
		name string
	}{
		{record.ModeLWW, "lww"},
		{record.ModeCausal, "causal"},
	} {
		if got := tc.m.String(); got != tc.name {
			t.Errorf("%d.String() = %q, want %q", tc.m, got, tc.name)
		}
		for _, s := range []string{tc.name, strings.ToUpper(tc.name)} {
			if got, err := record.ParseMode(s); err != nil || got != tc.m {
				t.Errorf("ParseMode(%q) = %v, %v; want %v", s, got, err, tc.m)
			}
		}
	}
	if got := record.Mode(7).String(); got != "Mode(7)" {
		t.Errorf("Mode(7).String() = %q", got)
	}
	for _, s := range []string{"", "LWW2", "dvv", "Mode(1)"} {
		if _, err := record.ParseMode(s); !errors.Is(err, record.ErrUnknownMode) {
			t.Errorf("ParseMode(%q) error = %v, want ErrUnknownMode", s, err)
		}
	}
}

func TestRecordEncodeGolden(t *testing.T) {
	for _, tc := range []struct {
		name    string
		r       record.Record
		wantHex string
	}{
		{
			"lww value",
			record.NewLWW("a", ts(5, 1), []byte("xy"), false),
			"02" + "01" + "0000000000000005" + "01" + "0161" + "7879",
		},
		{
			"lww tombstone drops value",
			record.NewLWW("a", ts(300, 0), []byte("ignored"), true),
			"02" + "05" + "000000000000012c" + "00" + "0161",
		},
		{
			"lww empty value",
			record.NewLWW("ab", ts(1, 200), nil, false),
			"02" + "01" + "0000000000000001" + "c801" + "026162",
		},
		{
			"causal, canonicalized",
			causal(vv{"b": 1, "a": 2, "z": 0},
				sibling("b", 1, ts(7, 0), "v"),
				tombstone("a", 2, ts(6, 3))),
			"02" + "02" + "02" + "0161" + "02" + "0162" + "01" +
				"02" + "00" + "02" + "0000000000000006" + "03" + "01" + "00" +
				"01" + "01" + "0000000000000007" + "00" + "00" + "01" + "76",
		},
		{
			"causal, context covering more than the siblings",
			causal(vv{"a": 3, "b": 1, "c": 5}, sibling("c", 4, ts(1, 0), "w")),
			"02" + "02" + "03" + "0161" + "03" + "0162" + "01" + "0163" + "05" +
				"01" + "02" + "04" + "0000000000000001" + "00" + "00" + "01" + "77",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.r.Encode()
			if hex.EncodeToString(got) != tc.wantHex {
				t.Fatalf("Encode() = %x\nwant       %s", got, tc.wantHex)
			}
			if n := tc.r.EncodedLen(); n != len(got) {
				t.Fatalf("EncodedLen() = %d, want %d", n, len(got))
			}
			prefix := []byte("prefix")
			if appended := tc.r.AppendEncode(slices.Clone(prefix)); !bytes.Equal(appended, append(prefix, got...)) {
				t.Fatalf("AppendEncode = %x, want prefix + %x", appended, got)
			}
			back, err := record.DecodeRecord(got)
			if err != nil {
				t.Fatalf("DecodeRecord: %v", err)
			}
			if !back.Equal(tc.r) {
				t.Fatalf("DecodeRecord(Encode(r)) = %+v, want %+v", back, tc.r)
			}
		})
	}
}

// TestRecordEncodeV1Golden pins format 1, which DecodeRecord still reads
// (DBs written before format 2) and AppendEncodeV1 still writes.
func TestRecordEncodeV1Golden(t *testing.T) {
	for _, tc := range []struct {
		name    string
		r       record.Record
		wantHex string
	}{
		{
			"lww value",
			record.NewLWW("a", ts(5, 1), []byte("xy"), false),
			"01" + "01" + "00" + "01" + "0161" + "00" + "05" + "01" + "00" + "02" + "7879",
		},
		{
			"lww tombstone drops value",
			record.NewLWW("a", ts(300, 0), []byte("ignored"), true),
			"01" + "01" + "00" + "01" + "0161" + "00" + "ac02" + "00" + "01" + "00",
		},
		{
			"causal, canonicalized",
			causal(vv{"b": 1, "a": 2, "z": 0},
				sibling("b", 1, ts(7, 0), "v"),
				tombstone("a", 2, ts(6, 3))),
			"01" + "02" + "02" + "0161" + "02" + "0162" + "01" +
				"02" + "0161" + "02" + "06" + "03" + "01" + "00" +
				"0162" + "01" + "07" + "00" + "00" + "01" + "76",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.r.AppendEncodeV1(nil)
			if hex.EncodeToString(got) != tc.wantHex {
				t.Fatalf("AppendEncodeV1() = %x\nwant       %s", got, tc.wantHex)
			}
			prefix := []byte("prefix")
			if appended := tc.r.AppendEncodeV1(slices.Clone(prefix)); !bytes.Equal(appended, append(prefix, got...)) {
				t.Fatalf("AppendEncodeV1 = %x, want prefix + %x", appended, got)
			}
			back, err := record.DecodeRecord(got)
			if err != nil {
				t.Fatalf("DecodeRecord: %v", err)
			}
			if !back.Equal(tc.r) {
				t.Fatalf("DecodeRecord(AppendEncodeV1(r)) = %+v, want %+v", back, tc.r)
			}
			// Re-encoding moves the record to format 2: same record,
			// different bytes (a session rewrites such a record where a
			// peer holds the format-2 bytes).
			if v2 := back.Encode(); v2[0] != record.RecordFormatVersion || bytes.Equal(v2, got) {
				t.Fatalf("Encode of a decoded format-1 record = %x", v2)
			}
		})
	}
}

func TestRecordEncodeCanonical(t *testing.T) {
	a := causal(vv{"a": 3, "b": 1, "c": 0},
		sibling("a", 2, ts(1, 0), "x"), sibling("a", 3, ts(2, 0), "y"), sibling("b", 1, ts(3, 0), ""))
	shuffled := causal(vv{"b": 1, "a": 3},
		sibling("b", 1, ts(3, 0), ""), sibling("a", 3, ts(2, 0), "y"), sibling("a", 2, ts(1, 0), "x"))
	shuffled.Siblings[0].Value = []byte{} // empty and nil values are the same value
	if !a.Equal(shuffled) || !shuffled.Equal(a) {
		t.Fatalf("Equal is order-sensitive")
	}
	ea, es := a.Encode(), shuffled.Encode()
	if !bytes.Equal(ea, es) {
		t.Fatalf("logically equal records encode differently:\n%x\n%x", ea, es)
	}
	if !slices.IsSortedFunc(shuffled.Siblings, func(x, y record.Sibling) int { return -x.Dot.Compare(y.Dot) }) {
		t.Fatalf("Encode reordered its receiver's siblings")
	}
	back, err := record.DecodeRecord(es)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Equal(a) || back.Validate() != nil {
		t.Fatalf("round trip: %+v", back)
	}
}

func TestRecordEqual(t *testing.T) {
	base := causal(vv{"a": 1, "b": 1}, sibling("a", 1, ts(1, 0), "x"), sibling("b", 1, ts(1, 0), "y"))
	for _, tc := range []struct {
		name  string
		other record.Record
		equal bool
	}{
		{"same", causal(vv{"a": 1, "b": 1}, sibling("a", 1, ts(1, 0), "x"), sibling("b", 1, ts(1, 0), "y")), true},
		{"zero entry in context", causal(vv{"a": 1, "b": 1, "c": 0}, sibling("a", 1, ts(1, 0), "x"), sibling("b", 1, ts(1, 0), "y")), true},
		{"context differs", causal(vv{"a": 2, "b": 1}, sibling("a", 1, ts(1, 0), "x"), sibling("b", 1, ts(1, 0), "y")), false},
		{"value differs", causal(vv{"a": 1, "b": 1}, sibling("a", 1, ts(1, 0), "x"), sibling("b", 1, ts(1, 0), "z")), false},
		{"timestamp differs", causal(vv{"a": 1, "b": 1}, sibling("a", 1, ts(1, 1), "x"), sibling("b", 1, ts(1, 0), "y")), false},
		{"sibling missing", causal(vv{"a": 1, "b": 1}, sibling("a", 1, ts(1, 0), "x")), false},
		{"tombstone differs", causal(vv{"a": 1, "b": 1}, sibling("a", 1, ts(1, 0), "x"), tombstone("b", 1, ts(1, 0))), false},
		{"mode differs", record.Record{Mode: record.ModeLWW, Context: base.Context, Siblings: base.Siblings}, false},
	} {
		if got := base.Equal(tc.other); got != tc.equal {
			t.Errorf("%s: Equal = %t, want %t", tc.name, got, tc.equal)
		}
		if got := tc.other.Equal(base); got != tc.equal {
			t.Errorf("%s: reverse Equal = %t, want %t", tc.name, got, tc.equal)
		}
	}
}

func TestDecodeRecordMalformed(t *testing.T) {
	long := strings.Repeat("x", record.MaxReplicaIDLen+1)
	causalHeader := func() wire { return wire{}.raw(1, 2) }
	for _, tc := range []struct {
		name    string
		in      []byte
		wantErr error
		wantMsg string
	}{
		{"empty", nil, record.ErrMalformedRecord, "truncated before format version"},
		{"version 0", wire{}.raw(0, 1), record.ErrUnsupportedRecordVersion, "version 0"},
		{"version 3", wire{}.raw(3, 1).uv(0).uv(1).sib("a", 0, 1, 0, 0, ""), record.ErrUnsupportedRecordVersion, "version 3"},
		{"no mode", wire{}.raw(1), record.ErrMalformedRecord, "truncated before mode"},
		{"mode 0", wire{}.raw(1, 0).uv(0).uv(1).sib("a", 0, 1, 0, 0, ""), record.ErrUnknownMode, "unknown mode"},
		{"mode 3", wire{}.raw(1, 3).uv(0).uv(1).sib("a", 0, 1, 0, 0, ""), record.ErrUnknownMode, "unknown mode"},
		{"trailing byte", lwwHeader().sib("a", 0, 1, 0, 0, "v").raw(0), record.ErrMalformedRecord, "1 trailing bytes"},
		{"lww no sibling", wire{}.raw(1, 1).uv(0).uv(0), record.ErrMalformedRecord, "LWW record with 0 siblings"},
		{"lww two siblings", wire{}.raw(1, 1).uv(0).uv(2).sib("a", 0, 1, 0, 0, "").sib("b", 0, 1, 0, 0, ""), record.ErrMalformedRecord, "LWW record with 2 siblings"},
		{"lww nonzero counter", lwwHeader().sib("a", 1, 1, 0, 0, ""), record.ErrMalformedRecord, "want counter 0"},
		{"lww with context", wire{}.raw(1, 1).uv(1).entry("a", 1).uv(1).sib("a", 0, 1, 0, 0, ""), record.ErrMalformedRecord, "LWW record with causal context"},
		{"causal no sibling", causalHeader().uv(1).entry("a", 1).uv(0), record.ErrMalformedRecord, "without siblings"},
		{"context out of order", causalHeader().uv(2).entry("b", 1).entry("a", 1).uv(1).sib("a", 1, 1, 0, 0, ""), record.ErrMalformedRecord, "not after"},
		{"context duplicate", causalHeader().uv(2).entry("a", 1).entry("a", 2).uv(1).sib("a", 1, 1, 0, 0, ""), record.ErrMalformedRecord, "not after"},
		{"context zero counter", causalHeader().uv(2).entry("a", 1).entry("b", 0).uv(1).sib("a", 1, 1, 0, 0, ""), record.ErrMalformedRecord, "zero counter"},
		{"context empty id", causalHeader().uv(1).entry("", 1).uv(1).sib("a", 1, 1, 0, 0, ""), record.ErrInvalidReplicaID, "length 0"},
		{"context id too long", causalHeader().uv(1).entry(long, 1).uv(1).sib("a", 1, 1, 0, 0, ""), record.ErrInvalidReplicaID, "length 129"},
		{"sibling empty id", lwwHeader().sib("", 0, 1, 0, 0, "v"), record.ErrInvalidReplicaID, "length 0"},
		{"sibling id too long", lwwHeader().sib(long, 0, 1, 0, 0, ""), record.ErrInvalidReplicaID, "length 129"},
		{"siblings out of order", causalHeader().uv(2).entry("a", 1).entry("b", 1).uv(2).sib("b", 1, 1, 0, 0, "").sib("a", 1, 1, 0, 0, ""), record.ErrMalformedRecord, "not after"},
		{"siblings out of counter order", causalHeader().uv(1).entry("a", 2).uv(2).sib("a", 2, 1, 0, 0, "").sib("a", 1, 1, 0, 0, ""), record.ErrMalformedRecord, "not after"},
		{"duplicate dots", causalHeader().uv(1).entry("a", 1).uv(2).sib("a", 1, 1, 0, 0, "x").sib("a", 1, 2, 0, 0, "y"), record.ErrMalformedRecord, "same dot"},
		{"dot beyond context", causalHeader().uv(1).entry("a", 1).uv(1).sib("a", 2, 1, 0, 0, ""), record.ErrMalformedRecord, "not covered"},
		{"dot replica not in context", causalHeader().uv(1).entry("a", 1).uv(1).sib("b", 1, 1, 0, 0, ""), record.ErrMalformedRecord, "not covered"},
		{"causal counter 0", causalHeader().uv(1).entry("a", 1).uv(1).sib("a", 0, 1, 0, 0, ""), record.ErrMalformedRecord, "counter 0"},
		{"tombstone with value", lwwHeader().sib("a", 0, 1, 0, 1, "v"), record.ErrMalformedRecord, "tombstone with a 1-byte value"},
		{"unknown flag", lwwHeader().sib("a", 0, 1, 0, 2, ""), record.ErrMalformedRecord, "unknown flags"},
		{"value length exceeds input", lwwHeader().sib("a", 0, 1, 0, 0, "")[:10].uv(5).str("ab"), record.ErrMalformedRecord, "value length 5 exceeds"},
		{"id length exceeds input", lwwHeader().uv(40).str("abcdefghij"), record.ErrMalformedRecord, "replica ID length 40 exceeds"},
		{"sibling count exceeds input", wire{}.raw(1, 2).uv(1).entry("a", 1).uv(1000).sib("a", 1, 1, 0, 0, ""), record.ErrMalformedRecord, "sibling count 1000 exceeds"},
		{"huge sibling count", wire{}.raw(1, 2).uv(1).entry("a", 1).uv(math.MaxUint64), record.ErrMalformedRecord, "exceeds"},
		{"context count exceeds input", causalHeader().uv(1<<40).entry("a", 1), record.ErrMalformedRecord, "vector length"},
		{"non-minimal value length", lwwHeader().sib("a", 0, 1, 0, 0, "")[:10].raw(0x80, 0x00), record.ErrMalformedRecord, "non-minimal varint for value length"},
		{"non-minimal wall time", lwwHeader().id("a").uv(0).raw(0x85, 0x80, 0x00).uv(0).raw(0).uv(0), record.ErrMalformedRecord, "non-minimal varint for wall time"},
		{"varint overflow", lwwHeader().id("a").raw(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), record.ErrMalformedRecord, "overflows"},
		{"wall time beyond int64", lwwHeader().id("a").uv(0).uv(1 << 63).uv(0).raw(0).uv(0), record.ErrMalformedRecord, "exceeds the int64 range"},
		{"logical beyond uint32", lwwHeader().id("a").uv(0).uv(1).uv(1 << 32).raw(0).uv(0), record.ErrMalformedRecord, "exceeds the uint32 range"},
		{"truncated before flags", lwwHeader().id("abcd").uv(0).uv(1).uv(0), record.ErrMalformedRecord, "truncated before flags"},
		{"truncated inside varint", lwwHeader().id("abcdef").uv(0).raw(0x80), record.ErrMalformedRecord, "truncated wall time"},
		{"truncated value", lwwHeader().sib("a", 0, 1, 0, 0, "value")[:13], record.ErrMalformedRecord, "exceeds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := record.DecodeRecord(tc.in)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("DecodeRecord(%x) = %+v, %v; want %v", tc.in, r, err, tc.wantErr)
			}
			if tc.wantErr != record.ErrUnsupportedRecordVersion && !errors.Is(err, record.ErrMalformedRecord) {
				t.Fatalf("DecodeRecord(%x) = %v; want it to wrap ErrMalformedRecord too", tc.in, err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("DecodeRecord(%x) error %q does not mention %q", tc.in, err, tc.wantMsg)
			}
			if !strings.HasPrefix(err.Error(), "record: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
		})
	}
}

// TestDecodeRecordTruncations checks that every strict prefix of valid
// encodings is rejected, except within a format-2 LWW record's value: that
// value is the rest of the record (the Pebble value or the proto field
// around it has the length), so a prefix that cuts it is the record with
// the shorter value.
func TestDecodeRecordTruncations(t *testing.T) {
	lww := record.NewLWW("replica", ts(1<<40, 3), []byte("value"), false)
	for _, enc := range [][]byte{
		lww.AppendEncodeV1(nil),
		causal(vv{"a": 2, "b": 300}, sibling("a", 2, ts(9, 9), "v1"), tombstone("b", 300, ts(1, 1))).Encode(),
		causal(vv{"a": 2, "b": 300}, sibling("a", 2, ts(9, 9), "v1"), tombstone("b", 300, ts(1, 1))).AppendEncodeV1(nil),
		lww.Encode()[:len(lww.Encode())-len("value")],
	} {
		for n := range len(enc) {
			if _, err := record.DecodeRecord(enc[:n]); !errors.Is(err, record.ErrMalformedRecord) {
				t.Fatalf("DecodeRecord of %d-byte prefix of %x: %v, want ErrMalformedRecord", n, enc, err)
			}
		}
	}
	enc := lww.Encode()
	for n := len(enc) - len("value"); n < len(enc); n++ {
		got, err := record.DecodeRecord(enc[:n])
		want := record.NewLWW("replica", ts(1<<40, 3), []byte("value")[:n-(len(enc)-len("value"))], false)
		if err != nil || !got.Equal(want) {
			t.Fatalf("DecodeRecord of %d-byte prefix of %x = %+v, %v; want %+v", n, enc, got, err, want)
		}
	}
}

// TestEncodeInvalidRecords checks that a record failing Validate encodes
// to bytes DecodeRecord rejects, in both formats, never to another record.
func TestEncodeInvalidRecords(t *testing.T) {
	valid := record.NewLWW("a", ts(1, 0), []byte("v"), false)
	for _, tc := range []struct {
		name string
		r    record.Record
	}{
		{"lww tombstone with value", record.Record{Mode: record.ModeLWW, Siblings: []record.Sibling{{Dot: dot("a", 0), Tombstone: true, Value: []byte("v")}}}},
		{"lww two siblings", record.Record{Mode: record.ModeLWW, Siblings: []record.Sibling{valid.Siblings[0], {Dot: dot("b", 0)}}}},
		{"lww no sibling", record.Record{Mode: record.ModeLWW}},
		{"lww nonzero counter", record.Record{Mode: record.ModeLWW, Siblings: []record.Sibling{{Dot: dot("a", 1)}}}},
		{"lww with context", record.Record{Mode: record.ModeLWW, Context: vv{"a": 1}, Siblings: valid.Siblings}},
		{"lww negative wall time", record.NewLWW("a", ts(-5, 0), []byte("v"), false)},
		{"lww empty writer", record.NewLWW("", ts(1, 0), []byte("v"), false)},
		{"causal dot not in context", causal(vv{"a": 1}, sibling("b", 1, ts(1, 0), "v"))},
		{"causal no sibling", causal(vv{"a": 1})},
		{"mode 0", record.Record{Siblings: valid.Siblings}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.r.Validate(); err == nil {
				t.Fatalf("Validate accepted %+v", tc.r)
			}
			for _, enc := range [][]byte{tc.r.Encode(), tc.r.AppendEncodeV1(nil)} {
				if got, err := record.DecodeRecord(enc); err == nil {
					t.Fatalf("DecodeRecord(%x) = %+v, want an error", enc, got)
				}
			}
		})
	}
}

// TestDecodeRecordMalformedV2 is TestDecodeRecordMalformed for format 2.
func TestDecodeRecordMalformedV2(t *testing.T) {
	lww := func(kind byte) wire { return wire{}.raw(2, kind) }
	causal2 := func() wire { return wire{}.raw(2, 2) }
	for _, tc := range []struct {
		name    string
		in      []byte
		wantErr error
		wantMsg string
	}{
		{"no kind", wire{}.raw(2), record.ErrMalformedRecord, "truncated before kind"},
		{"kind 0", lww(0).be8(1).uv(0).id("a"), record.ErrUnknownMode, "kind 0x00"},
		{"kind 3", lww(3).be8(1).uv(0).id("a"), record.ErrUnknownMode, "kind 0x03"},
		{"unknown kind bit", lww(0x09).be8(1).uv(0).id("a"), record.ErrUnknownMode, "kind 0x09"},
		{"invalid kind", lww(0xff), record.ErrUnknownMode, "kind 0xff"},
		{"causal tombstone bit", wire{}.raw(2, 6).uv(1).entry("a", 1).uv(1).sib2(0, 1, 1, 0, 0, ""), record.ErrMalformedRecord, "LWW tombstone bit"},
		{"lww truncated wall", lww(1).raw(0, 0, 0, 1), record.ErrMalformedRecord, "wall time"},
		{"lww wall beyond int64", lww(1).be8(1 << 63).uv(0).id("a"), record.ErrMalformedRecord, "exceeds the int64 range"},
		{"lww logical beyond uint32", lww(1).be8(1).uv(1 << 32).id("a"), record.ErrMalformedRecord, "exceeds the uint32 range"},
		{"lww non-minimal logical", lww(1).be8(1).raw(0x80, 0x00).id("a"), record.ErrMalformedRecord, "non-minimal varint for logical time"},
		{"lww no writer", lww(1).be8(1).uv(0), record.ErrMalformedRecord, "truncated replica ID length"},
		{"lww empty writer", lww(1).be8(1).uv(0).id(""), record.ErrInvalidReplicaID, "length 0"},
		{"lww writer exceeds input", lww(1).be8(1).uv(0).uv(9).str("ab"), record.ErrMalformedRecord, "replica ID length 9 exceeds"},
		{"lww tombstone with value", lww(5).be8(1).uv(0).id("a").str("v"), record.ErrMalformedRecord, "tombstone with a 1-byte value"},
		{"causal no sibling", causal2().uv(1).entry("a", 1).uv(0), record.ErrMalformedRecord, "without siblings"},
		{"causal index beyond context", causal2().uv(1).entry("a", 1).uv(1).sib2(1, 1, 1, 0, 0, ""), record.ErrMalformedRecord, "replica index 1, the context has 1"},
		{"causal empty context", causal2().uv(0).uv(1).sib2(0, 1, 1, 0, 0, ""), record.ErrMalformedRecord, "replica index 0, the context has 0"},
		{"causal dot beyond context", causal2().uv(1).entry("a", 1).uv(1).sib2(0, 2, 1, 0, 0, ""), record.ErrMalformedRecord, "not covered"},
		{"causal counter 0", causal2().uv(1).entry("a", 1).uv(1).sib2(0, 0, 1, 0, 0, ""), record.ErrMalformedRecord, "counter 0"},
		{"causal siblings out of order", causal2().uv(2).entry("a", 1).entry("b", 1).uv(2).sib2(1, 1, 1, 0, 0, "").sib2(0, 1, 1, 0, 0, ""), record.ErrMalformedRecord, "not after"},
		{"causal duplicate dots", causal2().uv(1).entry("a", 1).uv(2).sib2(0, 1, 1, 0, 0, "x").sib2(0, 1, 2, 0, 0, "y"), record.ErrMalformedRecord, "same dot"},
		{"causal unknown flag", causal2().uv(1).entry("a", 1).uv(1).sib2(0, 1, 1, 0, 2, ""), record.ErrMalformedRecord, "unknown flags"},
		{"causal tombstone with value", causal2().uv(1).entry("a", 1).uv(1).sib2(0, 1, 1, 0, 1, "v"), record.ErrMalformedRecord, "tombstone with a 1-byte value"},
		{"causal wall beyond int64", causal2().uv(1).entry("a", 1).uv(1).sib2(0, 1, -1, 0, 0, ""), record.ErrMalformedRecord, "exceeds the int64 range"},
		{"causal sibling count exceeds input", causal2().uv(1).entry("a", 1).uv(2).sib2(0, 1, 1, 0, 0, ""), record.ErrMalformedRecord, "sibling count 2 exceeds"},
		{"causal value length exceeds input", causal2().uv(1).entry("a", 1).uv(1).sib2(0, 1, 1, 0, 0, "")[:19].uv(5).str("ab"), record.ErrMalformedRecord, "value length 5 exceeds"},
		{"causal trailing byte", causal2().uv(1).entry("a", 1).uv(1).sib2(0, 1, 1, 0, 0, "v").raw(0), record.ErrMalformedRecord, "1 trailing bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := record.DecodeRecord(tc.in)
			if !errors.Is(err, tc.wantErr) || !errors.Is(err, record.ErrMalformedRecord) {
				t.Fatalf("DecodeRecord(%x) = %+v, %v; want %v and ErrMalformedRecord", tc.in, r, err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("DecodeRecord(%x) error %q does not mention %q", tc.in, err, tc.wantMsg)
			}
			var rd record.RecordDecoder
			if _, rerr := rd.Decode(tc.in); rerr == nil || rerr.Error() != err.Error() {
				t.Fatalf("RecordDecoder.Decode error %v, DecodeRecord error %v", rerr, err)
			}
		})
	}
}

func TestDecodeRecordAliasing(t *testing.T) {
	enc := causal(vv{"a": 1, "b": 1}, sibling("a", 1, ts(1, 0), "first"), sibling("b", 1, ts(1, 0), "second")).Encode()
	r, err := record.DecodeRecord(enc)
	if err != nil {
		t.Fatal(err)
	}
	v := r.Siblings[0].Value
	if cap(v) != len(v) {
		t.Fatalf("decoded value capacity %d exceeds its length %d: appends would clobber the input", cap(v), len(v))
	}
	_ = append(v, "XXXXXX"...)
	if string(r.Siblings[1].Value) != "second" {
		t.Fatalf("append to one value overwrote the next: %q", r.Siblings[1].Value)
	}
	// Values alias the input, as documented.
	i := bytes.Index(enc, []byte("first"))
	enc[i] = 'F'
	if string(r.Siblings[0].Value) != "First" {
		t.Fatalf("decoded value does not alias the input: %q", r.Siblings[0].Value)
	}
}

func TestRecordValidate(t *testing.T) {
	lww := func(s record.Sibling) record.Record {
		return record.Record{Mode: record.ModeLWW, Siblings: []record.Sibling{s}}
	}
	long := strings.Repeat("x", record.MaxReplicaIDLen+1)
	for _, tc := range []struct {
		name    string
		r       record.Record
		wantMsg string // empty: valid
	}{
		{"lww", record.NewLWW("a", ts(1, 0), []byte("v"), false), ""},
		{"lww tombstone", record.NewLWW("a", ts(1, 0), nil, true), ""},
		{"lww zero context entry", record.Record{Mode: record.ModeLWW, Context: vv{"a": 0}, Siblings: []record.Sibling{sibling("a", 0, ts(1, 0), "")}}, ""},
		{"causal", causal(vv{"a": 3, "b": 1}, sibling("a", 3, ts(1, 0), "x"), sibling("b", 1, ts(1, 0), "y")), ""},
		{"zero record", record.Record{}, "unknown mode"},
		{"unknown mode", record.Record{Mode: 9, Siblings: []record.Sibling{sibling("a", 0, ts(1, 0), "")}}, "unknown mode"},
		{"lww two siblings", record.Record{Mode: record.ModeLWW, Siblings: []record.Sibling{sibling("a", 0, ts(1, 0), ""), sibling("b", 0, ts(1, 0), "")}}, "2 siblings"},
		{"lww context", record.Record{Mode: record.ModeLWW, Context: vv{"a": 1}, Siblings: []record.Sibling{sibling("a", 0, ts(1, 0), "")}}, "causal context"},
		{"lww counter", lww(sibling("a", 1, ts(1, 0), "")), "want counter 0"},
		{"lww empty id", lww(sibling("", 0, ts(1, 0), "")), "invalid replica ID"},
		{"lww long id", lww(sibling(long, 0, ts(1, 0), "")), "invalid replica ID"},
		{"negative wall time", lww(sibling("a", 0, ts(-1, 0), "")), "negative wall time"},
		{"tombstone with value", lww(record.Sibling{Dot: dot("a", 0), Tombstone: true, Value: []byte("v")}), "tombstone with"},
		{"causal no siblings", causal(vv{"a": 1}), "without siblings"},
		{"causal unsorted", causal(vv{"a": 1, "b": 1}, sibling("b", 1, ts(1, 0), ""), sibling("a", 1, ts(1, 0), "")), "not after"},
		{"causal duplicate", causal(vv{"a": 1}, sibling("a", 1, ts(1, 0), "x"), sibling("a", 1, ts(2, 0), "y")), "same dot"},
		{"causal not covered", causal(vv{"a": 1}, sibling("a", 2, ts(1, 0), "")), "not covered"},
		{"causal counter 0", causal(vv{"a": 1}, sibling("a", 0, ts(1, 0), "")), "counter 0"},
		{"causal context bad id", causal(vv{"a": 1, "": 4}, sibling("a", 1, ts(1, 0), "")), "invalid replica ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.Validate()
			if tc.wantMsg == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, record.ErrMalformedRecord) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("Validate() = %v, want ErrMalformedRecord mentioning %q", err, tc.wantMsg)
			}
		})
	}
}

func TestRecordWinner(t *testing.T) {
	for _, tc := range []struct {
		name string
		sibs []record.Sibling
		want record.Sibling
	}{
		{"none", nil, record.Sibling{}},
		{"later timestamp", []record.Sibling{sibling("z", 1, ts(1, 0), "old"), sibling("a", 1, ts(2, 0), "new")}, sibling("a", 1, ts(2, 0), "new")},
		{"logical breaks wall tie", []record.Sibling{sibling("a", 1, ts(2, 1), "x"), sibling("b", 1, ts(2, 0), "y")}, sibling("a", 1, ts(2, 1), "x")},
		{"replica breaks timestamp tie", []record.Sibling{sibling("a", 1, ts(2, 0), "x"), sibling("b", 1, ts(2, 0), "y")}, sibling("b", 1, ts(2, 0), "y")},
		{"counter breaks replica tie", []record.Sibling{sibling("a", 2, ts(2, 0), "x"), sibling("a", 1, ts(2, 0), "y")}, sibling("a", 2, ts(2, 0), "x")},
		{"tombstone breaks full tie", []record.Sibling{sibling("a", 0, ts(2, 0), "x"), tombstone("a", 0, ts(2, 0))}, tombstone("a", 0, ts(2, 0))},
		{"value breaks full tie", []record.Sibling{sibling("a", 0, ts(2, 0), "y"), sibling("a", 0, ts(2, 0), "x")}, sibling("a", 0, ts(2, 0), "y")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := causal(nil, tc.sibs...).Winner()
			if !causal(nil, got).Equal(causal(nil, tc.want)) {
				t.Fatalf("Winner() = %+v, want %+v", got, tc.want)
			}
			// Determinism: the winner does not depend on sibling order.
			reversed := slices.Clone(tc.sibs)
			slices.Reverse(reversed)
			if again := causal(nil, reversed...).Winner(); !causal(nil, again).Equal(causal(nil, got)) {
				t.Fatalf("Winner() depends on order: %+v vs %+v", again, got)
			}
		})
	}
}

func TestRecordIsTombstone(t *testing.T) {
	for _, tc := range []struct {
		r    record.Record
		want bool
	}{
		{record.Record{}, false},
		{record.NewLWW("a", ts(1, 0), nil, true), true},
		{record.NewLWW("a", ts(1, 0), nil, false), false},
		{causal(vv{"a": 1, "b": 1}, tombstone("a", 1, ts(1, 0)), tombstone("b", 1, ts(1, 0))), true},
		{causal(vv{"a": 1, "b": 1}, tombstone("a", 1, ts(1, 0)), sibling("b", 1, ts(1, 0), "v")), false},
	} {
		if got := tc.r.IsTombstone(); got != tc.want {
			t.Errorf("%+v.IsTombstone() = %t, want %t", tc.r, got, tc.want)
		}
	}
}

func TestCausalPut(t *testing.T) {
	// Two clients write concurrently at replicas a and b with no context,
	// then the records are synced: both writes are kept as siblings.
	ra := record.CausalPut(record.Record{}, nil, "a", ts(10, 0), []byte("red"), false)
	rb := record.CausalPut(record.Record{}, nil, "b", ts(11, 0), []byte("blue"), false)
	wantA := causal(vv{"a": 1}, sibling("a", 1, ts(10, 0), "red"))
	if !ra.Equal(wantA) {
		t.Fatalf("first write = %+v, want %+v", ra, wantA)
	}
	both := record.Sync(ra, rb)
	wantBoth := causal(vv{"a": 1, "b": 1}, sibling("a", 1, ts(10, 0), "red"), sibling("b", 1, ts(11, 0), "blue"))
	if !both.Equal(wantBoth) {
		t.Fatalf("Sync = %+v, want %+v", both, wantBoth)
	}

	for _, tc := range []struct {
		name      string
		cur       record.Record
		ctx       vv
		at        record.ReplicaID
		value     string
		tombstone bool
		want      record.Record
	}{
		{
			"blind write over siblings adds a sibling",
			both, nil, "a", "green", false,
			causal(vv{"a": 2, "b": 1}, sibling("a", 1, ts(10, 0), "red"), sibling("a", 2, ts(20, 0), "green"), sibling("b", 1, ts(11, 0), "blue")),
		},
		{
			"write that saw both collapses them",
			both, vv{"a": 1, "b": 1}, "a", "purple", false,
			causal(vv{"a": 2, "b": 1}, sibling("a", 2, ts(20, 0), "purple")),
		},
		{
			"write that saw one supersedes only that one",
			both, vv{"b": 1}, "a", "navy", false,
			causal(vv{"a": 2, "b": 1}, sibling("a", 1, ts(10, 0), "red"), sibling("a", 2, ts(20, 0), "navy")),
		},
		{
			"write at a third replica",
			both, vv{"a": 1, "b": 1}, "c", "cyan", false,
			causal(vv{"a": 1, "b": 1, "c": 1}, sibling("c", 1, ts(20, 0), "cyan")),
		},
		{
			"delete that saw both leaves one tombstone",
			both, vv{"a": 1, "b": 1}, "b", "ignored", true,
			causal(vv{"a": 1, "b": 2}, tombstone("b", 2, ts(20, 0))),
		},
		{
			"concurrent delete is a tombstone sibling",
			both, vv{"a": 1}, "b", "", true,
			causal(vv{"a": 1, "b": 2}, sibling("b", 1, ts(11, 0), "blue"), tombstone("b", 2, ts(20, 0))),
		},
		{
			"context ahead of the local record advances the counter",
			ra, vv{"a": 5}, "a", "x", false,
			causal(vv{"a": 6}, sibling("a", 6, ts(20, 0), "x")),
		},
		{
			"write over an LWW record overwrites it",
			record.NewLWW("a", ts(5, 0), []byte("lww"), false), nil, "a", "x", false,
			causal(vv{"a": 1}, sibling("a", 1, ts(20, 0), "x")),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			curEnc := tc.cur.Encode()
			var ctxBefore vv
			if tc.ctx != nil {
				ctxBefore = tc.ctx.Clone()
			}
			got := record.CausalPut(tc.cur, tc.ctx, tc.at, ts(20, 0), []byte(tc.value), tc.tombstone)
			if !got.Equal(tc.want) {
				t.Fatalf("CausalPut = %+v (ctx %v), want %+v (ctx %v)", got.Siblings, got.Context, tc.want.Siblings, tc.want.Context)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("CausalPut result invalid: %v", err)
			}
			if !bytes.Equal(tc.cur.Encode(), curEnc) || (tc.ctx != nil && tc.ctx.Compare(ctxBefore) != record.Equal) {
				t.Fatalf("CausalPut modified its arguments")
			}
		})
	}
}

func TestCausalPutCounterSaturates(t *testing.T) {
	cur := causal(vv{"a": math.MaxUint64}, sibling("a", math.MaxUint64, ts(1, 0), "old"))
	got := record.CausalPut(cur, nil, "a", ts(2, 0), []byte("new"), false)
	want := causal(vv{"a": math.MaxUint64}, sibling("a", math.MaxUint64, ts(2, 0), "new"))
	if !got.Equal(want) || got.Validate() != nil {
		t.Fatalf("CausalPut at saturation = %+v, want %+v", got, want)
	}
}

func TestSync(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b record.Record
		want record.Record
	}{
		{
			"absent is the identity",
			causal(vv{"a": 1}, sibling("a", 1, ts(1, 0), "x")), record.Record{},
			causal(vv{"a": 1}, sibling("a", 1, ts(1, 0), "x")),
		},
		{
			"newer supersedes older",
			causal(vv{"a": 1}, sibling("a", 1, ts(1, 0), "x")),
			causal(vv{"a": 2}, sibling("a", 2, ts(2, 0), "y")),
			causal(vv{"a": 2}, sibling("a", 2, ts(2, 0), "y")),
		},
		{
			"concurrent are kept",
			causal(vv{"a": 1}, sibling("a", 1, ts(1, 0), "x")),
			causal(vv{"b": 1}, sibling("b", 1, ts(2, 0), "y")),
			causal(vv{"a": 1, "b": 1}, sibling("a", 1, ts(1, 0), "x"), sibling("b", 1, ts(2, 0), "y")),
		},
		{
			"shared sibling kept, superseded dropped",
			causal(vv{"a": 1, "b": 1}, sibling("a", 1, ts(1, 0), "x"), sibling("b", 1, ts(2, 0), "y")),
			causal(vv{"a": 1, "b": 2}, sibling("a", 1, ts(1, 0), "x"), tombstone("b", 2, ts(3, 0))),
			causal(vv{"a": 1, "b": 2}, sibling("a", 1, ts(1, 0), "x"), tombstone("b", 2, ts(3, 0))),
		},
		{
			"conflicting copies of one dot resolve by LWW order",
			causal(vv{"a": 1}, sibling("a", 1, ts(1, 0), "x")),
			causal(vv{"a": 1}, sibling("a", 1, ts(1, 0), "y")),
			causal(vv{"a": 1}, sibling("a", 1, ts(1, 0), "y")),
		},
		{
			"contradictory records leave no sibling",
			causal(vv{"a": 1, "b": 1}, sibling("a", 1, ts(1, 0), "x")),
			causal(vv{"a": 1, "b": 1}, sibling("b", 1, ts(1, 0), "y")),
			record.Record{Mode: record.ModeCausal, Context: vv{"a": 1, "b": 1}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, order := range [][2]record.Record{{tc.a, tc.b}, {tc.b, tc.a}} {
				got := record.Sync(order[0], order[1])
				if !got.Equal(tc.want) {
					t.Fatalf("Sync = %+v (ctx %v), want %+v (ctx %v)", got.Siblings, got.Context, tc.want.Siblings, tc.want.Context)
				}
			}
		})
	}
}

// randomCausalRecord returns a valid causal record over replicas a..d.
func randomCausalRecord(rng *rand.Rand) record.Record {
	ctx := vv{}
	var sibs []record.Sibling
	for _, r := range []record.ReplicaID{"a", "b", "c", "d"} {
		n := rng.Uint64N(4)
		if n == 0 {
			continue
		}
		ctx[r] = n
		for c := uint64(1); c <= n; c++ {
			if rng.IntN(3) == 0 {
				s := record.Sibling{
					Dot:       record.Dot{Replica: r, Counter: c},
					Timestamp: ts(int64(rng.IntN(3)), 0),
					Tombstone: rng.IntN(4) == 0,
				}
				if !s.Tombstone {
					s.Value = []byte{byte('p' + rng.IntN(2))}
				}
				sibs = append(sibs, s)
			}
		}
	}
	if len(sibs) == 0 {
		ctx["e"] = 1
		sibs = append(sibs, sibling("e", 1, ts(0, 0), "e"))
	}
	return causal(ctx, sibs...)
}

func TestSyncLawsRandomized(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed=%d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for i := range 2000 {
		a, b, c := randomCausalRecord(rng), randomCausalRecord(rng), randomCausalRecord(rng)
		if !record.Sync(a, a).Equal(a) {
			t.Fatalf("seed=%d iteration %d: Sync not idempotent on %+v", seed, i, a)
		}
		if !record.Sync(a, b).Equal(record.Sync(b, a)) {
			t.Fatalf("seed=%d iteration %d: Sync not commutative on %+v, %+v", seed, i, a, b)
		}
		l, r := record.Sync(record.Sync(a, b), c), record.Sync(a, record.Sync(b, c))
		if !l.Equal(r) {
			t.Fatalf("seed=%d iteration %d: Sync not associative on %+v, %+v, %+v", seed, i, a, b, c)
		}
		if ab := record.Sync(a, b); !ab.Context.Descends(a.Context) || !ab.Context.Descends(b.Context) {
			t.Fatalf("seed=%d iteration %d: Sync context does not descend its inputs", seed, i)
		}
	}
}

// TestCausalHistoryRandomized simulates replicas taking client writes with
// contexts read at random replicas and syncing pairwise, then syncs
// everything: every replica must end with the same record, holding exactly
// the writes no later write has seen (no concurrent update is lost).
func TestCausalHistoryRandomized(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed=%d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	replicas := []record.ReplicaID{"a", "b", "c"}
	for round := range 200 {
		state := make([]record.Record, len(replicas))
		var writes []record.Sibling
		var superseded []vv // client contexts of all writes
		for step := range 30 {
			switch i := rng.IntN(len(replicas)); rng.IntN(3) {
			case 0, 1: // a client reads at replica j, then writes at replica i
				j := rng.IntN(len(replicas))
				var ctx vv
				if rng.IntN(4) > 0 && state[j].Mode != 0 {
					var err error
					ctx, err = record.DecodeContext(record.EncodeContext(state[j].Context))
					if err != nil {
						t.Fatalf("seed=%d: DecodeContext: %v", seed, err)
					}
				}
				value := []byte{byte(round), byte(step)}
				next := record.CausalPut(state[i], ctx, replicas[i], ts(int64(step), 0), value, rng.IntN(5) == 0)
				if err := next.Validate(); err != nil {
					t.Fatalf("seed=%d: CausalPut produced an invalid record: %v", seed, err)
				}
				newDot := record.Dot{Replica: replicas[i], Counter: max(state[i].Context[replicas[i]], ctx[replicas[i]]) + 1}
				k := slices.IndexFunc(next.Siblings, func(s record.Sibling) bool { return s.Dot == newDot })
				if k < 0 || next.Context[replicas[i]] != newDot.Counter {
					t.Fatalf("seed=%d: CausalPut did not add dot %v: %+v", seed, newDot, next)
				}
				writes = append(writes, next.Siblings[k])
				superseded = append(superseded, ctx)
				state[i] = next
			case 2: // anti-entropy between i and j through the resolver
				j := rng.IntN(len(replicas))
				if state[i].Mode == 0 || state[j].Mode == 0 {
					merged := record.Sync(state[i], state[j])
					state[i], state[j] = merged, merged
					continue
				}
				merged, err := record.KeepSiblings{}.Resolve([]byte("k"), state[i], state[j])
				if err != nil {
					t.Fatalf("seed=%d: Resolve: %v", seed, err)
				}
				state[i], state[j] = merged, merged
			}
		}
		final := record.Record{}
		for _, s := range state {
			final = record.Sync(final, s)
		}
		for k, s := range state {
			if got := record.Sync(s, final); !got.Equal(final) {
				t.Fatalf("seed=%d round %d: replica %d does not converge", seed, round, k)
			}
		}
		var want []record.Sibling
		for _, w := range writes {
			covered := false
			for _, ctx := range superseded {
				covered = covered || ctx.Covers(w.Dot)
			}
			if !covered {
				want = append(want, w)
			}
		}
		if len(writes) == 0 {
			continue
		}
		got := slices.Clone(final.Siblings)
		slices.SortFunc(want, func(x, y record.Sibling) int { return x.Dot.Compare(y.Dot) })
		if !causal(nil, got...).Equal(causal(nil, want...)) {
			t.Fatalf("seed=%d round %d: final siblings %+v, want exactly the unsuperseded writes %+v", seed, round, got, want)
		}
		enc := final.Encode()
		if back, err := record.DecodeRecord(enc); err != nil || !back.Equal(final) {
			t.Fatalf("seed=%d round %d: round trip: %v", seed, round, err)
		}
	}
}
