package engine

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pebble-ae/pebble-ae/hooks"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile"
)

// PebbleSignals are the figures of Pebble's state that admission control
// reads (from pebble.DB.Metrics in production; tests inject them).
type PebbleSignals struct {
	// L0Sublevels is the number of L0 sublevels (read amplification of
	// L0); Pebble slows writes down past L0StopWritesThreshold.
	L0Sublevels int
	// CompactionDebt is Pebble's estimate of the bytes compactions must
	// write to reach a stable LSM shape.
	CompactionDebt uint64
}

// AdmissionConfig configures admission control. Zero fields take defaults.
type AdmissionConfig struct {
	// Throttles are the background throttles to scale (scans, rebuilds,
	// repair writes).
	Throttles []*reconcile.Throttle
	// Interval is how often Run evaluates the signals (default 50ms: the
	// controller reacts within tens of milliseconds).
	Interval time.Duration
	// MaxL0Sublevels: more L0 sublevels than this is overload (default 8).
	MaxL0Sublevels int
	// MaxCompactionDebt: more debt than this is overload (default 1 GiB).
	MaxCompactionDebt uint64
	// LatencyTarget: the foreground's p99 should stay below it. Zero means
	// relative: below LatencyFactor times the baseline p99, the p99 of the
	// foreground latencies of quiet windows (see QuietWindows), decayed so
	// that the last BaselineWindows quiet windows weigh most; until there
	// is one, the baseline is the lowest window p99 of the last
	// BaselineWindows windows and LatencySlack is added to the target.
	//
	// A window is overloaded on latency when more than TailBudget of its
	// samples exceed the target, by more than chance allows (two standard
	// deviations of the count expected at TailBudget): the controller
	// keeps the foreground's p99 under the target, and a window of a few
	// hundred samples is judged on all of them rather than on its noisy
	// own p99.
	LatencyTarget time.Duration
	// LatencyFactor (default 1.1) and LatencySlack (default 50µs, only
	// before the first quiet baseline).
	LatencyFactor float64
	LatencySlack  time.Duration
	// TailBudget is the fraction of samples allowed above the target
	// (default 0.01: the p99).
	TailBudget float64
	// BaselineWindows (default 40).
	BaselineWindows int
	// QuietWindows: a window is quiet, and teaches the baseline, when none
	// of the Throttles took anything (bytes, keys, busy time) in it nor in
	// the QuietWindows windows before it (default 4: the flushes and
	// compactions that background writes leave behind settle first).
	QuietWindows int
	// MinSamples: windows with fewer foreground samples say nothing about
	// latency (default 20).
	MinSamples int
	// Decrease multiplies the scale on overload (default 0.5); Increase is
	// added to it when everything is fine (default 0.1); MinScale bounds it
	// below (default 0.02).
	Decrease, Increase, MinScale float64
	// Partitioner maps written keys to partitions for the write rates
	// (default: one partition). Use the engine's.
	Partitioner merkle.Partitioner
	// Clock (default system clock).
	Clock reconcile.Clock
	// Pebble returns Pebble's signals; default: none until Attach.
	Pebble func() PebbleSignals
	// Logger (default: discard).
	Logger *slog.Logger
}

// Defaults of AdmissionConfig.
const (
	DefaultAdmissionInterval = 50 * time.Millisecond
	DefaultMaxL0Sublevels    = 8
	DefaultMaxCompactionDebt = 1 << 30
	DefaultLatencyFactor     = 1.1
	DefaultLatencySlack      = 50 * time.Microsecond
	DefaultTailBudget        = 0.01
	DefaultBaselineWindows   = 40
	DefaultQuietWindows      = 4
	DefaultMinSamples        = 20
)

func (c *AdmissionConfig) ensureDefaults() {
	if c.Interval == 0 {
		c.Interval = DefaultAdmissionInterval
	}
	if c.MaxL0Sublevels == 0 {
		c.MaxL0Sublevels = DefaultMaxL0Sublevels
	}
	if c.MaxCompactionDebt == 0 {
		c.MaxCompactionDebt = DefaultMaxCompactionDebt
	}
	if c.LatencyFactor == 0 {
		c.LatencyFactor = DefaultLatencyFactor
	}
	if c.LatencySlack == 0 {
		c.LatencySlack = DefaultLatencySlack
	}
	if c.BaselineWindows == 0 {
		c.BaselineWindows = DefaultBaselineWindows
	}
	if c.TailBudget == 0 {
		c.TailBudget = DefaultTailBudget
	}
	if c.QuietWindows == 0 {
		c.QuietWindows = DefaultQuietWindows
	}
	if c.MinSamples == 0 {
		c.MinSamples = DefaultMinSamples
	}
	if c.Decrease == 0 {
		c.Decrease = 0.5
	}
	if c.Increase == 0 {
		c.Increase = 0.1
	}
	if c.MinScale == 0 {
		c.MinScale = 0.02
	}
	if c.Partitioner == nil {
		c.Partitioner = merkle.SinglePartition()
	}
	if c.Clock == nil {
		c.Clock = reconcile.SystemClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// AdmissionStatus is admission control's state after its last evaluation.
type AdmissionStatus struct {
	// Scale is the fraction of the configured background rates in force.
	Scale float64
	// Overloaded: the last window showed foreground suffering; Reasons say
	// why ("l0-sublevels", "compaction-debt", "write-stall", "disk-slow",
	// "latency").
	Overloaded bool
	Reasons    []string
	// P99 is the last window's foreground p99 (0: too few samples);
	// Baseline the relative target's baseline, Target the latency target
	// in force; Samples the window's count and OverTarget how many of them
	// exceeded Target.
	P99, Baseline, Target time.Duration
	Samples, OverTarget   uint64
	// Quiet: the background throttles were idle in this window and the
	// ones before it, so the window taught the baseline; BaselineQuiet:
	// the baseline comes from quiet windows (else from the rolling
	// minimum).
	Quiet, BaselineQuiet bool
	// The Pebble figures of the last window.
	L0Sublevels    int
	CompactionDebt uint64
	WriteStalled   bool
	// Counters since creation.
	WriteStalls, DiskSlowEvents, Evaluations, Decreases uint64
	// WriteRate is the node's write rate (writes/s) in the last window.
	WriteRate float64
}

// latencyBuckets: 8 buckets per power of two of nanoseconds (~9% wide).
const (
	latencySubBuckets = 8
	latencySubBits    = 3
	latencyBuckets    = 64 * latencySubBuckets
)

// Admission is admission control for background work: it watches Pebble
// (L0 sublevels, compaction debt, write stalls, slow disk operations) and
// foreground latency (a per-window histogram of Put/Get durations), and
// scales the background throttles down multiplicatively (by Decrease) while
// any signal shows the foreground suffering, and back up additively (by
// Increase) when none does (AIMD, like TCP congestion control).
//
// The latency signal compares each window's tail with what the same
// foreground did while the background was idle: windows in which none of
// the Throttles took anything (and the few before them) teach a decayed
// latency histogram whose p99, times LatencyFactor, is the target; a window
// is overloaded when significantly more than TailBudget of its samples
// exceed it. The baseline thus follows the foreground's own load, and only
// latency the background adds is held against it.
//
// The engine (or the application) reports foreground latencies with
// ObserveForeground; Pebble reports stalls and slow disks through
// EventListener (and WithDiskHealthChecks); the write rate comes from Hook.
// Run evaluates every Interval; Evaluate does one step (tests call it). All
// methods are safe for concurrent use; ObserveForeground and the hook are
// lock-free.
type Admission struct {
	cfg AdmissionConfig

	hist        [latencyBuckets]atomic.Uint64
	writes      []atomic.Uint64 // per partition, since the last evaluation
	stalled     atomic.Bool
	stalls      atomic.Uint64
	diskSlow    atomic.Uint64
	pebbleState atomic.Pointer[func() PebbleSignals]

	mu struct {
		sync.Mutex
		scale        float64
		last         time.Time
		baseline     []time.Duration
		status       AdmissionStatus
		seenStalls   uint64
		seenDiskSlow uint64
		rates        []float64
		// quietHist is the decayed histogram of quiet windows' latencies;
		// taken is what the throttles had taken at the last evaluation;
		// busyWindows counts the windows since the throttles last took
		// anything.
		quietHist   [latencyBuckets]float64
		taken       uint64
		busyWindows int
	}
}

// NewAdmission returns an admission controller at full scale.
func NewAdmission(cfg AdmissionConfig) (*Admission, error) {
	cfg.ensureDefaults()
	if cfg.Decrease <= 0 || cfg.Decrease >= 1 || cfg.Increase <= 0 || cfg.MinScale <= 0 || cfg.MinScale > 1 || cfg.LatencyFactor < 1 || cfg.Interval < 0 ||
		cfg.TailBudget <= 0 || cfg.TailBudget >= 1 || cfg.QuietWindows < 0 {
		return nil, fmt.Errorf("%w: admission: decrease %v must be in (0,1), increase %v > 0, min scale %v in (0,1], latency factor %v >= 1, tail budget %v in (0,1)",
			ErrInvalidOptions, cfg.Decrease, cfg.Increase, cfg.MinScale, cfg.LatencyFactor, cfg.TailBudget)
	}
	a := &Admission{cfg: cfg, writes: make([]atomic.Uint64, cfg.Partitioner.NumPartitions())}
	if cfg.Pebble != nil {
		a.pebbleState.Store(&cfg.Pebble)
	}
	a.mu.scale = 1
	a.mu.last = cfg.Clock.Now()
	a.mu.status.Scale = 1
	a.mu.rates = make([]float64, len(a.writes))
	a.mu.taken = a.throttlesTaken()
	return a, nil
}

// Attach makes admission control read Pebble's metrics from e (unless
// AdmissionConfig.Pebble was given).
func (a *Admission) Attach(e *Engine) {
	if a.cfg.Pebble != nil {
		return
	}
	f := func() PebbleSignals { return PebbleSignalsOf(e.DB().Metrics()) }
	a.pebbleState.Store(&f)
}

// PebbleSignalsOf extracts admission control's figures from Pebble metrics.
func PebbleSignalsOf(m *pebble.Metrics) PebbleSignals {
	return PebbleSignals{L0Sublevels: int(m.Levels[0].Sublevels), CompactionDebt: m.Compact.EstimatedDebt}
}

// EventListener returns the Pebble event listener that reports write stalls
// and slow disk operations to admission control. Pass it in the engine's
// Options.Pebble (pebble.Options.AddEventListener) before Open.
func (a *Admission) EventListener() pebble.EventListener {
	return pebble.EventListener{
		WriteStallBegin: func(pebble.WriteStallBeginInfo) { a.stalled.Store(true); a.stalls.Add(1) },
		WriteStallEnd:   func() { a.stalled.Store(false) },
		DiskSlow:        a.DiskSlow,
	}
}

// DiskSlow reports a slow disk operation (the vfs.WithDiskHealthChecks
// callback, see WithDiskHealthChecks). It does no I/O and takes no lock.
func (a *Admission) DiskSlow(pebble.DiskSlowInfo) { a.diskSlow.Add(1) }

// ObserveForeground records the duration of one foreground operation (a
// Put, Get, Delete or batch commit). Lock-free; call it on every operation.
func (a *Admission) ObserveForeground(d time.Duration) {
	a.hist[latencyBucket(d)].Add(1)
}

func latencyBucket(d time.Duration) int {
	ns := uint64(max(d, 1))
	e := bits.Len64(ns) - 1 // 2^e <= ns < 2^(e+1)
	var frac uint64
	if e >= latencySubBits {
		frac = (ns >> (e - latencySubBits)) & (latencySubBuckets - 1)
	} else {
		frac = (ns << (latencySubBits - e)) & (latencySubBuckets - 1)
	}
	return min(e*latencySubBuckets+int(frac), latencyBuckets-1)
}

// bucketUpper is the upper bound of bucket i.
func bucketUpper(i int) time.Duration {
	e, frac := i/latencySubBuckets, i%latencySubBuckets
	return time.Duration(math.Ldexp(1+float64(frac+1)/latencySubBuckets, e))
}

// throttlesTaken sums what the throttles have taken (bytes, keys and busy
// microseconds): it changes whenever background work ran.
func (a *Admission) throttlesTaken() uint64 {
	var n uint64
	for _, t := range a.cfg.Throttles {
		st := t.Status()
		n += st.BytesTaken + st.KeysTaken + uint64(st.BusyTaken/time.Microsecond)
	}
	return n
}

// Hook returns a write hook that counts writes per partition for the write
// rates. Add it to the engine's Options.Hooks.
func (a *Admission) Hook() hooks.Hook {
	return hooks.Hook{PreCommit: func(b *hooks.Batch) error {
		n := len(a.writes)
		for _, op := range b.Ops() {
			p := 0
			if n > 1 {
				p = a.cfg.Partitioner.Partition(op.Key)
			}
			if p >= 0 && p < n {
				a.writes[p].Add(1)
			}
		}
		return nil
	}}
}

// Run evaluates the signals every Interval until ctx is done.
func (a *Admission) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.cfg.Clock.After(a.cfg.Interval):
			a.Evaluate()
		}
	}
}

// Evaluate closes the current window: it reads the signals, scales the
// throttles and returns the new status.
func (a *Admission) Evaluate() AdmissionStatus {
	now := a.cfg.Clock.Now()
	var ps PebbleSignals
	havePebble := false
	if f := a.pebbleState.Load(); f != nil {
		ps, havePebble = (*f)(), true
	}
	var counts [latencyBuckets]uint64
	var samples uint64
	for i := range a.hist {
		counts[i] = a.hist[i].Swap(0)
		samples += counts[i]
	}
	var p99 time.Duration
	if samples >= uint64(a.cfg.MinSamples) {
		p99 = quantile(counts[:], float64(samples), 0.99)
	}
	taken := a.throttlesTaken()

	a.mu.Lock()
	defer a.mu.Unlock()
	secs := now.Sub(a.mu.last).Seconds()
	a.mu.last = now
	var total uint64
	for i := range a.writes {
		w := a.writes[i].Swap(0)
		total += w
		if secs > 0 {
			a.mu.rates[i] = float64(w) / secs
		}
	}
	st := AdmissionStatus{P99: p99, Samples: samples, L0Sublevels: ps.L0Sublevels, CompactionDebt: ps.CompactionDebt,
		WriteStalled: a.stalled.Load(), WriteStalls: a.stalls.Load(), DiskSlowEvents: a.diskSlow.Load(),
		Evaluations: a.mu.status.Evaluations + 1, Decreases: a.mu.status.Decreases}
	if secs > 0 {
		st.WriteRate = float64(total) / secs
	}
	if havePebble && ps.L0Sublevels > a.cfg.MaxL0Sublevels {
		st.Reasons = append(st.Reasons, "l0-sublevels")
	}
	if havePebble && ps.CompactionDebt > a.cfg.MaxCompactionDebt {
		st.Reasons = append(st.Reasons, "compaction-debt")
	}
	if st.WriteStalled || st.WriteStalls > a.mu.seenStalls {
		st.Reasons = append(st.Reasons, "write-stall")
	}
	if st.DiskSlowEvents > a.mu.seenDiskSlow {
		st.Reasons = append(st.Reasons, "disk-slow")
	}
	a.mu.seenStalls, a.mu.seenDiskSlow = st.WriteStalls, st.DiskSlowEvents
	// Quiet windows: the throttles took nothing in this window nor in the
	// QuietWindows before it.
	if taken != a.mu.taken {
		a.mu.busyWindows = 0
	} else {
		a.mu.busyWindows++
	}
	a.mu.taken = taken
	st.Quiet = a.mu.busyWindows > a.cfg.QuietWindows
	var quietTotal float64
	for _, c := range a.mu.quietHist {
		quietTotal += c
	}
	st.BaselineQuiet = quietTotal >= float64(a.cfg.MinSamples)
	if p99 > 0 {
		// The rolling minimum, the baseline until quiet windows teach one.
		a.mu.baseline = append(a.mu.baseline, p99)
		if len(a.mu.baseline) > a.cfg.BaselineWindows {
			a.mu.baseline = a.mu.baseline[1:]
		}
	}
	target := a.cfg.LatencyTarget
	switch {
	case target > 0:
	case st.BaselineQuiet:
		st.Baseline = quantile(a.mu.quietHist[:], quietTotal, 0.99)
		target = time.Duration(float64(st.Baseline) * a.cfg.LatencyFactor)
	case len(a.mu.baseline) > 0:
		st.Baseline = slices.Min(a.mu.baseline)
		target = time.Duration(float64(st.Baseline)*a.cfg.LatencyFactor) + a.cfg.LatencySlack
	}
	st.Target = target
	if p99 > 0 && target > 0 {
		// Count the samples in buckets wholly above the target.
		for i := latencyBucket(target) + 1; i < latencyBuckets; i++ {
			st.OverTarget += counts[i]
		}
		allowed := a.cfg.TailBudget * float64(samples)
		if float64(st.OverTarget) > allowed+2*math.Sqrt(allowed) {
			st.Reasons = append(st.Reasons, "latency")
		}
	}
	if st.Quiet && samples > 0 {
		// Learn from the quiet window (after judging it: a foreground that
		// slows down on its own moves the baseline, not the scale).
		decay := 1 - 1/float64(a.cfg.BaselineWindows)
		for i := range a.mu.quietHist {
			a.mu.quietHist[i] = a.mu.quietHist[i]*decay + float64(counts[i])
		}
	}
	st.Overloaded = len(st.Reasons) > 0
	old := a.mu.scale
	if st.Overloaded {
		a.mu.scale = max(a.mu.scale*a.cfg.Decrease, a.cfg.MinScale)
		st.Decreases++
	} else {
		a.mu.scale = min(a.mu.scale+a.cfg.Increase, 1)
	}
	st.Scale = a.mu.scale
	if st.Scale != old {
		for _, t := range a.cfg.Throttles {
			t.SetScale(st.Scale)
		}
		if st.Overloaded {
			a.cfg.Logger.Info("admission: background work scaled down", "scale", st.Scale, "reasons", st.Reasons, "p99", p99, "baseline", st.Baseline)
		}
	}
	a.mu.status = st
	return st
}

// quantile returns the upper bound of the bucket holding quantile q of the
// histogram counts (total: their sum).
func quantile[T uint64 | float64](counts []T, total float64, q float64) time.Duration {
	rank := math.Ceil(total * q)
	var acc float64
	for i, c := range counts {
		acc += float64(c)
		if acc >= rank {
			return bucketUpper(i)
		}
	}
	return bucketUpper(len(counts) - 1)
}

// Status returns the state after the last evaluation.
func (a *Admission) Status() AdmissionStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.mu.status
	st.Reasons = append([]string(nil), st.Reasons...)
	return st
}

// WriteRate returns partition's write rate (writes/s) in the last window.
func (a *Admission) WriteRate(partition uint32) float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if int(partition) >= len(a.mu.rates) {
		return 0
	}
	return a.mu.rates[partition]
}

// Signals returns the load signals for the repair loop's scheduler
// (reconcile.LoopConfig.Signals).
func (a *Admission) Signals() reconcile.Signals {
	a.mu.Lock()
	over := a.mu.status.Overloaded || a.mu.scale < 0.5
	a.mu.Unlock()
	return reconcile.Signals{Overloaded: over, WriteRate: a.WriteRate}
}
