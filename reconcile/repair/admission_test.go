package repair_test

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/hooks"
	"github.com/pebble-ae/pebble-ae/internal/testclock"
	"github.com/pebble-ae/pebble-ae/reconcile/repair"
)

// TestAdmissionLatencyNoise scripts the foreground's latency on a fake
// clock: noise inside the baseline's own spread (and a rise of a few
// microseconds, and a single slow window) scales nothing down, and the
// scale climbs to the ceiling meanwhile; a real, sustained rise halves it
// window by window; a permanent overload holds the scale at the repair
// floor; and the scale recovers to the configured rates within a second of
// the signal clearing, to the ceiling within two.
func TestAdmissionLatencyNoise(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 21))
	clk := testclock.New(time.Unix(1_900_000_000, 0))
	scan, err := repair.NewThrottle("scan", repair.ThrottleConfig{BytesPerSec: 100 << 20, KeysPerSec: 1e6})
	if err != nil {
		t.Fatal(err)
	}
	a, err := repair.NewAdmission(repair.AdmissionConfig{Throttles: []*repair.Throttle{scan}, Clock: clk, Pebble: func() repair.PebbleSignals { return repair.PebbleSignals{} }})
	if err != nil {
		t.Fatal(err)
	}
	busy := false
	// window feeds 1000 foreground latencies whose p99 is p99 (980 fast
	// ones of 3µs, 20 at p99) and evaluates one 50ms window: a paced
	// foreground of 20k operations/s, which leaves room.
	window := func(p99 time.Duration) repair.AdmissionStatus {
		for range 980 {
			a.ObserveForeground(3 * time.Microsecond)
		}
		for range 20 {
			a.ObserveForeground(p99)
		}
		if busy {
			if err := scan.Wait(context.Background(), 1, 100); err != nil {
				t.Fatal(err)
			}
		}
		clk.Advance(repair.DefaultAdmissionInterval)
		return a.Evaluate()
	}
	// noisy is the idle foreground: a p99 of 15µs ± 2µs (σ), as the
	// issue-21 benchmark's write path.
	noisy := func() time.Duration {
		return time.Duration(15000 + 2000*rng.NormFloat64())
	}
	// Quiet windows teach the baseline and its spread.
	for range 60 {
		if st := window(noisy()); st.Overloaded {
			t.Fatalf("quiet window overloaded: %+v", st)
		}
	}
	st := window(noisy())
	if !st.BaselineQuiet || st.Baseline < 13*time.Microsecond || st.Baseline > 19*time.Microsecond || st.Noise <= 0 || st.Noise > 5*time.Microsecond {
		t.Fatalf("baseline not learned from the quiet windows: %+v", st)
	}
	t.Logf("baseline %v, noise %v, target %v", st.Baseline, st.Noise, st.Target)
	// Background work; the foreground's p99 jitters inside the spread,
	// moves from ~15µs to ~19µs, and has one slow window.
	busy = true
	script := []time.Duration{}
	for range 100 {
		script = append(script, noisy())
	}
	for range 40 {
		script = append(script, 19*time.Microsecond)
	}
	script = append(script, 80*time.Microsecond)
	for range 5 {
		script = append(script, 19*time.Microsecond)
	}
	last := a.Status().Scale
	for i, d := range script {
		if st := window(d); st.Overloaded || st.Scale < last {
			t.Fatalf("window %d (p99 %v): scaled down on noise: %+v", i, d, st)
		} else {
			last = st.Scale
		}
	}
	// Room left: background work gets the ceiling.
	if st := a.Status(); st.Scale != repair.DefaultMaxScale || st.MaxScale != repair.DefaultMaxScale || scan.Status().Scale != repair.DefaultMaxScale {
		t.Fatalf("no signal for 146 windows: scale %v (throttle %v), want the ceiling %v", st.Scale, scan.Status().Scale, repair.DefaultMaxScale)
	}
	if got, want := scan.Status().BytesPerSec, float64(100<<20)*repair.DefaultMaxScale; math.Abs(got-want) > 1 {
		t.Fatalf("throttle at %v bytes/s at the ceiling, want %v", got, want)
	}
	// A real, sustained rise: 4× the baseline. Nothing for the first
	// SustainWindows-1 windows, then halving down to the floor.
	for i := range repair.DefaultSustainWindows - 1 {
		if st := window(60 * time.Microsecond); st.Overloaded {
			t.Fatalf("window %d of the rise: overloaded before it was sustained: %+v", i, st)
		}
	}
	want := float64(repair.DefaultMaxScale)
	for i := range 3 {
		st := window(60 * time.Microsecond)
		want /= 2
		if !st.Overloaded || !slices.Equal(st.Reasons, []string{"latency"}) || math.Abs(st.Scale-want) > 1e-9 {
			t.Fatalf("sustained rise, window %d: want scale %v for latency: %+v", i, want, st)
		}
	}
	// A permanent overload: the scale holds at the repair floor.
	for range 200 {
		window(60 * time.Microsecond)
	}
	st = a.Status()
	if !st.Overloaded || st.Scale != repair.DefaultMinScale || st.MinScale != repair.DefaultMinScale || scan.Status().Scale != repair.DefaultMinScale {
		t.Fatalf("permanent overload: scale %v (throttle %v), want the floor %v: %+v", st.Scale, scan.Status().Scale, repair.DefaultMinScale, st)
	}
	if got, want := scan.Status().BytesPerSec, float64(100<<20)*repair.DefaultMinScale; math.Abs(got-want) > 1 {
		t.Fatalf("throttle at %v bytes/s under permanent overload, want the floor's %v", got, want)
	}
	if st.DecreasesByReason["latency"] != st.Decreases || st.Decreases < 200 {
		t.Fatalf("decreases by reason %v, decreases %d", st.DecreasesByReason, st.Decreases)
	}
	// The signal clears: back to the configured rates within a second, to
	// the ceiling within two and a half (the last LatencyWindows windows
	// still hold the overload's for 400ms).
	var elapsed time.Duration
	for a.Status().Scale < 1 {
		window(noisy())
		elapsed += repair.DefaultAdmissionInterval
		if elapsed > time.Second {
			t.Fatalf("scale %v a second after the signal cleared", a.Status().Scale)
		}
	}
	for a.Status().Scale < repair.DefaultMaxScale {
		window(noisy())
		elapsed += repair.DefaultAdmissionInterval
		if elapsed > 2500*time.Millisecond {
			t.Fatalf("scale %v two and a half seconds after the signal cleared", a.Status().Scale)
		}
	}
}

// TestAdmissionIntermittentStalls: stalls that come and go (every other
// window has 4% of its operations at 4× the baseline p99) never make a run of
// SustainWindows slow windows, yet raise the foreground's p99: the p99 of
// the last LatencyWindows windows together shows it, and scales down.
func TestAdmissionIntermittentStalls(t *testing.T) {
	clk := testclock.New(time.Unix(1_900_000_000, 0))
	scan, err := repair.NewThrottle("scan", repair.ThrottleConfig{BytesPerSec: 100 << 20})
	if err != nil {
		t.Fatal(err)
	}
	a, err := repair.NewAdmission(repair.AdmissionConfig{Throttles: []*repair.Throttle{scan}, Clock: clk, Pebble: func() repair.PebbleSignals { return repair.PebbleSignals{} }})
	if err != nil {
		t.Fatal(err)
	}
	busy := false
	window := func(slow int) repair.AdmissionStatus {
		for range 1000 - slow - 20 {
			a.ObserveForeground(3 * time.Microsecond)
		}
		for range 20 {
			a.ObserveForeground(15 * time.Microsecond)
		}
		for range slow {
			a.ObserveForeground(60 * time.Microsecond)
		}
		if busy {
			if err := scan.Wait(context.Background(), 1, 100); err != nil {
				t.Fatal(err)
			}
		}
		clk.Advance(repair.DefaultAdmissionInterval)
		return a.Evaluate()
	}
	for range 60 {
		window(0)
	}
	busy = true
	first, decreases := -1, 0
	for i := range 40 {
		slow := 0
		if i%2 == 1 {
			slow = 40
		}
		st := window(slow)
		if st.AboveTarget >= repair.DefaultSustainWindows {
			t.Fatalf("window %d: a run of %d slow windows", i, st.AboveTarget)
		}
		if st.Overloaded {
			if !slices.Equal(st.Reasons, []string{"latency"}) || st.RecentP99 <= st.Target {
				t.Fatalf("window %d: overloaded %v, recent p99 %v, target %v", i, st.Reasons, st.RecentP99, st.Target)
			}
			if first < 0 {
				first = i
				t.Logf("window %d: scaled down to %v (recent p99 %v, target %v)", i, st.Scale, st.RecentP99, st.Target)
			}
			decreases++
		}
	}
	// Judged, the same stalls do not scale down again window after
	// window: the next judgement waits for new slow windows.
	if first < 0 || first > repair.DefaultLatencyWindows || decreases > (40-first)/4+1 {
		t.Fatalf("intermittent stalls: first decrease at window %d, %d decreases in 40 windows", first, decreases)
	}
}

// TestAdmissionThroughputSignal scripts a foreground that runs flat out
// (its operations fill a good part of each window) on a fake clock:
// background work under which its operation rate stays within the quiet
// windows' spread, or a paced foreground's rate falling (a lower offered
// load), scales nothing down; a busy foreground losing 11% of its rate (its
// p99 unmoved) does, for "throughput", once per ThroughputWindows windows;
// a permanent loss holds the repair floor.
func TestAdmissionThroughputSignal(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 22))
	clk := testclock.New(time.Unix(1_900_000_000, 0))
	scan, err := repair.NewThrottle("scan", repair.ThrottleConfig{BytesPerSec: 100 << 20, BusyFraction: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	// SaturatedScale 1: the signal is judged at the configured rates
	// (TestAdmissionSaturatedScale covers the default).
	a, err := repair.NewAdmission(repair.AdmissionConfig{Throttles: []*repair.Throttle{scan}, Clock: clk, SaturatedScale: 1, Pebble: func() repair.PebbleSignals { return repair.PebbleSignals{} }})
	if err != nil {
		t.Fatal(err)
	}
	busy := false
	// window feeds n operations of 5µs (2% of them 20µs: the p99 does not
	// move) and evaluates one 50ms window. 4500 of them fill 45% of it.
	window := func(n int) repair.AdmissionStatus {
		for i := range n {
			d := 5 * time.Microsecond
			if i%50 == 0 {
				d = 20 * time.Microsecond
			}
			a.ObserveForeground(d)
		}
		if busy {
			if err := scan.Busy(context.Background(), time.Microsecond); err != nil {
				t.Fatal(err)
			}
		}
		clk.Advance(repair.DefaultAdmissionInterval)
		return a.Evaluate()
	}
	// noisy is a flat-out writer's operations a window: 4500 ± 3% (σ).
	noisy := func() int { return int(4500 + 135*rng.NormFloat64()) }
	for i := range 60 {
		// The utilization is averaged over about LendWindows windows.
		if st := window(noisy()); st.Overloaded || (i >= repair.DefaultLendWindows && !st.Saturated) || st.Scale > 1 || st.Ceiling != 1 {
			t.Fatalf("quiet saturated window %d: lent room, or overloaded, or not saturated: %+v", i, st)
		}
	}
	st := window(noisy())
	if st.RateBaseline < 85000 || st.RateBaseline > 95000 || st.RateNoise <= 0 || st.RateTarget >= st.RateBaseline {
		t.Fatalf("throughput baseline not learned: %+v", st)
	}
	t.Logf("rate baseline %.0f/s, noise %.0f, target %.0f", st.RateBaseline, st.RateNoise, st.RateTarget)
	busy = true
	last := st.Scale
	// Background work within the noise; then a paced foreground (a tenth
	// of the operations): not saturated (once its average utilization has
	// fallen), not judged, and lent room once it has been so for
	// LendWindows windows.
	for i := range 200 {
		n := noisy()
		if i >= 100 {
			n = 450
		}
		st := window(n)
		if st.Overloaded || st.Scale < last {
			t.Fatalf("window %d (%d operations): scaled down: %+v", i, n, st)
		}
		lent := st.Scale > 1
		if (lent && i < 100+repair.DefaultLendWindows) || (!lent && i >= 100+4*repair.DefaultLendWindows) {
			t.Fatalf("window %d (%d operations): scale %v, ceiling %v, utilization %v", i, n, st.Scale, st.Ceiling, st.Utilization)
		}
		last = st.Scale
	}
	if last != repair.DefaultMaxScale {
		t.Fatalf("a paced foreground with room: scale %v, want the ceiling", last)
	}
	// A saturated foreground that loses 11% of its operations: lent
	// nothing once its average utilization shows it saturated (a few
	// windows), then a throughput overload once ThroughputWindows
	// saturated windows show the loss, with its reason.
	ramp := 0
	for st := window(4000); !st.Saturated; st = window(4000) {
		if ramp++; ramp > repair.DefaultLendWindows {
			t.Fatalf("a flat-out foreground not saturated after %d windows: %+v", ramp, st)
		}
	}
	if st := a.Status(); st.Scale != 1 || st.Ceiling != 1 {
		t.Fatalf("saturated: still lent room: %+v", st)
	}
	for i := range repair.DefaultThroughputWindows - 2 {
		if st := window(4000); st.Overloaded || st.Scale != 1 {
			t.Fatalf("window %d of the loss: overloaded before %d windows, or lent room: %+v", i, repair.DefaultThroughputWindows, st)
		}
	}
	last = 1
	st = window(4000)
	if !st.Overloaded || !slices.Equal(st.Reasons, []string{"throughput"}) || st.Scale != last/2 || st.DecreasesByReason["throughput"] != 1 {
		t.Fatalf("sustained loss of throughput: want a decrease to %v for throughput: %+v", last/2, st)
	}
	for range 200 {
		window(4000)
	}
	if st := a.Status(); st.Scale != repair.DefaultMinScale || scan.Status().BusyFraction != 0.25*repair.DefaultMinScale {
		t.Fatalf("permanent loss: scale %v (busy budget %v), want the floor %v", st.Scale, scan.Status().BusyFraction, repair.DefaultMinScale)
	}
	// The foreground stops in the middle of a judgement: the scale does
	// not hold, it climbs back.
	for range repair.DefaultThroughputWindows / 2 {
		window(4000)
	}
	for range 20 {
		window(0)
	}
	if st := a.Status(); st.Scale < 1 {
		t.Fatalf("scale %v a second after the foreground stopped", st.Scale)
	}
}

// TestAdmissionPebbleSignals: each Pebble signal on its own scales down
// (with its reason, counted), and the scale comes back when it clears.
func TestAdmissionPebbleSignals(t *testing.T) {
	clk := testclock.New(time.Unix(1_900_000_000, 0))
	scan, err := repair.NewThrottle("scan", repair.ThrottleConfig{BytesPerSec: 100 << 20, KeysPerSec: 1e6})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	ps := repair.PebbleSignals{}
	a, err := repair.NewAdmission(repair.AdmissionConfig{
		Throttles: []*repair.Throttle{scan},
		Clock:     clk,
		MinScale:  0.02,
		MaxScale:  1, // the configured rates are the ceiling
		Pebble:    func() repair.PebbleSignals { mu.Lock(); defer mu.Unlock(); return ps },
	})
	if err != nil {
		t.Fatal(err)
	}
	setPebble := func(p repair.PebbleSignals) { mu.Lock(); ps = p; mu.Unlock() }
	window := func(n int, d time.Duration) repair.AdmissionStatus {
		for range n {
			a.ObserveForeground(d)
		}
		if err := scan.Wait(context.Background(), 1, 100); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Second)
		return a.Evaluate()
	}
	approx := func(t *testing.T, what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9 {
			t.Fatalf("%s: scale %v, want %v", what, got, want)
		}
	}
	want := 1.0
	for _, c := range []struct {
		reason string
		set    func()
		reset  func()
	}{
		{"l0-sublevels", func() { setPebble(repair.PebbleSignals{L0Sublevels: 20}) }, func() { setPebble(repair.PebbleSignals{}) }},
		{"compaction-debt", func() { setPebble(repair.PebbleSignals{CompactionDebt: 8 << 30}) }, func() { setPebble(repair.PebbleSignals{}) }},
		{"write-stall", func() { a.EventListener().WriteStallBegin(pebble.WriteStallBeginInfo{Reason: "test"}) }, func() { a.EventListener().WriteStallEnd() }},
		{"disk-slow", func() { a.EventListener().DiskSlow(pebble.DiskSlowInfo{Duration: 10 * time.Second}) }, func() {}},
	} {
		c.set()
		st := window(1000, 100*time.Microsecond)
		want = max(want/2, 0.02)
		approx(t, c.reason, st.Scale, want)
		if !slices.Equal(st.Reasons, []string{c.reason}) || st.DecreasesByReason[c.reason] != 1 {
			t.Fatalf("%s: reasons %v, decreases by reason %v", c.reason, st.Reasons, st.DecreasesByReason)
		}
		c.reset()
		st = window(1000, 100*time.Microsecond)
		want = min(want+0.1, 1)
		approx(t, c.reason+" cleared", st.Scale, want)
		if st.Overloaded {
			t.Fatalf("%s cleared: still overloaded: %v", c.reason, st.Reasons)
		}
	}
	// Sustained overload bottoms out at MinScale; recovery is additive to 1.
	setPebble(repair.PebbleSignals{L0Sublevels: 50})
	for range 20 {
		window(0, 0)
	}
	approx(t, "floor", a.Status().Scale, 0.02)
	if !a.Signals().Overloaded {
		t.Fatal("scheduler signals not overloaded at the floor")
	}
	setPebble(repair.PebbleSignals{})
	steps := 0
	for a.Status().Scale < 1 {
		window(0, 0)
		steps++
	}
	if steps != 10 {
		t.Fatalf("recovered from the floor in %d windows, want 10 (additive +0.1)", steps)
	}
	if got := scan.Status().Scale; got != 1 {
		t.Fatalf("throttle scale %v after recovery", got)
	}
	// Too few samples say nothing about latency.
	for range 10 {
		if st := window(5, time.Second); st.Overloaded {
			t.Fatalf("5 samples judged: %+v", st)
		}
	}
}

func TestAdmissionAbsoluteTargetAndWriteRates(t *testing.T) {
	clk := testclock.New(time.Unix(1_900_000_000, 0))
	a, err := repair.NewAdmission(repair.AdmissionConfig{Clock: clk, LatencyTarget: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		a.ObserveForeground(500 * time.Microsecond)
	}
	clk.Advance(time.Second)
	if st := a.Evaluate(); st.Overloaded || st.P99 < 500*time.Microsecond || st.P99 > 700*time.Microsecond {
		t.Fatalf("under target: %+v", st)
	}
	// Every operation over the target: not on one slow window; an
	// overload on the second (the last LatencyWindows windows together are
	// over it; judged, they are judged again on new windows only), then
	// on every window once SustainWindows are in a row.
	for i := range repair.DefaultSustainWindows + 2 {
		for range 100 {
			a.ObserveForeground(2 * time.Millisecond)
		}
		clk.Advance(time.Second)
		if st := a.Evaluate(); st.Overloaded != (i == 1 || i >= repair.DefaultSustainWindows-1) {
			t.Fatalf("window %d over target: %+v", i, st)
		}
	}

	// Write rates come from the hook, on a real engine with Pebble metrics.
	e, err := engine.Open("db", &engine.Options{ReplicaID: "a", FS: vfs.NewMem(), CheckpointInterval: -1, Hooks: []hooks.Hook{a.Hook()}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	a.Attach(e)
	for i := range 500 {
		if err := e.Put(context.Background(), []byte{byte(i), byte(i >> 8)}, []byte("v"), engine.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(2 * time.Second)
	st := a.Evaluate()
	if st.WriteRate != 250 || a.WriteRate(0) != 250 || a.Signals().WriteRate(0) != 250 {
		t.Fatalf("write rate %v (partition 0: %v), want 250/s", st.WriteRate, a.WriteRate(0))
	}
}

// TestAdmissionSaturatedScale: while the foreground runs flat out
// (saturated), the ceiling is SaturatedScale (default 0.5): background work
// above the floor would come out of its throughput. Once the foreground
// slows to a paced load, the ceiling is 1 for LendWindows windows, then
// MaxScale again.
func TestAdmissionSaturatedScale(t *testing.T) {
	clk := testclock.New(time.Unix(1_900_000_000, 0))
	scan, err := repair.NewThrottle("scan", repair.ThrottleConfig{BytesPerSec: 100 << 20, BusyFraction: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	a, err := repair.NewAdmission(repair.AdmissionConfig{Throttles: []*repair.Throttle{scan}, Clock: clk, Pebble: func() repair.PebbleSignals { return repair.PebbleSignals{} }})
	if err != nil {
		t.Fatal(err)
	}
	// window feeds n operations of 5µs and evaluates one 50ms window:
	// 4500 fill 45% of it (saturated), 450 4.5% (paced).
	window := func(n int) repair.AdmissionStatus {
		for range n {
			a.ObserveForeground(5 * time.Microsecond)
		}
		clk.Advance(repair.DefaultAdmissionInterval)
		return a.Evaluate()
	}
	var st repair.AdmissionStatus
	for range 4 * repair.DefaultLendWindows {
		st = window(4500)
	}
	if !st.Saturated || st.Ceiling >= 1 || st.Ceiling != repair.DefaultSaturatedScale || st.Scale != repair.DefaultSaturatedScale || scan.Status().BusyFraction != 0.25*repair.DefaultSaturatedScale {
		t.Fatalf("flat out: ceiling %v, scale %v (busy budget %v), want %v: %+v", st.Ceiling, st.Scale, scan.Status().BusyFraction, repair.DefaultSaturatedScale, st)
	}
	lent := -1
	for i := range 100 {
		st = window(450)
		if st.Saturated {
			continue // the utilization is an average: it falls over a few windows
		}
		if st.Scale > 1 && lent < 0 {
			lent = i
		}
	}
	if lent < repair.DefaultLendWindows || st.Scale != repair.DefaultMaxScale {
		t.Fatalf("paced after flat out: lent from window %d, scale %v; want lending after %d windows, up to %v", lent, st.Scale, repair.DefaultLendWindows, repair.DefaultMaxScale)
	}
	if _, err := repair.NewAdmission(repair.AdmissionConfig{SaturatedScale: 2}); err == nil {
		t.Fatal("SaturatedScale 2 accepted, want an error")
	}
}
