package bench

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestLoopLoadSmall runs the foreground-vs-repair measurement at a small
// size: it checks that it runs and reports, not how fast anything is.
func TestLoopLoadSmall(t *testing.T) {
	res, err := LoopLoad(context.Background(), LoopLoadConfig{Dir: t.TempDir(), Keys: 20000, Phase: 600 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []LoadPhase{res.Idle, res.Admission, res.NoAdmission} {
		if p.Ops == 0 || p.P99 <= 0 {
			t.Fatalf("phase %q measured nothing: %+v", p.Name, p)
		}
		t.Logf("%-22s ops/s %8.0f p50 %v p99 %v p99.9 %v repaired %d dst %d scale %.2f decreases %d",
			p.Name, p.OpsPerSec, p.P50, p.P99, p.P999, p.KeysRepaired, p.DstKeys, p.Scale, p.Decreases)
	}
	t.Logf("p99 ratio %.2f / %.2f, throughput ratio %.2f / %.2f (admission on / off)",
		res.P99RatioAdmission, res.P99RatioNoAdmission, res.ThroughputRatioAdmission, res.ThroughputRatioNoAdmission)
}

// TestScanRateSmall runs the throttled-scan measurement briefly.
func TestScanRateSmall(t *testing.T) {
	res, err := ScanRate(context.Background(), ScanRateConfig{Dir: t.TempDir(), Keys: 20000, Limit: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if res.BytesScanned == 0 {
		t.Fatalf("nothing scanned: %+v", res)
	}
	t.Logf("%+v", res)
}

// TestLoopLoadLarge is the full measurement behind docs/benchmarks.md; it
// runs only with PEBBLEAE_BENCH_LOOP=1 (about a minute).
func TestLoopLoadLarge(t *testing.T) {
	if os.Getenv("PEBBLEAE_BENCH_LOOP") == "" {
		t.Skip("set PEBBLEAE_BENCH_LOOP=1 to run")
	}
	for _, rate := range []float64{20000, 50000, -1} {
		res, err := LoopLoad(context.Background(), LoopLoadConfig{Dir: t.TempDir(), Keys: 500_000, Phase: 5 * time.Second, Rate: rate})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []LoadPhase{res.Idle, res.Admission, res.NoAdmission} {
			t.Logf("rate %6.0f %-22s ops/s %8.0f p50 %v p99 %v p99.9 %v repaired %d dst %d scale %.2f decreases %d",
				rate, p.Name, p.OpsPerSec, p.P50, p.P99, p.P999, p.KeysRepaired, p.DstKeys, p.Scale, p.Decreases)
		}
		t.Logf("rate %6.0f: p99 ratio %.2f / %.2f, throughput ratio %.2f / %.2f (admission on / off)",
			rate, res.P99RatioAdmission, res.P99RatioNoAdmission, res.ThroughputRatioAdmission, res.ThroughputRatioNoAdmission)
	}
	for _, limit := range []float64{4 << 20, 16 << 20, 64 << 20} {
		res, err := ScanRate(context.Background(), ScanRateConfig{Dir: t.TempDir(), Keys: 500_000, Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("scan limit %.0f MiB/s: achieved %.2f MiB/s (ratio %.3f) over %.1fs", limit/(1<<20), res.AchievedBytesPS/(1<<20), res.Ratio, res.Seconds)
	}
}
