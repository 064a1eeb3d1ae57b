package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestLoopLoadSmall runs the foreground-vs-repair measurement at a small
// size: it checks that it runs and reports, not how fast anything is, and
// that the loop finishes the repair once the foreground stops, whatever
// admission control did meanwhile.
func TestLoopLoadSmall(t *testing.T) {
	res, err := LoopLoad(context.Background(), LoopLoadConfig{Dir: t.TempDir(), Keys: 20000, Phase: 600 * time.Millisecond, Reps: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []LoadPhase{res.Idle, res.Admission, res.NoAdmission} {
		if p.Ops == 0 || p.P99 <= 0 {
			t.Fatalf("phase %q measured nothing: %+v", p.Name, p)
		}
		logPhase(t, "", p)
	}
	if res.Admission.TailMissing != 0 {
		t.Fatalf("the loop did not finish the repair after the foreground stopped: %d keys missing", res.Admission.TailMissing)
	}
	t.Logf("p99 ratio %.2f / %.2f, throughput ratio %.2f / %.2f (admission on / off)",
		res.P99RatioAdmission, res.P99RatioNoAdmission, res.ThroughputRatioAdmission, res.ThroughputRatioNoAdmission)
}

func logPhase(t *testing.T, prefix string, p LoadPhase) {
	t.Helper()
	t.Logf("%s%-20s ops/s %7.0f p50 %6.2fµs p99 %6.2fµs p99.9 %7.2fµs repaired/s %7.0f missing %6d tail %.1fs (%d left) scale %.2f (min %.2f) decreases %d %v sessions %v %s",
		prefix, p.Name, p.OpsPerSec, us(p.P50), us(p.P99), us(p.P999), p.RepairedPerSec, p.Missing, p.TailSeconds, p.TailMissing, p.Scale, p.MinScale, p.Decreases, p.Reasons, p.Sessions, p.Err)
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

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
// runs only with PEBBLEAE_BENCH_LOOP=1 (about six minutes).
func TestLoopLoadLarge(t *testing.T) {
	if os.Getenv("PEBBLEAE_BENCH_LOOP") == "" {
		t.Skip("set PEBBLEAE_BENCH_LOOP=1 to run")
	}
	// PEBBLEAE_BENCH_LOOP_BUSY sets a busy-time budget (cores), for
	// comparison.
	var busy float64
	if v := os.Getenv("PEBBLEAE_BENCH_LOOP_BUSY"); v != "" {
		var err error
		if busy, err = strconv.ParseFloat(v, 64); err != nil {
			t.Fatal(err)
		}
	}
	for _, rate := range []float64{20000, 50000, -1} {
		res, err := LoopLoad(context.Background(), LoopLoadConfig{Dir: t.TempDir(), Keys: 500_000, Phase: 5 * time.Second, Rate: rate, Reps: 3, BusyFraction: busy})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res.Reps {
			for _, p := range []LoadPhase{r.Idle, r.Admission, r.NoAdmission} {
				logPhase(t, fmt.Sprintf("rate %6.0f rep %d ", rate, i), p)
			}
			t.Logf("rate %6.0f rep %d: p99 ratio %.2f / %.2f, throughput ratio %.2f / %.2f (admission on / off)",
				rate, i, r.P99RatioAdmission, r.P99RatioNoAdmission, r.ThroughputRatioAdmission, r.ThroughputRatioNoAdmission)
		}
		for _, p := range []LoadPhase{res.Idle, res.Admission, res.NoAdmission} {
			logPhase(t, fmt.Sprintf("rate %6.0f median ", rate), p)
		}
		t.Logf("rate %6.0f median: p99 ratio %.2f / %.2f, throughput ratio %.2f / %.2f (admission on / off)",
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
