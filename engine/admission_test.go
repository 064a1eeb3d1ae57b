package engine_test

import (
	"context"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/hooks"
	"github.com/pebble-ae/pebble-ae/reconcile"
)

// fakeLoopClock is a reconcile.Clock whose time the test sets.
type fakeLoopClock struct{ manualClock }

func (c *fakeLoopClock) After(time.Duration) <-chan time.Time { return make(chan time.Time) }

func TestAdmissionAIMD(t *testing.T) {
	clk := &fakeLoopClock{manualClock{now: time.Unix(1_900_000_000, 0)}}
	scan, err := reconcile.NewThrottle("scan", reconcile.ThrottleConfig{BytesPerSec: 100 << 20, KeysPerSec: 1e6})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	ps := engine.PebbleSignals{}
	a, err := engine.NewAdmission(engine.AdmissionConfig{
		Throttles: []*reconcile.Throttle{scan},
		Clock:     clk,
		Pebble:    func() engine.PebbleSignals { mu.Lock(); defer mu.Unlock(); return ps },
	})
	if err != nil {
		t.Fatal(err)
	}
	setPebble := func(p engine.PebbleSignals) { mu.Lock(); ps = p; mu.Unlock() }
	// busy makes the background work (take from the throttle) in the
	// windows that follow.
	busy := true
	// window feeds n foreground latencies of d and evaluates.
	window := func(n int, d time.Duration) engine.AdmissionStatus {
		for range n {
			a.ObserveForeground(d)
		}
		if busy {
			if err := scan.Wait(context.Background(), 1, 100); err != nil {
				t.Fatal(err)
			}
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
	// A calm baseline, 100µs p99, learned in quiet windows (the first
	// DefaultQuietWindows+1 after background work are not quiet yet).
	busy = false
	for i := range 10 {
		st := window(1000, 100*time.Microsecond)
		if st.Overloaded || st.Scale != 1 || st.Quiet != (i >= engine.DefaultQuietWindows) {
			t.Fatalf("calm window %d: %+v", i, st)
		}
	}
	busy = true
	if st := window(1000, 100*time.Microsecond); !st.BaselineQuiet || st.Baseline < 100*time.Microsecond || st.Baseline > 110*time.Microsecond {
		t.Fatalf("baseline not learned from the quiet windows: %+v", st)
	}
	// Background work; the foreground's tail grows by less than chance
	// allows (1.5% of samples at 2× the baseline), then by more (3%).
	for range 15 {
		a.ObserveForeground(200 * time.Microsecond)
	}
	if st := window(985, 100*time.Microsecond); st.Overloaded || st.OverTarget != 15 {
		t.Fatalf("window with an ordinary tail overloaded: %+v", st)
	}
	for range 30 {
		a.ObserveForeground(200 * time.Microsecond)
	}
	if st := window(970, 100*time.Microsecond); !st.Overloaded || st.OverTarget != 30 || st.Scale != 0.5 {
		t.Fatalf("window with 3%% of samples above target: %+v", st)
	}
	if st := window(1000, 100*time.Microsecond); st.Overloaded || math.Abs(st.Scale-0.6) > 1e-9 {
		t.Fatalf("calm window after overload: %+v", st)
	}
	for range 4 {
		window(1000, 100*time.Microsecond)
	}
	if st := a.Status(); math.Abs(st.Scale-1) > 1e-9 {
		t.Fatalf("scale %v after recovery", st.Scale)
	}
	window(1000, 100*time.Microsecond)
	// Foreground latency triples: halve, halve, halve.
	want := 1.0
	for i := range 3 {
		st := window(1000, 300*time.Microsecond)
		want /= 2
		approx(t, "latency", st.Scale, want)
		if !st.Overloaded || !slices.Contains(st.Reasons, "latency") {
			t.Fatalf("window %d: %+v", i, st)
		}
	}
	if got := scan.Status().BytesPerSec; math.Abs(got-float64(100<<20)*want) > 1 {
		t.Fatalf("throttle at %v bytes/s, want %v", got, float64(100<<20)*want)
	}
	// Latency recovers: back up by 0.1 per window.
	for range 2 {
		want += 0.1
		approx(t, "recovery", window(1000, 100*time.Microsecond).Scale, want)
	}
	// Each Pebble signal on its own scales down.
	for _, c := range []struct {
		reason string
		set    func()
		reset  func()
	}{
		{"l0-sublevels", func() { setPebble(engine.PebbleSignals{L0Sublevels: 20}) }, func() { setPebble(engine.PebbleSignals{}) }},
		{"compaction-debt", func() { setPebble(engine.PebbleSignals{CompactionDebt: 8 << 30}) }, func() { setPebble(engine.PebbleSignals{}) }},
		{"write-stall", func() { a.EventListener().WriteStallBegin(pebble.WriteStallBeginInfo{Reason: "test"}) }, func() { a.EventListener().WriteStallEnd() }},
		{"disk-slow", func() { a.EventListener().DiskSlow(pebble.DiskSlowInfo{Duration: 10 * time.Second}) }, func() {}},
	} {
		c.set()
		st := window(1000, 100*time.Microsecond)
		want = max(want/2, 0.02)
		approx(t, c.reason, st.Scale, want)
		if !slices.Equal(st.Reasons, []string{c.reason}) {
			t.Fatalf("%s: reasons %v", c.reason, st.Reasons)
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
	setPebble(engine.PebbleSignals{L0Sublevels: 50})
	for range 20 {
		window(0, 0)
	}
	approx(t, "floor", a.Status().Scale, 0.02)
	if !a.Signals().Overloaded {
		t.Fatal("scheduler signals not overloaded at the floor")
	}
	setPebble(engine.PebbleSignals{})
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
	if st := window(5, time.Second); st.Overloaded {
		t.Fatalf("5 samples judged: %+v", st)
	}
}

func TestAdmissionAbsoluteTargetAndWriteRates(t *testing.T) {
	clk := &fakeLoopClock{manualClock{now: time.Unix(1_900_000_000, 0)}}
	a, err := engine.NewAdmission(engine.AdmissionConfig{Clock: clk, LatencyTarget: time.Millisecond})
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
	for range 100 {
		a.ObserveForeground(2 * time.Millisecond)
	}
	clk.Advance(time.Second)
	if st := a.Evaluate(); !st.Overloaded {
		t.Fatalf("over target: %+v", st)
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
