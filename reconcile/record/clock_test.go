package record_test

import (
	"math"
	"sync"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// manualClock is a PhysicalClock that returns a settable time.
type manualClock struct {
	mu sync.Mutex
	ns int64
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Unix(0, c.ns)
}

func (c *manualClock) set(ns int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ns = ns
}

func ts(wall int64, logical uint32) record.Timestamp {
	return record.Timestamp{WallTime: wall, Logical: logical}
}

func TestTimestampCompare(t *testing.T) {
	for _, tc := range []struct {
		a, b record.Timestamp
		want int
	}{
		{ts(0, 0), ts(0, 0), 0},
		{ts(1, 0), ts(0, 0), 1},
		{ts(0, 1), ts(0, 0), 1},
		{ts(1, 0), ts(0, math.MaxUint32), 1},
		{ts(5, 2), ts(5, 3), -1},
		{ts(5, 3), ts(5, 3), 0},
		{ts(-1, 0), ts(0, 0), -1},
		{ts(math.MaxInt64, 0), ts(math.MaxInt64-1, math.MaxUint32), 1},
	} {
		if got := tc.a.Compare(tc.b); got != tc.want {
			t.Errorf("%v.Compare(%v) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := tc.b.Compare(tc.a); got != -tc.want {
			t.Errorf("%v.Compare(%v) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestTimestampStringAndIsZero(t *testing.T) {
	for _, tc := range []struct {
		t    record.Timestamp
		want string
		zero bool
	}{
		{ts(0, 0), "0.000000000,0", true},
		{ts(1700000000_000000042, 3), "1700000000.000000042,3", false},
		{ts(0, 1), "0.000000000,1", false},
		{ts(-5, 1), "-5ns,1", false},
	} {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
		if got := tc.t.IsZero(); got != tc.zero {
			t.Errorf("%v.IsZero() = %t, want %t", tc.t, got, tc.zero)
		}
	}
}

func TestHLCNow(t *testing.T) {
	// Each step sets the physical clock and calls Now.
	steps := []struct {
		phys int64
		want record.Timestamp
	}{
		{100, ts(100, 0)},
		{100, ts(100, 1)}, // clock stalls: logical ticks
		{100, ts(100, 2)},
		{200, ts(200, 0)}, // clock advances: logical resets
		{150, ts(200, 1)}, // clock goes backwards: stay ahead
		{50, ts(200, 2)},
		{201, ts(201, 0)},
		{-10, ts(201, 1)}, // before 1970: clamped
	}
	clock := &manualClock{}
	hlc := record.NewHLC(clock)
	for i, s := range steps {
		clock.set(s.phys)
		if got := hlc.Now(); got != s.want {
			t.Fatalf("step %d (phys %d): Now() = %v, want %v", i, s.phys, got, s.want)
		}
	}
}

func TestHLCNowLogicalOverflow(t *testing.T) {
	clock := &manualClock{ns: 1000}
	hlc := record.NewHLC(clock)
	hlc.Update(ts(1000, math.MaxUint32))
	if got, want := hlc.Now(), ts(1001, 0); got != want {
		t.Fatalf("Now() after logical overflow = %v, want %v", got, want)
	}
	if got, want := hlc.Now(), ts(1001, 1); got != want {
		t.Fatalf("Now() = %v, want %v", got, want)
	}
}

func TestHLCNext(t *testing.T) {
	// Each step sets the physical clock and calls Now or Next: Next never
	// reads the clock, yet interleaved with Now every timestamp is
	// strictly greater than the one before.
	steps := []struct {
		phys int64
		next bool
		want record.Timestamp
	}{
		{100, false, ts(100, 0)},
		{500, true, ts(100, 1)}, // Next ignores the clock's advance
		{500, true, ts(100, 2)},
		{500, false, ts(500, 0)}, // Now picks it up
		{400, true, ts(500, 1)},
		{400, false, ts(500, 2)},
	}
	clock := &manualClock{}
	hlc := record.NewHLC(clock)
	for i, s := range steps {
		clock.set(s.phys)
		got := hlc.Now
		if s.next {
			got = hlc.Next
		}
		if got := got(); got != s.want {
			t.Fatalf("step %d (phys %d, next %t) = %v, want %v", i, s.phys, s.next, got, s.want)
		}
	}
	// Next after an adopted remote timestamp exceeds it; a logical overflow
	// advances the wall time.
	hlc.Update(ts(600, math.MaxUint32))
	if got, want := hlc.Next(), ts(601, 0); got != want {
		t.Fatalf("Next() after logical overflow = %v, want %v", got, want)
	}
}

func TestHLCNowSaturates(t *testing.T) {
	clock := &manualClock{ns: 1000}
	hlc := record.NewHLCWithMaxOffset(clock, 0) // no offset limit
	maxTS := ts(math.MaxInt64, math.MaxUint32)
	hlc.Update(maxTS)
	for range 3 {
		if got := hlc.Now(); got != maxTS {
			t.Fatalf("Now() at saturation = %v, want %v", got, maxTS)
		}
		if got := hlc.Next(); got != maxTS {
			t.Fatalf("Next() at saturation = %v, want %v", got, maxTS)
		}
	}
}

func TestHLCUpdate(t *testing.T) {
	const phys = int64(10 * time.Second)
	const offset = 500 * time.Millisecond
	for _, tc := range []struct {
		name      string
		maxOffset time.Duration
		remote    record.Timestamp
		// wantNext is what Now returns right after Update.
		wantNext record.Timestamp
	}{
		{"behind", offset, ts(phys-1, 7), ts(phys, 0)},
		{"equal wall, logical ahead", offset, ts(phys, 7), ts(phys, 8)},
		{"ahead within offset", offset, ts(phys+int64(time.Millisecond), 3), ts(phys+int64(time.Millisecond), 4)},
		{"exactly at offset", offset, ts(phys+int64(offset), 0), ts(phys+int64(offset), 1)},
		{"beyond offset ignored", offset, ts(phys+int64(offset)+1, 0), ts(phys, 0)},
		{"far future ignored", offset, ts(math.MaxInt64, math.MaxUint32), ts(phys, 0)},
		{"negative ignored", offset, ts(-1, 5), ts(phys, 0)},
		{"min int64 ignored", offset, ts(math.MinInt64, 0), ts(phys, 0)},
		{"no limit adopts far future", 0, ts(phys+int64(time.Hour), 2), ts(phys+int64(time.Hour), 3)},
		{"negative limit adopts far future", -1, ts(phys+int64(time.Hour), 2), ts(phys+int64(time.Hour), 3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &manualClock{ns: phys}
			hlc := record.NewHLCWithMaxOffset(clock, tc.maxOffset)
			if got := hlc.MaxOffset(); got != tc.maxOffset {
				t.Fatalf("MaxOffset() = %v, want %v", got, tc.maxOffset)
			}
			hlc.Update(tc.remote)
			got := hlc.Now()
			if got != tc.wantNext {
				t.Fatalf("Now() after Update(%v) = %v, want %v", tc.remote, got, tc.wantNext)
			}
			if got.WallTime < phys {
				t.Fatalf("Now() = %v is behind physical time %d", got, phys)
			}
		})
	}
}

func TestHLCUpdateThenNowExceedsRemote(t *testing.T) {
	clock := &manualClock{ns: 1000}
	hlc := record.NewHLC(clock)
	prev := hlc.Now()
	for i, remote := range []record.Timestamp{ts(1000, 5), ts(900, 99), ts(1500, 0), ts(1500, 0), ts(1499, math.MaxUint32)} {
		hlc.Update(remote)
		got := hlc.Now()
		if got.Compare(remote) <= 0 {
			t.Fatalf("step %d: Now() = %v not after remote %v", i, got, remote)
		}
		if got.Compare(prev) <= 0 {
			t.Fatalf("step %d: Now() = %v not after previous %v", i, got, prev)
		}
		prev = got
	}
}

func TestNewHLCDefaults(t *testing.T) {
	hlc := record.NewHLC(nil) // SystemClock
	if got := hlc.MaxOffset(); got != record.DefaultMaxClockOffset {
		t.Fatalf("MaxOffset() = %v, want %v", got, record.DefaultMaxClockOffset)
	}
	before := time.Now().UnixNano()
	got := hlc.Now()
	if got.WallTime < before {
		t.Fatalf("Now() = %v behind the system clock (%d)", got, before)
	}
}

func TestHLCConcurrent(t *testing.T) {
	clock := &manualClock{ns: 1} // stalled clock: all uniqueness comes from the HLC
	hlc := record.NewHLC(clock)
	const goroutines, perGoroutine = 8, 2000
	results := make([][]record.Timestamp, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			out := make([]record.Timestamp, perGoroutine)
			for i := range out {
				if i%100 == 0 {
					hlc.Update(ts(1, uint32(g*i)))
				}
				if i%3 == 0 {
					out[i] = hlc.Next()
				} else {
					out[i] = hlc.Now()
				}
			}
			results[g] = out
		})
	}
	wg.Wait()
	seen := make(map[record.Timestamp]bool, goroutines*perGoroutine)
	for g, out := range results {
		for i, got := range out {
			if i > 0 && got.Compare(out[i-1]) <= 0 {
				t.Fatalf("goroutine %d: Now() = %v after %v", g, got, out[i-1])
			}
			if seen[got] {
				t.Fatalf("timestamp %v issued twice", got)
			}
			seen[got] = true
		}
	}
}
