package bench

import (
	"context"
	"testing"

	"github.com/pebble-ae/pebble-ae/reconcile"
)

func TestWriteSmall(t *testing.T) {
	for _, m := range []reconcile.Mode{reconcile.ModeLWW, reconcile.ModeCausal} {
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
		if res.Runs[0].Order != "pebble,same,records,engine" || res.Runs[1].Order != "engine,records,same,pebble" {
			t.Fatalf("orders %q, %q", res.Runs[0].Order, res.Runs[1].Order)
		}
		t.Logf("%+v", res)
	}
}
