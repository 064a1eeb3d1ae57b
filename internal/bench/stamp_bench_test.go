package bench

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// stampLayouts are the ways BenchmarkStampLayouts stores an LWW stamp with
// a value, from none to the engine's record format.
var stampLayouts = []struct {
	name string
	enc  func(dst []byte, ts record.Timestamp, value []byte) []byte
}{
	// raw: the bare value, what the baseline writes.
	{"raw", func(dst []byte, _ record.Timestamp, v []byte) []byte { return append(dst, v...) }},
	// const15: 15 constant bytes, the floor's length but compressible to
	// nothing: what the extra volume alone costs.
	{"const15", func(dst []byte, _ record.Timestamp, v []byte) []byte {
		return append(append(dst, "abcdefghijklmno"...), v...)
	}},
	// hlc8: a 64-bit HLC (48-bit milliseconds, 16-bit logical counter)
	// and no writer: less than an LWW record may carry (the issue asks for
	// the replica ID), the least any HLC stamp needs.
	{"hlc8", func(dst []byte, ts record.Timestamp, v []byte) []byte {
		dst = binary.BigEndian.AppendUint64(dst, uint64(ts.WallTime/1e6)<<16|uint64(ts.Logical&0xffff))
		return append(dst, v...)
	}},
	// hlc8w2: hlc8 and a 1-byte replica ID with its length: the least an
	// LWW record with a replica ID can carry.
	{"hlc8w2", func(dst []byte, ts record.Timestamp, v []byte) []byte {
		dst = binary.BigEndian.AppendUint64(dst, uint64(ts.WallTime/1e6)<<16|uint64(ts.Logical&0xffff))
		return append(append(dst, 1, 'a'), v...)
	}},
	// hlc8w6: hlc8 and the bench's 5-byte writer ID with its length.
	{"hlc8w6", func(dst []byte, ts record.Timestamp, v []byte) []byte {
		dst = binary.BigEndian.AppendUint64(dst, uint64(ts.WallTime/1e6)<<16|uint64(ts.Logical&0xffff))
		return append(append(dst, byte(len(benchWriter))), append([]byte(benchWriter), v...)...)
	}},
	// ns9: the format-2 timestamp (nanosecond wall time, logical counter)
	// and no writer.
	{"ns9", func(dst []byte, ts record.Timestamp, v []byte) []byte {
		dst = binary.BigEndian.AppendUint64(dst, uint64(ts.WallTime))
		return append(binary.AppendUvarint(dst, uint64(ts.Logical)), v...)
	}},
	// floor15: the bench's floor (appendFloorStamp): nanosecond wall time,
	// logical counter, the 5-byte writer ID with its length.
	{"floor15", appendFloorStamp},
	// format2: the engine's record (record.AppendLWW), 17 bytes.
	{"format2", func(dst []byte, ts record.Timestamp, v []byte) []byte {
		return record.AppendLWW(dst, benchWriter, ts, v, false)
	}},
}

// BenchmarkStampLayouts writes b.N random 16-byte keys with 100-byte
// constant values, in NoSync batches of 100, into a fresh raw Pebble DB for
// each way of storing an LWW stamp with the value (stampLayouts): how much
// of raw Pebble's write throughput any LWW record format can keep. Compare
// the layouts' ns/op within one run, e.g.
//
//	go test ./internal/bench -run '^$' -bench StampLayouts -benchtime 1000000x -count 7
func BenchmarkStampLayouts(b *testing.B) {
	for _, l := range stampLayouts {
		b.Run(l.name, func(b *testing.B) {
			db, err := pebble.Open(b.TempDir(), &pebble.Options{FormatMajorVersion: engine.FormatMajorVersion, Logger: silent{}})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			clock := record.NewHLC(nil)
			value := benchValue(100)
			rng := rand.New(rand.NewPCG(1, 1))
			key := make([]byte, 16)
			var enc []byte
			b.ResetTimer()
			for i := 0; i < b.N; {
				batch := db.NewBatch()
				ts := clock.Now()
				for j := 0; j < 100 && i < b.N; j, i = j+1, i+1 {
					if j > 0 {
						ts = clock.Next()
					}
					enc = l.enc(enc[:0], ts, value)
					if err := batch.Set(keyAt(key, rng), enc, nil); err != nil {
						b.Fatal(err)
					}
				}
				if err := batch.Commit(pebble.NoSync); err != nil {
					b.Fatal(err)
				}
				batch.Close()
			}
			b.StopTimer()
			b.ReportMetric(float64(len(enc)-len(value)), "stamp-B")
			b.ReportMetric(float64(bytesWritten(db))/float64(b.N), "written-B/op")
		})
	}
}

// TestStampLayouts checks that each layout keeps the value whole at its end
// and adds the bytes its name says.
func TestStampLayouts(t *testing.T) {
	ts := record.Timestamp{WallTime: 1_800_000_000_123_456_789, Logical: 3}
	value := []byte("0123456789")
	want := map[string]int{"raw": 0, "const15": 15, "hlc8": 8, "hlc8w2": 10, "hlc8w6": 14, "ns9": 9, "floor15": FloorStampBytes, "format2": 17}
	for _, l := range stampLayouts {
		got := l.enc(nil, ts, value)
		if n, ok := want[l.name]; !ok || len(got) != n+len(value) || string(got[n:]) != string(value) {
			t.Errorf("%s: %x (%d bytes), want %d bytes of stamp then the value", l.name, got, len(got), want[l.name])
		}
	}
}
