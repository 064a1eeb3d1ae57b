package repair

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/hooks"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
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
	Throttles []*Throttle
	// Interval is how often Run evaluates the signals (default 50ms: the
	// controller reacts within tens of milliseconds).
	Interval time.Duration
	// MaxL0Sublevels: more L0 sublevels than this is overload (default 8).
	MaxL0Sublevels int
	// MaxCompactionDebt: more debt than this is overload (default 1 GiB).
	MaxCompactionDebt uint64
	// LatencyTarget: the foreground's p99 should stay below it. Zero means
	// relative to the baseline (see Admission): the target is the
	// baseline's mean window p99 plus the largest of NoiseDeviations
	// standard deviations of it, (LatencyFactor-1) times it and
	// MinLatencyRise. Until quiet windows have taught a baseline
	// (MinBaselineWindows of them), the baseline is the lowest window p99
	// of the last BaselineWindows windows and LatencySlack is added to
	// the target.
	//
	// A window is overloaded on latency only when its p99 exceeds the
	// target in SustainWindows consecutive windows (windows with fewer
	// than MinSamples samples neither count nor break the run): one slow
	// window is noise, not overload; or when the p99 of the operations of
	// the last LatencyWindows windows together (default 8, counting only
	// windows with MinSamples samples) exceeds it and so did at least two
	// of those windows' own: stalls that come and go (a slow window every
	// few) do not make a run of slow windows, yet add up to a foreground
	// p99 the background raised. After such a decrease the windows
	// together are judged again on new windows only.
	LatencyTarget  time.Duration
	LatencyWindows int
	// LatencyFactor (default 1.2), MinLatencyRise (default 10µs: a few
	// microseconds more on a write path measured in microseconds is not
	// overload) and NoiseDeviations (default 3): the margins above the
	// baseline.
	LatencyFactor   float64
	MinLatencyRise  time.Duration
	NoiseDeviations float64
	// LatencySlack (default 50µs) is the margin before the first quiet
	// baseline, when the noise is not known yet.
	LatencySlack time.Duration
	// SustainWindows is the number of consecutive windows above the
	// target that make a latency overload (default 4: 200ms at the
	// default Interval).
	SustainWindows int
	// BaselineWindows (default 40): the baseline's mean and spread are
	// averages decayed over about this many quiet windows; the rolling
	// minimum spans as many windows.
	BaselineWindows int
	// MinBaselineWindows is the number of quiet windows needed before
	// their mean and spread are the baseline (default 8).
	MinBaselineWindows int
	// QuietWindows: a window is quiet, and teaches the baseline, when none
	// of the Throttles took anything (bytes, keys, busy time) in it nor in
	// the QuietWindows windows before it (default 4: the flushes and
	// compactions that background writes leave behind settle first).
	QuietWindows int
	// MinSamples: windows with fewer foreground samples say nothing about
	// latency (default 20).
	MinSamples int
	// SaturatedFraction: a foreground whose operations would take, at
	// their median latency, at least this fraction of each window
	// (default 0.15; the median, so that a few stalled operations do not
	// count; averaged over about LendWindows windows, so that one slow
	// window does not) is saturated: it spends much of its time in the
	// engine, as a writer that runs flat out does; it leaves no room to
	// lend (MaxScale), and
	// background work that takes its CPU shows as fewer operations a
	// second, not as a higher p99. ThroughputLoss (default 0.06): the
	// mean operation rate of the last ThroughputWindows saturated windows
	// (default 8) is below the throughput target when it falls short of
	// the mean rate of the quiet saturated windows by more than this
	// fraction of it, and by more than NoiseDeviations times the spread
	// of such a mean: a "throughput" overload. Until MinBaselineWindows
	// quiet saturated windows taught the baseline, the signal is off.
	SaturatedFraction, ThroughputLoss float64
	ThroughputWindows                 int
	// Decrease multiplies the scale on overload (default 0.5); Increase is
	// added to it when everything is fine (default 0.1).
	Decrease, Increase float64
	// MinScale is the repair floor: the scale admission control never
	// goes below, whatever the signals say, so that background work (and
	// with it repair) never stops (default DefaultMinScale; at most 1).
	MinScale float64
	// MaxScale is the ceiling: the scale admission control raises
	// background work to while no signal shows the foreground suffering
	// (default DefaultMaxScale: four times the configured rates and
	// busy-time budgets; at least 1; 1: never above them). The configured
	// rates are what background work gets at scale 1; a machine whose
	// foreground leaves room lends it to repair, and takes it back as soon
	// as a signal fires. A saturated foreground (SaturatedFraction), which
	// leaves no room, is lent nothing: while it runs the ceiling is
	// SaturatedScale, then 1, and it is MaxScale again only after
	// LendWindows windows (default 8) without it.
	MaxScale    float64
	LendWindows int
	// SaturatedScale is the ceiling while the foreground is saturated
	// (default DefaultSaturatedScale; at least MinScale, at most 1): a
	// foreground that runs flat out leaves no idle CPU, so background
	// work above the floor comes out of its throughput, scale for scale.
	SaturatedScale float64
	// Partitioner maps written keys to partitions for the write rates
	// (default: one partition). Use the engine's.
	Partitioner merkle.Partitioner
	// Clock (default system clock).
	Clock Clock
	// Pebble returns Pebble's signals; default: none until Attach.
	Pebble func() PebbleSignals
	// Logger (default: discard).
	Logger *slog.Logger
}

// Defaults of AdmissionConfig. DefaultMinScale, the repair floor, is a
// quarter of the configured rates: what a bounded session needs to finish
// within seconds under a flat-out writer on a 2-core machine (measured:
// at 0.1 the first session of a 500 000-record repair took over 10 s and
// two runs in three repaired nothing in 10 s of load; at 0.25, 0.12 of the
// idle repair rate in every run, the writer at 0.88-0.95 of its idle
// throughput; docs/benchmarks.md, "Repair under load").
const (
	DefaultAdmissionInterval  = 50 * time.Millisecond
	DefaultMaxL0Sublevels     = 8
	DefaultMaxCompactionDebt  = 1 << 30
	DefaultLatencyFactor      = 1.2
	DefaultMinLatencyRise     = 10 * time.Microsecond
	DefaultNoiseDeviations    = 3
	DefaultLatencySlack       = 50 * time.Microsecond
	DefaultSustainWindows     = 4
	DefaultLatencyWindows     = 8
	DefaultBaselineWindows    = 40
	DefaultMinBaselineWindows = 8
	DefaultQuietWindows       = 4
	DefaultMinSamples         = 20
	DefaultMinScale           = 0.25
	DefaultMaxScale           = 4
	DefaultSaturatedFraction  = 0.15
	DefaultThroughputLoss     = 0.06
	DefaultThroughputWindows  = 8
	DefaultLendWindows        = 8
	DefaultSaturatedScale     = 0.5
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
	if c.MinLatencyRise == 0 {
		c.MinLatencyRise = DefaultMinLatencyRise
	}
	if c.NoiseDeviations == 0 {
		c.NoiseDeviations = DefaultNoiseDeviations
	}
	if c.SustainWindows == 0 {
		c.SustainWindows = DefaultSustainWindows
	}
	if c.LatencyWindows == 0 {
		c.LatencyWindows = DefaultLatencyWindows
	}
	if c.BaselineWindows == 0 {
		c.BaselineWindows = DefaultBaselineWindows
	}
	if c.MinBaselineWindows == 0 {
		c.MinBaselineWindows = DefaultMinBaselineWindows
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
		c.MinScale = DefaultMinScale
	}
	if c.MaxScale == 0 {
		c.MaxScale = DefaultMaxScale
	}
	if c.SaturatedFraction == 0 {
		c.SaturatedFraction = DefaultSaturatedFraction
	}
	if c.ThroughputLoss == 0 {
		c.ThroughputLoss = DefaultThroughputLoss
	}
	if c.ThroughputWindows == 0 {
		c.ThroughputWindows = DefaultThroughputWindows
	}
	if c.LendWindows == 0 {
		c.LendWindows = DefaultLendWindows
	}
	if c.SaturatedScale == 0 {
		c.SaturatedScale = DefaultSaturatedScale
	}
	if c.Partitioner == nil {
		c.Partitioner = merkle.SinglePartition()
	}
	if c.Clock == nil {
		c.Clock = record.SystemClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// AdmissionStatus is admission control's state after its last evaluation.
type AdmissionStatus struct {
	// Scale is the multiple of the configured background rates in force;
	// MinScale the repair floor it never goes below, MaxScale the ceiling
	// it never goes above, Ceiling the ceiling in force (1 while the
	// foreground is saturated, see AdmissionConfig.MaxScale).
	Scale, MinScale, MaxScale, Ceiling float64
	// Overloaded: the last window showed foreground suffering; Reasons say
	// why ("l0-sublevels", "compaction-debt", "write-stall", "disk-slow",
	// "latency", "throughput").
	Overloaded bool
	Reasons    []string
	// P99 is the last window's foreground p99 (0: too few samples);
	// Baseline the relative target's baseline (the quiet windows' mean
	// p99, or the rolling minimum), Noise the quiet windows' standard
	// deviation of their p99 (0: not known yet), Target the latency
	// target in force; Samples the window's count.
	P99, Baseline, Noise, Target time.Duration
	Samples                      uint64
	// AboveTarget is the number of consecutive windows (up to this one)
	// whose p99 exceeded Target; SustainWindows of them make a latency
	// overload. RecentP99 is the p99 of the last LatencyWindows windows'
	// operations together (0: too few); above Target (and two of those
	// windows' own p99), a latency overload too.
	AboveTarget int
	RecentP99   time.Duration
	// Saturated: the foreground's operations would take, at their median
	// latency, at least SaturatedFraction of each window; Utilization is
	// that share (operations per second times the median), averaged over
	// about LendWindows windows, Rate the window's operations per second. RateBaseline and
	// RateNoise are the mean and spread of the quiet saturated windows'
	// rates (0: not learned yet), RateTarget the throughput target (0:
	// off), RecentRate the mean rate of the last ThroughputWindows
	// saturated windows with background work (0: fewer of them yet).
	Saturated                                 bool
	Utilization                               float64
	Rate, RateBaseline, RateNoise, RateTarget float64
	RecentRate                                float64
	// Quiet: the background throttles were idle in this window and the
	// ones before it, so the window taught the baseline; BaselineQuiet:
	// the baseline comes from quiet windows (else from the rolling
	// minimum); QuietWindows how many taught it.
	Quiet, BaselineQuiet bool
	QuietWindows         uint64
	// The Pebble figures of the last window.
	L0Sublevels    int
	CompactionDebt uint64
	WriteStalled   bool
	// Counters since creation. DecreasesByReason counts the decreases by
	// the reasons of their windows (a window with two reasons counts for
	// both).
	WriteStalls, DiskSlowEvents, Evaluations, Decreases uint64
	DecreasesByReason                                   map[string]uint64
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
// foreground latency (a per-window histogram of Put/Get durations and their
// sum), and scales the background throttles down multiplicatively (by
// Decrease) while any signal shows the foreground suffering, and back up
// additively (by Increase) when none does (AIMD, like TCP congestion
// control), never below MinScale, the repair floor (repair slows down under
// overload but never stops), and never above MaxScale, the ceiling: while
// the foreground leaves room, background work may take several times its
// configured rates and busy-time budgets (a large repair then finishes
// sooner), and gives them back within a few windows of a signal. A
// saturated foreground (one that runs flat out) leaves no room: while it
// runs, background work gets at most SaturatedScale of its configured
// rates (half by default; measured under a flat-out writer on 2 cores: at
// 1, 0.86-0.91 of its idle throughput; at 0.5, 0.91-1.01, repair still at
// 0.12-0.20 of its idle rate).
//
// The latency signal compares each window's p99 with what the same
// foreground did while the background was idle. Windows in which none of
// the Throttles took anything (and the few before them) teach the
// baseline: decayed averages of their p99 and of its square, so the
// baseline has a mean and a spread (the noise of a window p99 on this
// machine, under this foreground). A window is above the target when its
// p99 exceeds the mean by more than NoiseDeviations standard deviations,
// by more than (LatencyFactor-1) of the mean and by more than
// MinLatencyRise, all three; only SustainWindows such windows in a row are
// a latency overload, or a p99 of the last LatencyWindows windows together
// above the target with at least two of those windows above it themselves
// (stalls that come and go). So jitter inside the
// baseline's own spread, a few microseconds on a fast write path, or one
// slow window never scale the background down, and the scale climbs back by Increase a window once the
// signal clears (from the floor to full speed in under a second at the
// defaults). The baseline thus follows the foreground's own load, and only
// latency the background adds is held against it.
//
// The throughput signal covers a foreground that runs flat out: its
// operations fill a good part of each window (SaturatedFraction), so
// background work that takes its CPU lowers its throughput without moving
// its p99. The quiet saturated windows teach its operation rate (mean and
// spread); when the mean rate of the last ThroughputWindows saturated
// windows with background work falls short of it by more than
// ThroughputLoss (and by more than the noise of such a mean), background
// work is scaled down, and the next judgement waits for as many new
// windows; while a judgement is pending the scale holds (a judgement that
// finds the rate fine adds the increases held back). A paced foreground,
// whose operations leave most of each window idle, is not judged on its
// rate: there a lower offered load is not a loss. Flat out, a window's
// rate is noisy (±36% measured: flushes and compactions stall the writer),
// so this signal catches gross losses only; what keeps a saturated
// foreground's throughput is that it is lent nothing (MaxScale).
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
		// quietMean and quietSq are the decayed means of the quiet
		// windows' p99 and of its square (nanoseconds), quietN the
		// number of quiet windows that taught them; taken is what the
		// throttles had taken at the last evaluation; busyWindows counts
		// the windows since the throttles last took anything; above the
		// consecutive windows above the target.
		quietMean, quietSq float64
		quietN             uint64
		taken              uint64
		busyWindows        int
		above              int
		byReason           map[string]uint64
		// rateMean, rateSq and rateN are the same for the operation
		// rate of the quiet busy windows; recent are the rates of the
		// busy windows with background work since the last judgement.
		rateMean, rateSq float64
		rateN            uint64
		recent           []float64
		// unsaturated counts the windows since the foreground was last
		// saturated; util is the decayed mean utilization.
		unsaturated int
		util        float64
		// hists are the latency histograms of the last LatencyWindows
		// windows with MinSamples samples, and p99s their p99 (a ring,
		// next the one to replace).
		hists [][latencyBuckets]uint64
		p99s  []time.Duration
		next  int
	}
}

// NewAdmission returns an admission controller at full scale.
func NewAdmission(cfg AdmissionConfig) (*Admission, error) {
	cfg.ensureDefaults()
	if cfg.Decrease <= 0 || cfg.Decrease >= 1 || cfg.Increase <= 0 || cfg.MinScale <= 0 || cfg.MinScale > 1 || cfg.MaxScale < 1 || cfg.MaxScale > MaxThrottleScale ||
		cfg.LatencyFactor < 1 || cfg.Interval < 0 || cfg.QuietWindows < 0 || cfg.MinLatencyRise < 0 || cfg.NoiseDeviations < 0 || cfg.SustainWindows < 0 ||
		cfg.MinBaselineWindows < 0 || cfg.SaturatedFraction < 0 || cfg.ThroughputLoss < 0 || cfg.ThroughputWindows < 0 || cfg.LendWindows < 0 || cfg.LatencyWindows < 0 || cfg.SaturatedScale < 0 || cfg.SaturatedScale > 1 {
		return nil, fmt.Errorf("%w: admission: decrease %v must be in (0,1), increase %v > 0, min scale (repair floor) %v in (0,1], max scale (ceiling) %v in [1,%v], latency factor %v >= 1; "+
			"min latency rise %v, noise deviations %v, sustain windows %d, min baseline windows %d, quiet windows %d, saturated fraction %v, throughput loss %v >= 0; saturated scale %v in (0,1]",
			engine.ErrInvalidOptions, cfg.Decrease, cfg.Increase, cfg.MinScale, cfg.MaxScale, MaxThrottleScale, cfg.LatencyFactor, cfg.MinLatencyRise, cfg.NoiseDeviations,
			cfg.SustainWindows, cfg.MinBaselineWindows, cfg.QuietWindows, cfg.SaturatedFraction, cfg.ThroughputLoss, cfg.SaturatedScale)
	}
	a := &Admission{cfg: cfg, writes: make([]atomic.Uint64, cfg.Partitioner.NumPartitions())}
	if cfg.Pebble != nil {
		a.pebbleState.Store(&cfg.Pebble)
	}
	a.mu.scale = 1
	a.mu.last = cfg.Clock.Now()
	a.mu.status.Scale = 1
	a.mu.status.MinScale = cfg.MinScale
	a.mu.status.MaxScale = cfg.MaxScale
	a.mu.status.Ceiling = min(cfg.MaxScale, 1)
	a.mu.byReason = make(map[string]uint64)
	a.mu.rates = make([]float64, len(a.writes))
	a.mu.taken = a.throttlesTaken()
	return a, nil
}

// Attach makes admission control read Pebble's metrics from e (unless
// AdmissionConfig.Pebble was given).
func (a *Admission) Attach(e *engine.Engine) {
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
	var p50, p99 time.Duration
	if samples >= uint64(a.cfg.MinSamples) {
		p50 = quantile(counts[:], float64(samples), 0.5)
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
		if p99 > 0 {
			st.Rate = float64(samples) / secs
		}
	}
	// The utilization, averaged (decayed) over about LendWindows windows:
	// a paced foreground whose median jumps for a window (a compaction)
	// is not saturated.
	w := 1 / float64(max(a.cfg.LendWindows, 1))
	a.mu.util += w * (st.Rate*p50.Seconds() - a.mu.util)
	st.Utilization = a.mu.util
	st.Saturated = st.Rate > 0 && st.Utilization >= a.cfg.SaturatedFraction
	// The throughput signal judges, and learns from, only windows busy
	// themselves as well: a foreground that just slowed down to a paced
	// load is still saturated on average for a few windows.
	judged := st.Saturated && st.Rate*p50.Seconds() >= a.cfg.SaturatedFraction
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
	st.QuietWindows = a.mu.quietN
	st.BaselineQuiet = a.mu.quietN >= uint64(max(a.cfg.MinBaselineWindows, 1))
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
		mean := a.mu.quietMean
		sd := math.Sqrt(max(a.mu.quietSq-mean*mean, 0))
		st.Baseline, st.Noise = time.Duration(mean), time.Duration(sd)
		margin := max(a.cfg.NoiseDeviations*sd, (a.cfg.LatencyFactor-1)*mean, float64(a.cfg.MinLatencyRise))
		target = time.Duration(mean + margin)
	case len(a.mu.baseline) > 0:
		st.Baseline = slices.Min(a.mu.baseline)
		target = time.Duration(float64(st.Baseline)*a.cfg.LatencyFactor) + max(a.cfg.LatencySlack, a.cfg.MinLatencyRise)
	}
	st.Target = target
	if p99 > 0 && target > 0 {
		// Windows without enough samples neither count nor break the run.
		if p99 > target {
			a.mu.above++
		} else {
			a.mu.above = 0
		}
	}
	st.AboveTarget = a.mu.above
	// The last LatencyWindows windows together: over the target when at
	// least two of them were (one slow window is noise).
	slow := 0
	if n := a.cfg.LatencyWindows; n > 0 && p99 > 0 {
		if len(a.mu.hists) < n {
			a.mu.hists, a.mu.p99s = append(a.mu.hists, counts), append(a.mu.p99s, p99)
		} else {
			a.mu.hists[a.mu.next], a.mu.p99s[a.mu.next] = counts, p99
			a.mu.next = (a.mu.next + 1) % n
		}
		var merged [latencyBuckets]uint64
		var total uint64
		for i := range a.mu.hists {
			for j, c := range a.mu.hists[i] {
				merged[j] += c
				total += c
			}
			if target > 0 && a.mu.p99s[i] > target {
				slow++
			}
		}
		st.RecentP99 = quantile(merged[:], float64(total), 0.99)
	}
	recent := target > 0 && slow >= 2 && st.RecentP99 > target
	if recent {
		// Judged: the next judgement of the windows together waits for
		// new ones (the same stalls would scale down window after window
		// until they left the last LatencyWindows).
		a.mu.hists, a.mu.p99s, a.mu.next = a.mu.hists[:0], a.mu.p99s[:0], 0
	}
	if a.mu.above >= max(a.cfg.SustainWindows, 1) || recent {
		st.Reasons = append(st.Reasons, "latency")
	}
	// The throughput signal: a busy foreground's recent rate against the
	// quiet busy windows'.
	if a.mu.rateN >= uint64(max(a.cfg.MinBaselineWindows, 1)) {
		m := a.mu.rateMean
		sd := math.Sqrt(max(a.mu.rateSq-m*m, 0))
		st.RateBaseline, st.RateNoise = m, sd
		n := float64(max(a.cfg.ThroughputWindows, 1))
		st.RateTarget = m - max(a.cfg.NoiseDeviations*sd/math.Sqrt(n), a.cfg.ThroughputLoss*m)
	}
	switch {
	case judged && st.Quiet:
		// No background work to judge.
	case !judged || st.RateTarget == 0:
		// Not busy (or too few samples): not judged, and a judgement
		// under way is dropped (a foreground that stops does not hold
		// the scale).
		a.mu.recent = a.mu.recent[:0]
	default:
		a.mu.recent = append(a.mu.recent, st.Rate)
		if len(a.mu.recent) >= max(a.cfg.ThroughputWindows, 1) {
			var sum float64
			for _, r := range a.mu.recent {
				sum += r
			}
			st.RecentRate = sum / float64(len(a.mu.recent))
			a.mu.recent = a.mu.recent[:0]
			if st.RecentRate < st.RateTarget {
				st.Reasons = append(st.Reasons, "throughput")
			}
		}
	}
	if st.Quiet && p99 > 0 {
		// Learn from the quiet window (after judging it: a foreground that
		// slows down on its own moves the baseline, not the scale). The
		// first windows weigh equally, then the decay takes over.
		a.mu.quietN++
		w := max(1/float64(a.mu.quietN), 1/float64(a.cfg.BaselineWindows))
		x := float64(p99)
		a.mu.quietMean += w * (x - a.mu.quietMean)
		a.mu.quietSq += w * (x*x - a.mu.quietSq)
		if judged {
			a.mu.rateN++
			w := max(1/float64(a.mu.rateN), 1/float64(a.cfg.BaselineWindows))
			x := st.Rate
			a.mu.rateMean += w * (x - a.mu.rateMean)
			a.mu.rateSq += w * (x*x - a.mu.rateSq)
		}
	}
	st.Overloaded = len(st.Reasons) > 0
	old := a.mu.scale
	if st.Saturated {
		a.mu.unsaturated = 0
	} else {
		a.mu.unsaturated++
	}
	st.Ceiling = a.cfg.MaxScale
	switch {
	case st.Saturated:
		// A saturated foreground pays for background work above the
		// floor in throughput.
		st.Ceiling = max(min(a.cfg.SaturatedScale, 1), a.cfg.MinScale)
	case a.mu.unsaturated <= a.cfg.LendWindows:
		// One that was saturated lately leaves no room to lend.
		st.Ceiling = min(a.cfg.MaxScale, 1)
	}
	switch {
	case st.Overloaded:
		a.mu.scale = max(a.mu.scale*a.cfg.Decrease, a.cfg.MinScale)
		st.Decreases++
		for _, r := range st.Reasons {
			a.mu.byReason[r]++
		}
	case len(a.mu.recent) > 0:
		// A busy foreground's throughput is being judged: the scale
		// holds until the verdict.
	case st.RecentRate > 0:
		// It was judged fine: the increases it held back.
		a.mu.scale = a.mu.scale + a.cfg.Increase*float64(max(a.cfg.ThroughputWindows, 1))
	default:
		a.mu.scale = a.mu.scale + a.cfg.Increase
	}
	if a.mu.scale > st.Ceiling {
		a.mu.scale = max(st.Ceiling, a.cfg.MinScale)
	}
	st.Scale, st.MinScale, st.MaxScale = a.mu.scale, a.cfg.MinScale, a.cfg.MaxScale
	st.DecreasesByReason = maps.Clone(a.mu.byReason)
	if st.Scale != old {
		for _, t := range a.cfg.Throttles {
			t.SetScale(st.Scale)
		}
		if st.Overloaded {
			a.cfg.Logger.Info("admission: background work scaled down", "scale", st.Scale, "floor", a.cfg.MinScale, "reasons", st.Reasons,
				"p99", p99, "target", st.Target, "baseline", st.Baseline, "noise", st.Noise, "windows_above_target", st.AboveTarget,
				"l0_sublevels", st.L0Sublevels, "compaction_debt", st.CompactionDebt)
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
	st.DecreasesByReason = maps.Clone(st.DecreasesByReason)
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
// (repair.LoopConfig.Signals).
func (a *Admission) Signals() Signals {
	a.mu.Lock()
	over := a.mu.status.Overloaded || a.mu.scale < 0.5
	a.mu.Unlock()
	return Signals{Overloaded: over, WriteRate: a.WriteRate}
}
