package repair

import (
	"errors"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// fakeClock is a manually advanced clock.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time          { return c.now }
func (c *fakeClock) Advance(d time.Duration) { c.now = c.now.Add(d) }

var epoch = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

func targetsN(parts, peers int) []Target {
	var ts []Target
	for p := range parts {
		for q := range peers {
			ts = append(ts, Target{Partition: uint32(p), Peer: record.ReplicaID(string(rune('a' + q)))})
		}
	}
	return ts
}

func TestSchedulerJitterSpreadsSessions(t *testing.T) {
	clk := &fakeClock{now: epoch}
	cfg := SchedulerConfig{Interval: time.Minute, MaxConcurrent: 1000, Seed: 7}
	s, err := NewScheduler(cfg, targetsN(50, 4), clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Run ten simulated minutes in one-second ticks; sessions end at once.
	buckets := make([]int, 60)
	starts := map[Target][]time.Time{}
	for range 600 {
		clk.Advance(time.Second)
		for _, tg := range s.Due(clk.Now(), Signals{}) {
			buckets[clk.Now().Second()]++
			starts[tg] = append(starts[tg], clk.Now())
			s.Done(tg, clk.Now(), Outcome{}, Signals{})
		}
	}
	total := 0
	for _, b := range buckets {
		total += b
	}
	// 200 targets, about 10 sessions each: ~33 per second-of-minute.
	// Without jitter or staggering they would all fall into one or a few
	// buckets.
	for sec, b := range buckets {
		if b > total/60*3 {
			t.Errorf("second %d has %d of %d session starts: not spread", sec, b, total)
		}
	}
	// Each target's intervals vary (jitter) within [0.8, 1.2] minutes.
	for tg, ss := range starts {
		distinct := map[time.Duration]bool{}
		for i := 1; i < len(ss); i++ {
			d := ss[i].Sub(ss[i-1])
			if d < 48*time.Second || d > 73*time.Second {
				t.Fatalf("%s: interval %v outside the jittered range", tg, d)
			}
			distinct[d] = true
		}
		if len(ss) > 4 && len(distinct) < 2 {
			t.Errorf("%s: intervals not jittered: %v", tg, ss)
		}
	}
}

// nextInterval runs one session of the only target ending with o under sig
// and returns the time until its next session.
func nextInterval(t *testing.T, s *Scheduler, clk *fakeClock, o Outcome, sig Signals) time.Duration {
	t.Helper()
	for range 100000 {
		if due := s.Due(clk.Now(), sig); len(due) > 0 {
			s.Done(due[0], clk.Now(), o, sig)
			return s.NextDue().Sub(clk.Now())
		}
		clk.Advance(time.Second)
	}
	t.Fatal("target never came due")
	return 0
}

func TestSchedulerAdapts(t *testing.T) {
	const I = 100 * time.Second
	cfg := SchedulerConfig{Interval: I, MinInterval: 5 * time.Second, MaxInterval: 1000 * time.Second, HighWriteRate: 1000, Seed: 1}
	between := func(t *testing.T, what string, d, lo, hi time.Duration) {
		t.Helper()
		if d < lo || d > hi {
			t.Errorf("%s: interval %v not in [%v, %v]", what, d, lo, hi)
		}
	}
	tg := Target{Partition: 3, Peer: "b"}
	fresh := func(t *testing.T) (*Scheduler, *fakeClock) {
		clk := &fakeClock{now: epoch}
		s, err := NewScheduler(cfg, []Target{tg}, clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		return s, clk
	}
	idle := Signals{}
	t.Run("baseline", func(t *testing.T) {
		s, clk := fresh(t)
		between(t, "in sync", nextInterval(t, s, clk, Outcome{}, idle), 80*time.Second, 120*time.Second)
	})
	t.Run("shorter after divergence", func(t *testing.T) {
		s, clk := fresh(t)
		between(t, "diverged once", nextInterval(t, s, clk, Outcome{Diverged: true}, idle), 40*time.Second, 60*time.Second)
		between(t, "diverged twice", nextInterval(t, s, clk, Outcome{Diverged: true}, idle), 20*time.Second, 30*time.Second)
		// Clean sessions restore the base interval step by step.
		between(t, "clean once", nextInterval(t, s, clk, Outcome{}, idle), 40*time.Second, 60*time.Second)
		between(t, "clean twice", nextInterval(t, s, clk, Outcome{}, idle), 80*time.Second, 120*time.Second)
		between(t, "clean thrice", nextInterval(t, s, clk, Outcome{}, idle), 80*time.Second, 120*time.Second)
	})
	t.Run("shorter under high write rate", func(t *testing.T) {
		s, clk := fresh(t)
		hot := Signals{WriteRate: func(p uint32) float64 {
			if p == 3 {
				return 5000
			}
			return 0
		}}
		between(t, "hot", nextInterval(t, s, clk, Outcome{}, hot), 40*time.Second, 60*time.Second)
		cold := Signals{WriteRate: func(uint32) float64 { return 10 }}
		between(t, "cold", nextInterval(t, s, clk, Outcome{}, cold), 80*time.Second, 120*time.Second)
	})
	t.Run("longer under foreground load", func(t *testing.T) {
		s, clk := fresh(t)
		between(t, "loaded", nextInterval(t, s, clk, Outcome{}, Signals{Overloaded: true}), 320*time.Second, 480*time.Second)
		between(t, "unloaded", nextInterval(t, s, clk, Outcome{}, idle), 80*time.Second, 120*time.Second)
	})
	t.Run("backoff on failures, prompt after recovery", func(t *testing.T) {
		s, clk := fresh(t)
		fail := Outcome{Err: errors.New("peer down")}
		between(t, "1 failure", nextInterval(t, s, clk, fail, idle), 160*time.Second, 240*time.Second)
		between(t, "2 failures", nextInterval(t, s, clk, fail, idle), 320*time.Second, 480*time.Second)
		between(t, "recovered", nextInterval(t, s, clk, Outcome{}, idle), 5*time.Second, 6*time.Second)
		between(t, "after recovery", nextInterval(t, s, clk, Outcome{}, idle), 80*time.Second, 120*time.Second)
	})
	t.Run("bounds", func(t *testing.T) {
		s, clk := fresh(t)
		for range 20 {
			nextInterval(t, s, clk, Outcome{Err: errors.New("down")}, Signals{Overloaded: true})
		}
		between(t, "max", nextInterval(t, s, clk, Outcome{Err: errors.New("down")}, idle), 800*time.Second, 1000*time.Second)
	})
}

func TestSchedulerRecoveryPromptsEveryPartitionOfThePeer(t *testing.T) {
	clk := &fakeClock{now: epoch}
	s, err := NewScheduler(SchedulerConfig{Interval: time.Minute, MaxConcurrent: 100, Seed: 3}, targetsN(4, 2), clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Every session with peer "a" fails for a while.
	for range 600 {
		clk.Advance(time.Second)
		for _, tg := range s.Due(clk.Now(), Signals{}) {
			var o Outcome
			if tg.Peer == "a" {
				o.Err = errors.New("down")
			}
			s.Done(tg, clk.Now(), o, Signals{})
		}
	}
	// The first success with "a" brings every partition of "a" forward.
	for {
		clk.Advance(time.Second)
		due := s.Due(clk.Now(), Signals{})
		found := false
		for _, tg := range due {
			s.Done(tg, clk.Now(), Outcome{}, Signals{})
			found = found || tg.Peer == "a"
		}
		if found {
			break
		}
	}
	for _, st := range s.States(Signals{}) {
		if st.Peer == "a" && (st.ConsecutiveFailures != 0 || st.Next.Sub(clk.Now()) > 5*time.Second) {
			t.Errorf("%s: failures %d, next in %v after the peer recovered", st.Target, st.ConsecutiveFailures, st.Next.Sub(clk.Now()))
		}
	}
}

func TestSchedulerNoOverlapBoundedConcurrency(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	clk := &fakeClock{now: epoch}
	const maxConc = 3
	s, err := NewScheduler(SchedulerConfig{Interval: 10 * time.Second, MaxConcurrent: maxConc, Seed: seed}, targetsN(6, 3), clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	type running struct {
		t   Target
		end time.Time
	}
	var live []running
	active := map[Target]bool{}
	started := 0
	for range 20000 {
		clk.Advance(100 * time.Millisecond)
		// End sessions whose time is up.
		sort.Slice(live, func(i, j int) bool { return live[i].end.Before(live[j].end) })
		for len(live) > 0 && !clk.Now().Before(live[0].end) {
			r := live[0]
			live = live[1:]
			delete(active, r.t)
			s.Done(r.t, clk.Now(), Outcome{Diverged: rng.IntN(3) == 0}, Signals{})
		}
		for _, tg := range s.Due(clk.Now(), Signals{}) {
			if active[tg] {
				t.Fatalf("%s started while its previous session runs", tg)
			}
			active[tg] = true
			started++
			// Some sessions outlast several intervals.
			d := time.Duration(rng.ExpFloat64() * float64(3*time.Second))
			live = append(live, running{tg, clk.Now().Add(d)})
		}
		if len(live) > maxConc || s.Running() != len(live) {
			t.Fatalf("%d sessions running (scheduler says %d), bound %d", len(live), s.Running(), maxConc)
		}
	}
	if started < 100 {
		t.Fatalf("only %d sessions started", started)
	}
	if s.SkippedTicks() == 0 {
		t.Errorf("no tick was skipped although sessions outlasted intervals")
	}
}

func TestSchedulerWindows(t *testing.T) {
	night := Window{Start: 22 * time.Hour, End: 6 * time.Hour}
	s, err := NewScheduler(SchedulerConfig{Windows: []Window{night, {Start: 13 * time.Hour, End: 14 * time.Hour}}}, nil, epoch)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		h, m int
		want bool
	}{{23, 0, true}, {2, 0, true}, {6, 0, false}, {12, 0, false}, {13, 30, true}, {21, 59, false}} {
		at := time.Date(2030, 1, 1, c.h, c.m, 0, 0, time.UTC)
		if got := s.LargeAllowed(at); got != c.want {
			t.Errorf("%02d:%02d: allowed %t, want %t", c.h, c.m, got, c.want)
		}
	}
}

func TestSchedulerConfigValidation(t *testing.T) {
	for _, c := range []SchedulerConfig{
		{Interval: -1},
		{Interval: time.Second, MinInterval: 2 * time.Second},
		{Jitter: 2},
		{MaxConcurrent: -1},
		{LoadFactor: 0.5},
	} {
		if _, err := NewScheduler(c, nil, epoch); !errors.Is(err, ErrInvalidSchedule) {
			t.Errorf("%+v: err %v, want ErrInvalidSchedule", c, err)
		}
	}
	if _, err := NewScheduler(SchedulerConfig{}, []Target{{0, "a"}, {0, "a"}}, epoch); !errors.Is(err, ErrInvalidSchedule) {
		t.Errorf("duplicate target: err %v", err)
	}
}
