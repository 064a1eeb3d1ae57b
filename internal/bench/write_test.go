package bench

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

func TestWriteSmall(t *testing.T) {
	for _, m := range []record.Mode{record.ModeLWW, record.ModeCausal} {
		res, err := Write(context.Background(), WriteConfig{Keys: 5000, Mode: m, Dir: t.TempDir(), Rounds: 2, SameRecords: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.EngineOpsPerSec <= 0 || res.PebbleOpsPerSec <= 0 || res.TreeLeaves < 2 {
			t.Fatalf("implausible result: %+v", res)
		}
		if len(res.Runs) != 2 || res.RatioMin > res.RatioMedian || res.RatioMedian > res.RatioMax {
			t.Fatalf("runs or spread inconsistent: %+v", res)
		}
		if res.PebbleRecordsOpsPerSec <= 0 || res.RatioRecordsMin <= 0 || res.RatioRecordsMin > res.RatioRecordsMedian || res.RatioRecordsMedian > res.RatioRecordsMax {
			t.Fatalf("same-records baseline missing or inconsistent: %+v", res)
		}
		wantOrder := [2]string{"pebble,same,records,engine", "engine,records,same,pebble"}
		if m == record.ModeLWW {
			wantOrder = [2]string{"pebble,same,records,floor,engine", "engine,floor,records,same,pebble"}
			if res.PebbleFloorOpsPerSec <= 0 || res.FloorVsPebbleMin <= 0 || res.FloorVsPebbleMin > res.FloorVsPebbleMedian ||
				res.FloorVsPebbleMedian > res.FloorVsPebbleMax || res.RatioFloorMedian <= 0 ||
				res.FloorRecordBytes != 100+FloorStampBytes || res.FloorRecordBytes >= res.RecordBytes {
				t.Fatalf("floor baseline missing or inconsistent: %+v", res)
			}
		} else if res.PebbleFloorOpsPerSec != 0 || res.FloorRecordBytes != 0 {
			t.Fatalf("floor baseline in causal mode: %+v", res)
		}
		if res.Runs[0].Order != wantOrder[0] || res.Runs[1].Order != wantOrder[1] {
			t.Fatalf("orders %q, %q; want %q", res.Runs[0].Order, res.Runs[1].Order, wantOrder)
		}
		// Pebble's WAL is not compressed: each side writes at least its
		// keys and values (records) once.
		raw, rec := mb(5000*(16+100)), mb(uint64(5000*(16+res.RecordBytes)))
		for i, r := range res.Runs {
			if r.PebbleMBWritten < raw || r.EngineMBWritten < rec || r.RecordsMBWritten < rec ||
				(m == record.ModeLWW && r.FloorMBWritten < mb(uint64(5000*(16+res.FloorRecordBytes)))) {
				t.Fatalf("run %d: bytes written below the WAL's least (%.1f MB raw, %.1f MB records): %+v", i, raw, rec, r)
			}
		}
		t.Logf("%+v", res)
	}
}

// TestFloorStamp checks the floor baseline's record: the value behind
// exactly FloorStampBytes (one-byte logical counter), shorter than the
// engine's record of the same write.
func TestFloorStamp(t *testing.T) {
	ts := record.Timestamp{WallTime: 1_800_000_000_000_000_000, Logical: 3}
	value := []byte("0123456789")
	got := appendFloorStamp(nil, ts, value)
	if len(got) != FloorStampBytes+len(value) || string(got[len(got)-len(value):]) != string(value) {
		t.Fatalf("floor record %x: %d bytes, want %d ending in the value", got, len(got), FloorStampBytes+len(value))
	}
	if full := record.AppendLWW(nil, benchWriter, ts, value, false); len(full) <= len(got) {
		t.Fatalf("engine record %d bytes, not longer than the floor's %d", len(full), len(got))
	}
}

// TestPebbleOptionsBloom checks that --bloom-bits reaches Pebble: with a
// filter, Gets of absent keys after a flush are answered by the filter
// (FilterMetrics.Hits), without one they never are.
func TestPebbleOptionsBloom(t *testing.T) {
	for _, bits := range []int{0, 10} {
		db, err := pebble.Open(t.TempDir(), pebbleOptions(WriteConfig{BloomBitsPerKey: bits}))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 1000 {
			if err := db.Set(fmt.Appendf(nil, "key-%04d", 2*i), []byte("v"), pebble.NoSync); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
		for i := range 1000 {
			if _, _, err := db.Get(fmt.Appendf(nil, "key-%04d", 2*i+1)); !errors.Is(err, pebble.ErrNotFound) {
				t.Fatalf("bits %d: absent key: %v", bits, err)
			}
		}
		hits := db.Metrics().Filter.Hits
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if (bits > 0) != (hits > 0) {
			t.Fatalf("bloom bits %d: %d filter hits over 1000 absent keys", bits, hits)
		}
		t.Logf("bloom bits %d: %d of 1000 absent keys answered by the filter", bits, hits)
	}
}
