package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
	logPhase(t, "", res.RepairAlone)
	for _, p := range []LoadPhase{res.Admission, res.NoAdmission, res.RepairAlone} {
		if p.TailMissing != 0 {
			t.Fatalf("phase %q: the loop did not finish the repair after the foreground stopped: %d keys missing", p.Name, p.TailMissing)
		}
	}
	t.Logf("p99 ratio %.2f / %.2f, throughput ratio %.2f / %.2f (admission on / off)",
		res.P99RatioAdmission, res.P99RatioNoAdmission, res.ThroughputRatioAdmission, res.ThroughputRatioNoAdmission)
}

// TestLoopLoadSourceProcess runs the measurement with the source replica
// served by a `pebble-ae serve` process over loopback gRPC, and checks that
// the loop repairs from it.
func TestLoopLoadSourceProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the pebble-ae binary")
	}
	// The tail ends as soon as nothing is missing (a few seconds here); its
	// bound is past the loop's session timeout (1 minute), so that a
	// session slowed to a crawl on an oversubscribed machine (seen once
	// under -race with every package's tests running: one RangeHash to the
	// source took the whole default 30 s tail) is retried, not judged.
	res, err := LoopLoad(context.Background(), LoopLoadConfig{Dir: t.TempDir(), Keys: 5000, Phase: 300 * time.Millisecond, Reps: 1,
		Tail: 2 * time.Minute, SourceServer: []string{buildPebbleAE(t), "serve"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []LoadPhase{res.Idle, res.Admission, res.NoAdmission} {
		logPhase(t, "", p)
	}
	for _, p := range []LoadPhase{res.Admission, res.NoAdmission} {
		if p.TailMissing != 0 {
			t.Fatalf("phase %q: the loop did not repair from the source process: %+v", p.Name, p)
		}
	}
}

// buildPebbleAE builds cmd/pebble-ae into a temporary directory.
func buildPebbleAE(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pebble-ae")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/pebble-ae/pebble-ae/cmd/pebble-ae").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func logPhase(t *testing.T, prefix string, p LoadPhase) {
	t.Helper()
	t.Logf("%s%-20s ops/s %7.0f p50 %6.2fµs p99 %6.2fµs p99.9 %7.2fµs cpu %.2f (gc %.2f) writer cpu %.2f wait %.2f ops/cpu-s %.0f repaired/s %7.0f missing %6d (loop's estimate %d, rate %.0f/s) tail %.1fs (%d left) scale %.2f (min %.2f, mean %.2f) decreases %d %v samples %v sessions %v (bounded %d) %s",
		prefix, p.Name, p.OpsPerSec, us(p.P50), us(p.P99), us(p.P999), p.CPUCores, p.GCCores, p.WriterCPU, p.WriterWait, p.OpsPerWriterCPUSecond, p.RepairedPerSec, p.Missing, p.RemainingEstimate, p.LoopRate, p.TailSeconds, p.TailMissing, p.Scale, p.MinScale, p.MeanScale, p.Decreases, p.DecreasesByReason, p.Reasons, p.Sessions, p.BoundedSessions, p.Err)
}

func metStr(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT MET"
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
// runs only with PEBBLEAE_BENCH_LOOP=1 (15–20 minutes with
// PEBBLEAE_BENCH_LOOP_PHASE=10s, as the documented table: pass -timeout).
// PEBBLEAE_BENCH_LOOP_RATES (comma-separated offered loads, -1: flat out;
// default 20000,50000,-1), PEBBLEAE_BENCH_LOOP_REPS (default 3) and
// PEBBLEAE_BENCH_LOOP_PROFILE (a directory for per-phase CPU profiles)
// narrow or instrument it (a run with PEBBLEAE_BENCH_LOOP_RATES skips the
// scan-rate measurement).
func TestLoopLoadLarge(t *testing.T) {
	if os.Getenv("PEBBLEAE_BENCH_LOOP") == "" {
		t.Skip("set PEBBLEAE_BENCH_LOOP=1 to run")
	}
	rates := []float64{20000, 50000, -1}
	if v := os.Getenv("PEBBLEAE_BENCH_LOOP_RATES"); v != "" {
		rates = nil
		for _, f := range strings.Split(v, ",") {
			r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil {
				t.Fatal(err)
			}
			rates = append(rates, r)
		}
	}
	reps := 3
	if v := os.Getenv("PEBBLEAE_BENCH_LOOP_REPS"); v != "" {
		var err error
		if reps, err = strconv.Atoi(v); err != nil {
			t.Fatal(err)
		}
	}
	profileDir := os.Getenv("PEBBLEAE_BENCH_LOOP_PROFILE")
	// PEBBLEAE_BENCH_LOOP_LOCK_WRITER=1 locks the writer to its OS thread
	// and reports its CPU share (LoopLoadConfig.LockWriter).
	lockWriter := os.Getenv("PEBBLEAE_BENCH_LOOP_LOCK_WRITER") != ""
	// PEBBLEAE_BENCH_LOOP_SOURCE=process serves the source replica from a
	// `pebble-ae serve` process at nice PEBBLEAE_BENCH_LOOP_SOURCE_NICE
	// (default 19), as another machine would.
	var source []string
	if v := os.Getenv("PEBBLEAE_BENCH_LOOP_SOURCE"); v != "" {
		if v != "process" {
			t.Fatalf("PEBBLEAE_BENCH_LOOP_SOURCE=%q: want process", v)
		}
		nice := "19"
		if n := os.Getenv("PEBBLEAE_BENCH_LOOP_SOURCE_NICE"); n != "" {
			nice = n
		}
		source = []string{"nice", "-n", nice, buildPebbleAE(t), "serve"}
	}
	// PEBBLEAE_BENCH_LOOP_BUSY sets the busy-time budget (cores; default
	// repair.DefaultLoopBusyFraction; -1: none), for comparison.
	var busy float64
	if v := os.Getenv("PEBBLEAE_BENCH_LOOP_BUSY"); v != "" {
		var err error
		if busy, err = strconv.ParseFloat(v, 64); err != nil {
			t.Fatal(err)
		}
	}
	// PEBBLEAE_BENCH_LOOP_SESSIONS=1 prints a line per session.
	// PEBBLEAE_BENCH_LOOP_SESSIONS=rounds also prints a line per round.
	var sessionLog, roundLog io.Writer
	if v := os.Getenv("PEBBLEAE_BENCH_LOOP_SESSIONS"); v != "" {
		sessionLog = os.Stderr
		if v == "rounds" {
			roundLog = os.Stderr
		}
	}
	// PEBBLEAE_BENCH_LOOP_PHASES=admission-on,repair-alone (say) runs only
	// those phases (idle, admission-on, admission-off, repair-alone).
	var phases []string
	if v := os.Getenv("PEBBLEAE_BENCH_LOOP_PHASES"); v != "" {
		phases = strings.Split(v, ",")
	}
	// PEBBLEAE_BENCH_LOOP_SESSION_KEYS sets LoopConfig.MaxSessionKeys.
	var sessionKeys int64
	if v := os.Getenv("PEBBLEAE_BENCH_LOOP_SESSION_KEYS"); v != "" {
		var err error
		if sessionKeys, err = strconv.ParseInt(v, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	// PEBBLEAE_BENCH_LOOP_FLOOR and PEBBLEAE_BENCH_LOOP_CEILING set the
	// node's repair floor and ceiling.
	var floor, ceiling float64
	for env, v := range map[string]*float64{"PEBBLEAE_BENCH_LOOP_FLOOR": &floor, "PEBBLEAE_BENCH_LOOP_CEILING": &ceiling} {
		if s := os.Getenv(env); s != "" {
			var err error
			if *v, err = strconv.ParseFloat(s, 64); err != nil {
				t.Fatalf("%s: %v", env, err)
			}
		}
	}
	// PEBBLEAE_BENCH_LOOP_PHASE sets the measured phase (default 5s).
	phase := 5 * time.Second
	if v := os.Getenv("PEBBLEAE_BENCH_LOOP_PHASE"); v != "" {
		var err error
		if phase, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	for _, rate := range rates {
		var dir string
		if profileDir != "" {
			dir = filepath.Join(profileDir, fmt.Sprintf("rate%.0f", rate))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		res, err := LoopLoad(context.Background(), LoopLoadConfig{Dir: t.TempDir(), Keys: 500_000, Phase: phase, Rate: rate, Reps: reps, BusyFraction: busy, RepairFloor: floor, RepairCeiling: ceiling, ProfileDir: dir, Phases: phases, MaxSessionKeys: sessionKeys, SessionLog: sessionLog, RoundLog: roundLog, SourceServer: source, LockWriter: lockWriter})
		if err != nil {
			t.Fatal(err)
		}
		var idleP99, idleOps []float64
		for i, r := range res.Reps {
			for _, p := range []LoadPhase{r.Idle, r.Admission, r.NoAdmission, r.RepairAlone} {
				logPhase(t, fmt.Sprintf("rate %6.0f rep %d ", rate, i), p)
			}
			t.Logf("rate %6.0f rep %d: p99 ratio %.2f / %.2f, throughput ratio %.2f / %.2f, repair rate ratio %.2f / %.2f (admission on / off)",
				rate, i, r.P99RatioAdmission, r.P99RatioNoAdmission, r.ThroughputRatioAdmission, r.ThroughputRatioNoAdmission, r.RepairRatioAdmission, r.RepairRatioNoAdmission)
			idleP99 = append(idleP99, us(r.Idle.P99))
			idleOps = append(idleOps, r.Idle.OpsPerSec)
			// The repair must converge by the end of the tail, in every
			// repetition and phase with the loop.
			for _, p := range []LoadPhase{r.Admission, r.NoAdmission, r.RepairAlone} {
				if p.Missing > 0 && p.TailMissing > 0 {
					t.Errorf("rate %.0f rep %d phase %q: did not converge: %d records still missing at the end of the tail", rate, i, p.Name, p.TailMissing)
				}
			}
		}
		for _, p := range []LoadPhase{res.Idle, res.Admission, res.NoAdmission, res.RepairAlone} {
			logPhase(t, fmt.Sprintf("rate %6.0f median ", rate), p)
		}
		t.Logf("rate %6.0f idle spread: p99 %.2f–%.2fµs, ops/s %.0f–%.0f over %d repetitions", rate, slices.Min(idleP99), slices.Max(idleP99), slices.Min(idleOps), slices.Max(idleOps), len(res.Reps))
		t.Logf("rate %6.0f median: p99 ratio %.2f / %.2f, throughput ratio %.2f / %.2f, repair rate ratio %.2f / %.2f (admission on / off; idle repair rate %.0f/s)",
			rate, res.P99RatioAdmission, res.P99RatioNoAdmission, res.ThroughputRatioAdmission, res.ThroughputRatioNoAdmission, res.RepairRatioAdmission, res.RepairRatioNoAdmission, res.RepairAlone.RepairedPerSec)
		// The goals of issue 21 (admission on), reported, not asserted:
		// a benchmark does not assert wall-clock speed.
		p99Goal, tputGoal, repairGoal := 1.2, 0.95, 0.5
		if rate < 0 {
			p99Goal, tputGoal, repairGoal = math.Inf(1), 0.9, 0.1
		}
		t.Logf("rate %6.0f goals (admission on, medians): p99 ratio %.2f <= %.2f: %s; throughput ratio %.2f >= %.2f: %s; repair rate ratio %.2f >= %.2f: %s",
			rate, res.P99RatioAdmission, p99Goal, metStr(res.P99RatioAdmission <= p99Goal), res.ThroughputRatioAdmission, tputGoal, metStr(res.ThroughputRatioAdmission >= tputGoal),
			res.RepairRatioAdmission, repairGoal, metStr(res.RepairRatioAdmission >= repairGoal))
	}
	if os.Getenv("PEBBLEAE_BENCH_LOOP_RATES") != "" {
		return // a narrowed run skips the scan rates
	}
	for _, limit := range []float64{4 << 20, 16 << 20, 64 << 20} {
		res, err := ScanRate(context.Background(), ScanRateConfig{Dir: t.TempDir(), Keys: 500_000, Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("scan limit %.0f MiB/s: achieved %.2f MiB/s (ratio %.3f) over %.1fs", limit/(1<<20), res.AchievedBytesPS/(1<<20), res.Ratio, res.Seconds)
	}
}
