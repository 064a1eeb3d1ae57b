package repair

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// Clock is the time source of the repair loop. Like PhysicalClock it tells
// the time; it also makes timers, so tests drive the loop with a fake clock.
// Implementations must be safe for concurrent use.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives the time once d has elapsed.
	After(d time.Duration) <-chan time.Time
}

// ErrInvalidSchedule reports an unusable SchedulerConfig or LoopConfig.
var ErrInvalidSchedule = errors.New("repair: invalid schedule configuration")

// Target is what the scheduler schedules: one partition with one peer.
type Target struct {
	Partition uint32
	Peer      record.ReplicaID
}

// String formats t for logs.
func (t Target) String() string { return fmt.Sprintf("%d/%s", t.Partition, t.Peer) }

// Window is a daily time window [Start, End) as offsets from midnight in the
// clock's location. End < Start wraps over midnight (22:00 to 06:00).
type Window struct {
	Start, End time.Duration
}

// Contains reports whether the time of day of t falls in w.
func (w Window) Contains(t time.Time) bool {
	y, m, d := t.Date()
	off := t.Sub(time.Date(y, m, d, 0, 0, 0, 0, t.Location()))
	if w.Start <= w.End {
		return off >= w.Start && off < w.End
	}
	return off >= w.Start || off < w.End
}

// SchedulerConfig configures a Scheduler. Intervals are the time from the end
// of one session of a target to the start of its next; a session that runs
// longer than an interval makes the scheduler skip ticks.
type SchedulerConfig struct {
	// Interval is the base interval between two sessions of one target
	// (default 1 minute).
	Interval time.Duration
	// MinInterval and MaxInterval bound every interval, jitter included
	// (defaults Interval/16 and Interval*16).
	MinInterval, MaxInterval time.Duration
	// Jitter is the relative spread of every interval: an interval I
	// becomes uniform in [I*(1-Jitter), I*(1+Jitter)] (default 0.2; at
	// most 0.9). The first session of each target is uniform in
	// [0, Interval), so targets are staggered from the start.
	Jitter float64
	// DivergedFactor multiplies a target's interval after a session that
	// found differences (default 0.5); a clean session restores it by
	// the inverse factor, up to Interval.
	DivergedFactor float64
	// HighWriteRate is the write rate (writes/s to the partition) above
	// which intervals are multiplied by WriteFactor (default 0: never).
	HighWriteRate float64
	// WriteFactor (default 0.5).
	WriteFactor float64
	// LoadFactor multiplies intervals while the node is under foreground
	// load (default 4).
	LoadFactor float64
	// RecoveredInterval is the interval of every target of a peer right
	// after a session with it succeeds following failures (default
	// MinInterval).
	RecoveredInterval time.Duration
	// MaxConcurrent bounds the sessions running at once on this node
	// (default 4).
	MaxConcurrent int
	// Windows, if any, are the allowed time windows for large repairs (see
	// Scheduler.LargeAllowed).
	Windows []Window
	// Seed seeds the jitter (0: random).
	Seed uint64
}

// Defaults of SchedulerConfig.
const (
	DefaultRepairInterval  = time.Minute
	DefaultJitter          = 0.2
	DefaultDivergedFactor  = 0.5
	DefaultWriteFactor     = 0.5
	DefaultLoadFactor      = 4
	DefaultMaxConcurrent   = 4
	maxFailureBackoffShift = 16
)

// EnsureDefaults returns a copy of c with zero fields set to defaults.
func (c SchedulerConfig) EnsureDefaults() SchedulerConfig {
	if c.Interval == 0 {
		c.Interval = DefaultRepairInterval
	}
	if c.MinInterval == 0 {
		c.MinInterval = c.Interval / 16
	}
	if c.MaxInterval == 0 {
		c.MaxInterval = c.Interval * 16
	}
	if c.Jitter == 0 {
		c.Jitter = DefaultJitter
	}
	if c.DivergedFactor == 0 {
		c.DivergedFactor = DefaultDivergedFactor
	}
	if c.WriteFactor == 0 {
		c.WriteFactor = DefaultWriteFactor
	}
	if c.LoadFactor == 0 {
		c.LoadFactor = DefaultLoadFactor
	}
	if c.RecoveredInterval == 0 {
		c.RecoveredInterval = c.MinInterval
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = DefaultMaxConcurrent
	}
	return c
}

// Validate reports whether c (after EnsureDefaults) is usable.
func (c SchedulerConfig) Validate() error {
	switch {
	case c.Interval <= 0 || c.MinInterval <= 0 || c.MinInterval > c.Interval || c.MaxInterval < c.Interval:
		return fmt.Errorf("%w: intervals min %v <= base %v <= max %v must be positive", ErrInvalidSchedule, c.MinInterval, c.Interval, c.MaxInterval)
	case c.Jitter < 0 || c.Jitter > 0.9:
		return fmt.Errorf("%w: jitter %v out of [0, 0.9]", ErrInvalidSchedule, c.Jitter)
	case c.DivergedFactor <= 0 || c.DivergedFactor > 1 || c.WriteFactor <= 0 || c.WriteFactor > 1:
		return fmt.Errorf("%w: diverged and write factors must be in (0, 1]", ErrInvalidSchedule)
	case c.LoadFactor < 1:
		return fmt.Errorf("%w: load factor %v < 1", ErrInvalidSchedule, c.LoadFactor)
	case c.MaxConcurrent < 1:
		return fmt.Errorf("%w: max concurrent %d < 1", ErrInvalidSchedule, c.MaxConcurrent)
	case c.RecoveredInterval < 0:
		return fmt.Errorf("%w: negative recovered interval", ErrInvalidSchedule)
	}
	return nil
}

// Signals are the node's state the scheduler adapts to.
type Signals struct {
	// Overloaded: foreground traffic suffers (see Admission).
	Overloaded bool
	// WriteRate returns the recent write rate to a partition in writes/s;
	// nil means unknown (0).
	WriteRate func(partition uint32) float64
}

// Outcome is what a session of a target came to.
type Outcome struct {
	// Err is the session's error (nil: success).
	Err error
	// Skipped: the session did not run (a side not ready, a large repair
	// outside the allowed windows); neither a failure nor a success.
	Skipped bool
	// Diverged: the session found and repaired differences.
	Diverged bool
}

// TargetState is the scheduler's view of one target, for Status.
type TargetState struct {
	Target
	Running             bool
	Next                time.Time
	Interval            time.Duration
	ConsecutiveFailures int
	LastOutcome         string
}

type targetState struct {
	t        Target
	running  bool
	next     time.Time
	factor   float64 // adaptive factor from divergence, 1 = base interval
	failures int
	last     string
}

// Scheduler decides when each (partition, peer) target gets a session. It is
// a pure state machine: time comes in as arguments, it starts nothing and
// reads no clock. The loop asks Due for the targets to start, and reports
// each session's end with Done.
//
// Guarantees: a target is never returned by Due while its previous session
// runs (its tick is skipped, not queued); at most MaxConcurrent targets run
// at once; due targets start earliest-due first.
//
// A Scheduler is not safe for concurrent use.
type Scheduler struct {
	cfg     SchedulerConfig
	rng     *rand.Rand
	targets []*targetState
	byKey   map[Target]*targetState
	running int
	// skipped counts ticks skipped because the session still ran.
	skipped uint64
}

// NewScheduler returns a scheduler for targets, starting at now: each
// target's first session is spread uniformly over [now, now+Interval).
func NewScheduler(cfg SchedulerConfig, targets []Target, now time.Time) (*Scheduler, error) {
	cfg = cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s := &Scheduler{cfg: cfg, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), byKey: make(map[Target]*targetState)}
	for _, t := range targets {
		if _, dup := s.byKey[t]; dup {
			return nil, fmt.Errorf("%w: duplicate target %s", ErrInvalidSchedule, t)
		}
		ts := &targetState{t: t, factor: 1, next: now.Add(time.Duration(s.rng.Int64N(int64(cfg.Interval))))}
		s.targets = append(s.targets, ts)
		s.byKey[t] = ts
	}
	return s, nil
}

// Config returns the scheduler's configuration with defaults.
func (s *Scheduler) Config() SchedulerConfig { return s.cfg }

// Running returns the number of sessions running.
func (s *Scheduler) Running() int { return s.running }

// SkippedTicks returns how many times a target came due while its previous
// session still ran.
func (s *Scheduler) SkippedTicks() uint64 { return s.skipped }

// LargeAllowed reports whether large repairs may run at now: always if no
// windows are configured, else inside any window.
func (s *Scheduler) LargeAllowed(now time.Time) bool {
	if len(s.cfg.Windows) == 0 {
		return true
	}
	for _, w := range s.cfg.Windows {
		if w.Contains(now) {
			return true
		}
	}
	return false
}

// Due returns the targets whose sessions start now, earliest-due first, and
// marks them running. Targets due while running are skipped: their next
// session is rescheduled one interval later.
func (s *Scheduler) Due(now time.Time, sig Signals) []Target {
	var due []*targetState
	for _, ts := range s.targets {
		if now.Before(ts.next) {
			continue
		}
		if ts.running {
			// The previous session still runs: skip this tick.
			s.skipped++
			ts.next = now.Add(s.interval(ts, sig))
			continue
		}
		due = append(due, ts)
	}
	sort.SliceStable(due, func(i, j int) bool { return due[i].next.Before(due[j].next) })
	var out []Target
	for _, ts := range due {
		if s.running >= s.cfg.MaxConcurrent {
			break // the rest stay due and start when a slot frees
		}
		ts.running = true
		s.running++
		// The next tick, should the session outlast it, is skipped.
		ts.next = now.Add(s.interval(ts, sig))
		out = append(out, ts.t)
	}
	return out
}

// Done reports the end of t's session at now and schedules its next one.
func (s *Scheduler) Done(t Target, now time.Time, o Outcome, sig Signals) {
	ts := s.byKey[t]
	if ts == nil || !ts.running {
		return
	}
	ts.running = false
	s.running--
	switch {
	case o.Skipped:
		ts.last = "skipped"
	case o.Err != nil:
		ts.failures++
		ts.last = "failed"
	default:
		recovered := ts.failures > 0
		for _, other := range s.targets {
			if other.t.Peer != t.Peer || other.failures == 0 {
				continue
			}
			recovered = true
			other.failures = 0
			// A peer that just came back gets prompt sessions of every
			// partition: it probably missed writes.
			if !other.running {
				other.next = now.Add(s.jitter(s.cfg.RecoveredInterval))
			}
		}
		ts.failures = 0
		if o.Diverged {
			ts.factor = max(ts.factor*s.cfg.DivergedFactor, float64(s.cfg.MinInterval)/float64(s.cfg.Interval))
			ts.last = "repaired"
		} else {
			ts.factor = min(ts.factor/s.cfg.DivergedFactor, 1)
			ts.last = "in-sync"
		}
		if recovered {
			ts.next = now.Add(s.jitter(s.cfg.RecoveredInterval))
			return
		}
	}
	ts.next = now.Add(s.interval(ts, sig))
}

// interval is the next interval of ts, jittered and clamped.
func (s *Scheduler) interval(ts *targetState, sig Signals) time.Duration {
	return s.jitter(s.baseInterval(ts, sig))
}

// baseInterval is the adaptive interval before jitter: the base interval
// scaled by divergence, write rate, load and failure backoff.
func (s *Scheduler) baseInterval(ts *targetState, sig Signals) time.Duration {
	f := ts.factor
	if s.cfg.HighWriteRate > 0 && sig.WriteRate != nil && sig.WriteRate(ts.t.Partition) >= s.cfg.HighWriteRate {
		f *= s.cfg.WriteFactor
	}
	if sig.Overloaded {
		f *= s.cfg.LoadFactor
	}
	if ts.failures > 0 {
		f *= math.Ldexp(1, min(ts.failures, maxFailureBackoffShift))
	}
	d := time.Duration(float64(s.cfg.Interval) * f)
	return min(max(d, s.cfg.MinInterval), s.cfg.MaxInterval)
}

func (s *Scheduler) jitter(d time.Duration) time.Duration {
	if s.cfg.Jitter > 0 {
		d = time.Duration(float64(d) * (1 + s.cfg.Jitter*(2*s.rng.Float64()-1)))
	}
	return min(max(d, s.cfg.MinInterval), s.cfg.MaxInterval)
}

// NextDue returns the earliest time a target not running comes due, or the
// zero time if every target is running.
func (s *Scheduler) NextDue() time.Time {
	var next time.Time
	for _, ts := range s.targets {
		if ts.running {
			continue
		}
		if next.IsZero() || ts.next.Before(next) {
			next = ts.next
		}
	}
	return next
}

// States returns the state of every target.
func (s *Scheduler) States(sig Signals) []TargetState {
	out := make([]TargetState, len(s.targets))
	for i, ts := range s.targets {
		out[i] = TargetState{Target: ts.t, Running: ts.running, Next: ts.next, Interval: s.baseInterval(ts, sig), ConsecutiveFailures: ts.failures, LastOutcome: ts.last}
	}
	return out
}
