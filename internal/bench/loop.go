package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/plugin/node"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/repair"
)

// LoopLoadConfig configures LoopLoad.
type LoopLoadConfig struct {
	// Dir is the scratch directory (default: a temp dir).
	Dir string
	// Keys is the number of records the source replica holds and the
	// repaired replica lacks: the size of the large repair (default
	// 200000).
	Keys int
	// ValueSize of every record (default 100).
	ValueSize int
	// Phase is the duration of each measured phase (default 3s); each
	// phase starts with Warmup (default Phase/3) of foreground load alone.
	Phase, Warmup time.Duration
	// Reps is the number of repetitions of the three phases (default 3);
	// the order of the phases rotates from one repetition to the next, and
	// the result reports medians.
	Reps int
	// ScanBytesPerSec, ScanKeysPerSec and WriteBytesPerSec configure the
	// loop's throttles (defaults 64 MiB/s, 500k keys/s, 32 MiB/s);
	// BusyFraction their busy-time budget in cores (default
	// repair.DefaultLoopBusyFraction, as `pebble-ae serve`; negative:
	// none).
	ScanBytesPerSec, ScanKeysPerSec, WriteBytesPerSec, BusyFraction float64
	// RepairFloor and RepairCeiling are the node's (node.Config; 0: its
	// defaults). The phase without admission control holds the throttles
	// at the ceiling.
	RepairFloor, RepairCeiling float64
	// Rate is the foreground's offered load in Puts/s, paced open-loop
	// (default 20000; negative: closed loop, as fast as one writer goes).
	Rate float64
	// AdmissionInterval is admission control's window (default 50ms).
	AdmissionInterval time.Duration
	// Tail bounds how long the loop may run on after a phase, with no
	// foreground load, to finish the repair (default 30s; negative: no
	// tail).
	Tail time.Duration
	// LockWriter locks the foreground writer to its OS thread, whose
	// scheduler statistics then give LoadPhase.WriterCPU, WriterWait and
	// OpsPerWriterCPUSecond (else not measured). It is a diagnostic: a
	// locked writer's paced latencies are worse when the process is
	// otherwise idle (p99 / idle at 20k/s 0.59 locked, 1.07 unlocked, in
	// the same hour), which flatters the phases with the loop.
	LockWriter bool
	// SourceServer, if set, is a command that serves a replica (e.g.
	// ["nice", "-n", "19", "/path/to/pebble-ae", "serve"]): the source
	// replica is then built here, and each phase's copy of it served by
	// a process of its own (flags --dir, --id src, --listen 127.0.0.1:0,
	// --insecure appended),
	// and the loop reaches it over loopback gRPC, as it would reach
	// another machine. Default: the source is an engine in this process.
	SourceServer []string
	// ProfileDir, if set, receives a CPU profile of each phase's measured
	// part (after the warm-up, before the tail), named
	// rep<N>-<phase>.pprof (phase: idle, admission-on, admission-off),
	// and block and mutex profiles at its start and end
	// (rep<N>-<phase>.block-start.pprof etc.; compare with pprof -base)
	// and an execution trace (rep<N>-<phase>.trace; `go tool trace
	// -pprof=sched` shows where goroutines waited for a CPU).
	// It turns on block and mutex profiling for the rest of the process.
	ProfileDir string
	// MaxSessionKeys is the loop's LoopConfig.MaxSessionKeys (0: its
	// default).
	MaxSessionKeys int64
	// Phases, if set, runs only the phases of these tags (idle,
	// admission-on, admission-off, repair-alone), a diagnostic: the
	// ratios to phases not run are meaningless.
	Phases []string
	// SessionLog, if set, receives a line per session of the loop;
	// RoundLog a line per round trip of every session (its duration, what
	// it moved, the throttles' busy time charged).
	SessionLog, RoundLog io.Writer
	Seed                 uint64
}

// validate returns an error wrapping ErrBadConfig for a configuration
// LoopLoad cannot run (negative Rate, BusyFraction and Tail have meanings).
func (c *LoopLoadConfig) validate() error {
	if err := nonNegative(intField{"keys", c.Keys}, intField{"value size", c.ValueSize}, intField{"repetitions", c.Reps}); err != nil {
		return err
	}
	if c.Phase < 0 || c.Warmup < 0 || c.AdmissionInterval < 0 {
		return badConfig("phase %v, warm-up %v, admission interval %v: want >= 0 (0: the default)", c.Phase, c.Warmup, c.AdmissionInterval)
	}
	if c.ScanBytesPerSec < 0 || c.ScanKeysPerSec < 0 || c.WriteBytesPerSec < 0 {
		return badConfig("throttle rates %v B/s, %v keys/s, %v B/s: want >= 0 (0: the default)", c.ScanBytesPerSec, c.ScanKeysPerSec, c.WriteBytesPerSec)
	}
	return nil
}

func (c *LoopLoadConfig) defaults() {
	if c.Keys == 0 {
		c.Keys = 200_000
	}
	if c.ValueSize == 0 {
		c.ValueSize = 100
	}
	if c.Phase == 0 {
		c.Phase = 3 * time.Second
	}
	if c.Warmup == 0 {
		c.Warmup = c.Phase / 3
	}
	if c.Reps == 0 {
		c.Reps = 3
	}
	if c.ScanBytesPerSec == 0 {
		c.ScanBytesPerSec = 64 << 20
	}
	if c.ScanKeysPerSec == 0 {
		c.ScanKeysPerSec = 500_000
	}
	if c.WriteBytesPerSec == 0 {
		c.WriteBytesPerSec = 32 << 20
	}
	if c.Rate == 0 {
		c.Rate = 20000
	}
	if c.AdmissionInterval == 0 {
		c.AdmissionInterval = 50 * time.Millisecond
	}
	if c.Tail == 0 {
		c.Tail = 30 * time.Second
	}
}

// LoadPhase is the foreground figures of one phase.
type LoadPhase struct {
	Name      string        `json:"name"`
	Ops       int           `json:"ops"`
	OpsPerSec float64       `json:"ops_per_sec"`
	P50       time.Duration `json:"p50_ns"`
	P99       time.Duration `json:"p99_ns"`
	P999      time.Duration `json:"p999_ns"`
	// KeysRepaired is what the loop's sessions that ended during the
	// phase reported repaired (both directions); a large session may end
	// after the phase, so RepairedPerSec is measured on the replica: the
	// source's records that arrived per second of the phase.
	KeysRepaired   uint64  `json:"keys_repaired"`
	RepairedPerSec float64 `json:"repaired_per_sec"`
	// Missing is the number of the source's records the repaired replica
	// still lacked at the end of the phase (Keys for the idle phase).
	Missing int `json:"missing"`
	// Sessions counts the loop's sessions by outcome; Err is a session
	// error: the first one that is not a cancellation, if any.
	Sessions map[string]uint64 `json:"sessions"`
	Err      string            `json:"err,omitempty"`
	// Scale is the throttles' final scale; MinScale their lowest,
	// MeanScale their mean (sampled with Reasons) and Decreases
	// admission control's decreases during the phase.
	Scale     float64 `json:"admission_scale"`
	MinScale  float64 `json:"admission_min_scale"`
	MeanScale float64 `json:"admission_mean_scale"`
	Decreases uint64  `json:"admission_decreases"`
	// Reasons counts, by reason, the samples of admission control's
	// status (taken every 1024 Puts, and every 250ms in the tail) that
	// showed an overload.
	Reasons map[string]int `json:"admission_reasons"`
	// RemainingEstimate is the loop's own estimate, at the end of the
	// measured part, of the keys still to repair
	// (repair.LoopStatus.Repair.Remaining), and LoopRate its repair
	// rate then (keys/s over the last 10 s); BoundedSessions counts the
	// sessions that reconciled part of the difference
	// (reconcile.Stats.Bounded).
	RemainingEstimate uint64  `json:"remaining_estimate"`
	LoopRate          float64 `json:"loop_rate"`
	BoundedSessions   int     `json:"bounded_sessions"`
	// DecreasesByReason counts admission control's decreases during the
	// phase by signal.
	DecreasesByReason map[string]uint64 `json:"admission_decreases_by_reason"`
	// TailSeconds (phases with the loop) is how long the loop took, after
	// the foreground stopped, to bring Missing to zero (a large repair is
	// one session, which applies little before its end); TailMissing what
	// it still lacked when the tail ended (0: converged).
	TailSeconds float64 `json:"tail_seconds,omitempty"`
	TailMissing int     `json:"tail_missing,omitempty"`
	// CPUCores is the process's CPU time during the measured part of the
	// phase per second of it (user + system, every thread: the writer,
	// Pebble's background work, the loop, the source replica when it runs
	// in process); GCCores the Go runtime's GC share of it (background
	// mark workers, assists and pauses, from runtime/metrics).
	CPUCores float64 `json:"cpu_cores"`
	GCCores  float64 `json:"gc_cores"`
	// WriterCPU is the fraction of the phase the foreground writer's OS
	// thread ran on a CPU and WriterWait the fraction it waited, runnable,
	// for one (Linux schedstat; only with LoopLoadConfig.LockWriter); the
	// rest it was blocked or, as a goroutine, waited for a P. OpsPerWriterCPUSecond is Ops
	// per second of the writer's CPU time: the cost of a Put itself. A
	// closed-loop writer's throughput is their product, so the two tell
	// whether background work made each Put dearer or took CPU from the
	// writer.
	WriterCPU             float64 `json:"writer_cpu"`
	WriterWait            float64 `json:"writer_wait"`
	OpsPerWriterCPUSecond float64 `json:"ops_per_writer_cpu_second"`
}

// LoopLoadRep is one repetition: the three phases back to back and their
// ratios.
type LoopLoadRep struct {
	// Idle: no loop. Admission: the loop running the large repair with
	// admission control scaling its throttles. NoAdmission: the same
	// without admission control: the throttles held at admission
	// control's ceiling (engine.DefaultMaxScale times their configured
	// rates), the most the loop may take, never scaled down.
	// RepairAlone: the loop with admission control and no foreground
	// writer after the warm-up (which writes as in the other phases, so
	// the repair starts from the same state), whose RepairedPerSec is the
	// idle repair rate.
	Idle, Admission, NoAdmission, RepairAlone LoadPhase
	// Ratios against Idle (foreground) and RepairAlone (repair rate).
	P99RatioAdmission, ThroughputRatioAdmission     float64
	P99RatioNoAdmission, ThroughputRatioNoAdmission float64
	RepairRatioAdmission, RepairRatioNoAdmission    float64
}

// LoopLoadResult compares foreground Put latency and throughput on a replica
// being repaired by its loop with the same replica idle, in one run, over
// several repetitions.
type LoopLoadResult struct {
	Keys int           `json:"keys"`
	Reps []LoopLoadRep `json:"reps"`
	// Medians over the repetitions: of each phase's figures (MedianPhase)
	// and of the per-repetition ratios.
	Idle, Admission, NoAdmission, RepairAlone       LoadPhase
	P99RatioAdmission, ThroughputRatioAdmission     float64
	P99RatioNoAdmission, ThroughputRatioNoAdmission float64
	RepairRatioAdmission, RepairRatioNoAdmission    float64
}

// LoopLoad measures what a large repair costs foreground writes. A source
// replica holds Keys records; each phase opens a fresh, empty replica (on
// disk, NoSync) and runs one foreground writer (single blind Puts) on it for
// Phase: with no repair loop (idle), with its loop repairing it from the
// source with admission control on, and with it off. Each phase with the
// loop repairs from a fresh copy of the source (a Pebble checkpoint of it
// as built), so every phase faces the same divergence: the Keys records,
// plus the phase's own foreground keys the other way. The three phases run
// Reps times, their order rotating, so that drift on a shared machine
// spreads over all of them; the result reports medians. Foreground
// latencies are measured around each Put (engine.Options.ObserveForeground
// feeds admission control, in every phase, so the idle phase pays the same
// recording). After a phase with the loop the foreground stops and the loop
// runs on until the repair is complete (Tail). With LockWriter the writer's
// OS thread's scheduler statistics say how much CPU it got
// (LoadPhase.WriterCPU). The source is an engine in this process, or
// another process (SourceServer).
func LoopLoad(ctx context.Context, cfg LoopLoadConfig) (LoopLoadResult, error) {
	if err := cfg.validate(); err != nil {
		return LoopLoadResult{}, err
	}
	cfg.defaults()
	res := LoopLoadResult{Keys: cfg.Keys}
	root, cleanup, err := loopScratch(cfg.Dir)
	if err != nil {
		return res, err
	}
	defer cleanup()
	srcDir := filepath.Join(root, "src")
	src, err := engine.Open(srcDir, &engine.Options{ReplicaID: "src", CheckpointInterval: -1})
	if err != nil {
		return res, err
	}
	defer src.Close()
	rng := rand.New(rand.NewPCG(cfg.Seed, 7))
	value := make([]byte, cfg.ValueSize)
	for i := 0; i < cfg.Keys; {
		b := src.NewBatch()
		for j := 0; j < 1000 && i < cfg.Keys; j, i = j+1, i+1 {
			if err := b.Put(randKey(rng), value); err != nil {
				return res, err
			}
		}
		if err := b.Commit(ctx, engine.NoSync); err != nil {
			return res, err
		}
	}
	// The source's tree is brought up to date (its leaves recomputed, its
	// entry index built) before it is persisted, as on a node that has run
	// for a while: else every copy would start with a tree as dirty as
	// the data is large, and each phase's first session would pay for it.
	if _, err := src.RangeHash(ctx, reconcile.RangeHashRequest{Ranges: []reconcile.KeyRange{{}}}); err != nil {
		return res, err
	}
	if err := src.Checkpoint(ctx); err != nil {
		return res, err
	}
	srcKeys, err := keySet(ctx, src)
	if err != nil {
		return res, err
	}
	// The pristine source: every phase repairs from a fresh copy of it (a
	// Pebble checkpoint, hard links), so that each phase's divergence is
	// the same Keys records, not also every earlier phase's foreground keys
	// (the loop repairs both ways, so a shared source would take them in).
	if err := src.DB().Flush(); err != nil {
		return res, err
	}
	type phaseSpec struct {
		name, tag               string
		loop, admission, writer bool
	}
	specs := []phaseSpec{{"idle", "idle", false, false, true}, {"loop, admission on", "admission-on", true, true, true},
		{"loop, admission off", "admission-off", true, false, true}, {"repair alone", "repair-alone", true, true, false}}
	for rep := range cfg.Reps {
		var r LoopLoadRep
		outs := []*LoadPhase{&r.Idle, &r.Admission, &r.NoAdmission, &r.RepairAlone}
		for j := range specs {
			k := (j + rep) % len(specs)
			ph := specs[k]
			if len(cfg.Phases) > 0 && !slices.Contains(cfg.Phases, ph.tag) {
				continue
			}
			profile := ""
			if cfg.ProfileDir != "" {
				profile = filepath.Join(cfg.ProfileDir, fmt.Sprintf("rep%d-%s.pprof", rep, ph.tag))
			}
			var p LoadPhase
			run := func(source reconcile.Replica) error {
				var err error
				p, err = loadPhase(ctx, cfg, filepath.Join(root, fmt.Sprintf("dst%d-%d", rep, k)), source, srcKeys, ph.loop, ph.admission, ph.writer, rng, profile)
				return err
			}
			var err error
			if ph.loop {
				err = withSourceCopy(ctx, cfg, src, filepath.Join(root, fmt.Sprintf("src%d-%d", rep, k)), run)
			} else {
				err = run(nil)
			}
			if err != nil {
				return res, fmt.Errorf("bench: repetition %d, phase %q: %w", rep, ph.name, err)
			}
			p.Name = ph.name
			*outs[k] = p
		}
		r.P99RatioAdmission = float64(r.Admission.P99) / float64(r.Idle.P99)
		r.ThroughputRatioAdmission = r.Admission.OpsPerSec / r.Idle.OpsPerSec
		r.P99RatioNoAdmission = float64(r.NoAdmission.P99) / float64(r.Idle.P99)
		r.ThroughputRatioNoAdmission = r.NoAdmission.OpsPerSec / r.Idle.OpsPerSec
		if r.RepairAlone.RepairedPerSec > 0 {
			r.RepairRatioAdmission = r.Admission.RepairedPerSec / r.RepairAlone.RepairedPerSec
			r.RepairRatioNoAdmission = r.NoAdmission.RepairedPerSec / r.RepairAlone.RepairedPerSec
		}
		res.Reps = append(res.Reps, r)
	}
	pick := func(f func(LoopLoadRep) LoadPhase) []LoadPhase {
		var ps []LoadPhase
		for _, r := range res.Reps {
			ps = append(ps, f(r))
		}
		return ps
	}
	ratio := func(f func(LoopLoadRep) float64) float64 {
		var xs []float64
		for _, r := range res.Reps {
			xs = append(xs, f(r))
		}
		return median(xs)
	}
	res.Idle = MedianPhase(pick(func(r LoopLoadRep) LoadPhase { return r.Idle }))
	res.Admission = MedianPhase(pick(func(r LoopLoadRep) LoadPhase { return r.Admission }))
	res.NoAdmission = MedianPhase(pick(func(r LoopLoadRep) LoadPhase { return r.NoAdmission }))
	res.RepairAlone = MedianPhase(pick(func(r LoopLoadRep) LoadPhase { return r.RepairAlone }))
	res.RepairRatioAdmission = ratio(func(r LoopLoadRep) float64 { return r.RepairRatioAdmission })
	res.RepairRatioNoAdmission = ratio(func(r LoopLoadRep) float64 { return r.RepairRatioNoAdmission })
	res.P99RatioAdmission = ratio(func(r LoopLoadRep) float64 { return r.P99RatioAdmission })
	res.ThroughputRatioAdmission = ratio(func(r LoopLoadRep) float64 { return r.ThroughputRatioAdmission })
	res.P99RatioNoAdmission = ratio(func(r LoopLoadRep) float64 { return r.P99RatioNoAdmission })
	res.ThroughputRatioNoAdmission = ratio(func(r LoopLoadRep) float64 { return r.ThroughputRatioNoAdmission })
	return res, nil
}

// MedianPhase returns the phase whose every numeric figure is the median of
// that figure over ps (the figures may come from different phases); the
// name, session counts and error are the first phase's.
func MedianPhase(ps []LoadPhase) LoadPhase {
	if len(ps) == 0 {
		return LoadPhase{}
	}
	f := func(g func(LoadPhase) float64) float64 {
		xs := make([]float64, len(ps))
		for i, p := range ps {
			xs[i] = g(p)
		}
		return median(xs)
	}
	out := ps[0]
	out.Ops = int(f(func(p LoadPhase) float64 { return float64(p.Ops) }))
	out.OpsPerSec = f(func(p LoadPhase) float64 { return p.OpsPerSec })
	out.P50 = time.Duration(f(func(p LoadPhase) float64 { return float64(p.P50) }))
	out.P99 = time.Duration(f(func(p LoadPhase) float64 { return float64(p.P99) }))
	out.P999 = time.Duration(f(func(p LoadPhase) float64 { return float64(p.P999) }))
	out.KeysRepaired = uint64(f(func(p LoadPhase) float64 { return float64(p.KeysRepaired) }))
	out.RepairedPerSec = f(func(p LoadPhase) float64 { return p.RepairedPerSec })
	out.Missing = int(f(func(p LoadPhase) float64 { return float64(p.Missing) }))
	out.Scale = f(func(p LoadPhase) float64 { return p.Scale })
	out.MinScale = f(func(p LoadPhase) float64 { return p.MinScale })
	out.MeanScale = f(func(p LoadPhase) float64 { return p.MeanScale })
	out.Decreases = uint64(f(func(p LoadPhase) float64 { return float64(p.Decreases) }))
	out.TailSeconds = f(func(p LoadPhase) float64 { return p.TailSeconds })
	out.RemainingEstimate = uint64(f(func(p LoadPhase) float64 { return float64(p.RemainingEstimate) }))
	out.LoopRate = f(func(p LoadPhase) float64 { return p.LoopRate })
	out.BoundedSessions = int(f(func(p LoadPhase) float64 { return float64(p.BoundedSessions) }))
	out.TailMissing = int(f(func(p LoadPhase) float64 { return float64(p.TailMissing) }))
	out.CPUCores = f(func(p LoadPhase) float64 { return p.CPUCores })
	out.GCCores = f(func(p LoadPhase) float64 { return p.GCCores })
	out.WriterCPU = f(func(p LoadPhase) float64 { return p.WriterCPU })
	out.WriterWait = f(func(p LoadPhase) float64 { return p.WriterWait })
	out.OpsPerWriterCPUSecond = f(func(p LoadPhase) float64 { return p.OpsPerWriterCPUSecond })
	return out
}

// withSourceCopy runs fn with a fresh copy of the pristine source replica
// src in dir (a Pebble checkpoint: hard links, with the tree's persisted
// state), opened in this process or served by cfg.SourceServer, and removes
// the copy afterwards.
func withSourceCopy(ctx context.Context, cfg LoopLoadConfig, src *engine.Engine, dir string, fn func(reconcile.Replica) error) error {
	if err := src.DB().Checkpoint(dir); err != nil {
		return fmt.Errorf("bench: copy of the source: %w", err)
	}
	defer os.RemoveAll(dir)
	if len(cfg.SourceServer) > 0 {
		srv, err := startSourceServer(ctx, cfg.SourceServer, dir)
		if err != nil {
			return err
		}
		defer srv.stop()
		return fn(srv.replica())
	}
	cp, err := engine.Open(dir, &engine.Options{ReplicaID: "src", CheckpointInterval: -1})
	if err != nil {
		return err
	}
	err = fn(cp)
	if cerr := cp.Close(); err == nil {
		err = cerr
	}
	return err
}

// median returns the median of xs (the mean of the middle two for an even
// count); it sorts xs.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// loadPhase runs one phase on a fresh replica in dir. Each phase has its
// own throttles and admission controller (admission learns its baseline in
// the warm-up, as on a node whose loop was idle for a while).
func loadPhase(ctx context.Context, cfg LoopLoadConfig, dir string, src reconcile.Replica, srcKeys map[string]struct{},
	withLoop, withAdmission, withWriter bool, rng *rand.Rand, profile string) (LoadPhase, error) {
	out := LoadPhase{Sessions: make(map[string]uint64), Reasons: make(map[string]int)}
	// The node as serve builds it (package plugin/node): the receiving
	// replica, its throttles and admission control; with the loop, the
	// source as its one peer, the loop starting after the warm-up.
	busy := cfg.BusyFraction
	if busy == 0 {
		busy = repair.DefaultLoopBusyFraction
	}
	if busy <= 0 {
		busy = -1 // no budget
	}
	var (
		mu        sync.Mutex
		repaired  uint64
		loopStart time.Time
	)
	ncfg := node.Config{
		Dir:    dir,
		Engine: engine.Options{ReplicaID: "dst", CheckpointInterval: time.Second},
		// Without admission control the controller still runs (it
		// observes) but scales nothing.
		Admission:         node.AdmissionObserve,
		AdmissionInterval: cfg.AdmissionInterval,
		ScanBytesPerSec:   cfg.ScanBytesPerSec, ScanKeysPerSec: cfg.ScanKeysPerSec, WriteBytesPerSec: cfg.WriteBytesPerSec,
		BusyFraction: busy,
		RepairFloor:  cfg.RepairFloor, RepairCeiling: cfg.RepairCeiling,
		Scheduler:   repair.SchedulerConfig{Interval: 50 * time.Millisecond, MinInterval: 10 * time.Millisecond, MaxInterval: time.Second},
		SessionKeys: cfg.MaxSessionKeys,
		LoopDelay:   cfg.Warmup,
		OnSession: func(r repair.SessionReport) {
			mu.Lock()
			defer mu.Unlock()
			if cfg.SessionLog != nil {
				fmt.Fprintf(cfg.SessionLog, "session %d: %s after %.2fs (%s since the loop started): bounded %t, remaining %d, %s err=%v\n",
					r.ID, r.Outcome, r.Stats.Duration.Seconds(), time.Since(loopStart).Round(time.Millisecond), r.Stats.Bounded, r.Stats.Remaining, r.Stats, r.Err)
			}
			repaired += r.Stats.KeysRepaired()
			out.Sessions[r.Outcome]++
			if r.Stats.Bounded {
				out.BoundedSessions++
			}
			if r.Err != nil && (out.Err == "" || !errors.Is(r.Err, context.Canceled)) {
				// The first error, unless a later one says more than
				// the cancellation that ends the phase.
				if out.Err == "" || strings.Contains(out.Err, "context canceled") {
					out.Err = r.Err.Error()
				}
			}
		},
	}
	if withAdmission {
		ncfg.Admission = node.AdmissionOn
	}
	if withLoop {
		ncfg.Replicas = []repair.Peer{{ID: "src", Replica: src}}
	}
	var logRound func(reconcile.Progress) // set before the node runs
	if cfg.RoundLog != nil {
		ncfg.OnRound = func(p reconcile.Progress) { logRound(p) }
	}
	nd, err := node.Open(ncfg)
	if err != nil {
		return out, err
	}
	defer nd.Close()
	dst, adm, loop := nd.Engine(), nd.Admission(), nd.Loop()
	scan, write := nd.Throttles()
	logRound = roundLogger(cfg.RoundLog, scan, write)
	if withLoop && !withAdmission {
		// The throttles held at admission control's ceiling (the most
		// the loop may take), never scaled: an uncontrolled loop.
		ceiling := cfg.RepairCeiling
		if ceiling == 0 {
			ceiling = repair.DefaultMaxScale
		}
		scan.SetScale(ceiling)
		write.SetScale(ceiling)
	}
	if err := dst.WaitReady(ctx); err != nil {
		return out, err
	}
	actx, stopNode := context.WithCancel(ctx)
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- nd.Run(actx) }()
	defer func() {
		stopNode()
		<-nodeDone
	}()
	if cfg.SessionLog != nil {
		// Admission control's state, a line a second, with the Go
		// scheduler's latencies (runnable to running) over the second.
		go func() {
			smp := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
			var prev []uint64
			for {
				select {
				case <-actx.Done():
					return
				case <-time.After(time.Second):
				}
				metrics.Read(smp)
				h := smp[0].Value.Float64Histogram()
				var n uint64
				var sum float64
				d := make([]uint64, len(h.Counts))
				for i, c := range h.Counts {
					if i < len(prev) {
						d[i] = c - prev[i]
					}
					n += d[i]
					lo, hi := h.Buckets[i], h.Buckets[i+1]
					if math.IsInf(hi, 1) {
						hi = lo
					}
					if math.IsInf(lo, -1) {
						lo = 0
					}
					sum += float64(d[i]) * (lo + hi) / 2
				}
				prev = append(prev[:0], h.Counts...)
				var p99 float64
				var acc uint64
				for i, c := range d {
					acc += c
					if n > 0 && float64(acc) >= 0.99*float64(n) {
						p99 = h.Buckets[i+1]
						break
					}
				}
				mean := 0.0
				if n > 0 {
					mean = sum / float64(n)
				}
				st := adm.Status()
				fmt.Fprintf(cfg.SessionLog, "admission: scale %.2f (ceiling %.0f) %v p99 %v target %v (baseline %v ± %v) saturated %t util %.2f rate %.0f recent %.0f target %.0f (baseline %.0f ± %.0f) quiet %t sched n %d mean %.1fµs p99 %.1fµs\n",
					st.Scale, st.Ceiling, st.Reasons, st.P99, st.Target, st.Baseline, st.Noise, st.Saturated, st.Utilization, st.Rate, st.RecentRate, st.RateTarget, st.RateBaseline, st.RateNoise, st.Quiet, n, mean*1e6, p99*1e6)
			}
		}()
	}

	value := make([]byte, cfg.ValueSize)
	keys := make([][]byte, 1<<16)
	for i := range keys {
		keys[i] = randKey(rng)
	}
	// The writer keeps its OS thread, so that the thread's scheduler
	// statistics are its own.
	if cfg.LockWriter {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	var lats []time.Duration
	var paceStart time.Time
	warming := false
	put := func(n int) error {
		k := keys[n%len(keys)]
		if cfg.Rate > 0 {
			// Paced: op n is due at paceStart + n/Rate. Sleep only when
			// more than 200µs ahead (timer slack is not the engine's
			// latency); a writer that falls behind catches up at once.
			due := paceStart.Add(time.Duration(float64(n) / cfg.Rate * float64(time.Second)))
			if d := time.Until(due); d > 200*time.Microsecond {
				time.Sleep(d)
			}
		}
		if !withWriter && !warming {
			// Repair alone: the warm-up wrote as in the other phases
			// (the same starting state); the phase has no foreground.
			time.Sleep(time.Millisecond)
			return nil
		}
		t0 := time.Now()
		err := dst.Put(ctx, k, value, engine.NoSync)
		lats = append(lats, time.Since(t0))
		return err
	}
	// Warm up alone (admission learns the baseline), then start the loop.
	n := 0
	warming = true
	paceStart = time.Now()
	for end := time.Now().Add(cfg.Warmup); time.Now().Before(end); n++ {
		if err := put(n); err != nil {
			return out, err
		}
	}
	lats = lats[:0]
	warming = false
	mu.Lock()
	loopStart = time.Now()
	mu.Unlock()
	before := adm.Status()
	minScale, scaleSum, scaleN := math.Inf(1), 0.0, 0
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return out, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return out, err
		}
		defer pprof.StopCPUProfile() // on error; stopping twice is harmless
		// Block and mutex profiles are cumulative: snapshots at the
		// start and the end of the phase, to compare with pprof -base.
		runtime.SetBlockProfileRate(1000)
		runtime.SetMutexProfileFraction(10)
		if err := writeProfiles(strings.TrimSuffix(profile, ".pprof"), "start"); err != nil {
			return out, err
		}
		tf, err := os.Create(strings.TrimSuffix(profile, ".pprof") + ".trace")
		if err != nil {
			return out, err
		}
		defer tf.Close()
		if err := trace.Start(tf); err != nil {
			return out, err
		}
		defer trace.Stop()
	}
	cpu0, gc0 := processCPUSeconds(), gcCPUSeconds()
	run0, wait0, schedOK := threadSchedStat()
	schedOK = schedOK && cfg.LockWriter
	start := time.Now()
	paceStart, n = start, 0
	for end := start.Add(cfg.Phase); time.Now().Before(end); n++ {
		if err := put(n); err != nil {
			return out, err
		}
		if n%1024 == 0 {
			sc := scan.Status().Scale
			minScale = min(minScale, sc)
			scaleSum += sc
			scaleN++
			if withAdmission {
				for _, r := range adm.Status().Reasons {
					out.Reasons[r]++
				}
			}
		}
	}
	elapsed := time.Since(start)
	if run1, wait1, ok := threadSchedStat(); ok && schedOK {
		out.WriterCPU = (run1 - run0).Seconds() / elapsed.Seconds()
		out.WriterWait = (wait1 - wait0).Seconds() / elapsed.Seconds()
		if run1 > run0 {
			out.OpsPerWriterCPUSecond = float64(len(lats)) / (run1 - run0).Seconds()
		}
	}
	out.CPUCores = (processCPUSeconds() - cpu0) / elapsed.Seconds()
	out.GCCores = (gcCPUSeconds() - gc0) / elapsed.Seconds()
	if profile != "" {
		pprof.StopCPUProfile()
		trace.Stop()
		if err := writeProfiles(strings.TrimSuffix(profile, ".pprof"), "end"); err != nil {
			return out, err
		}
	}
	st := adm.Status()
	out.Ops = len(lats)
	out.OpsPerSec = float64(len(lats)) / elapsed.Seconds()
	ps := percentiles(lats, 0.5, 0.99, 0.999)
	out.P50, out.P99, out.P999 = ps[0], ps[1], ps[2]
	mu.Lock()
	out.KeysRepaired = repaired
	mu.Unlock()
	out.Scale, out.MinScale = scan.Status().Scale, min(minScale, scan.Status().Scale)
	if scaleN > 0 {
		out.MeanScale = scaleSum / float64(scaleN)
	}
	if withAdmission {
		out.Decreases = st.Decreases - before.Decreases
		out.DecreasesByReason = make(map[string]uint64)
		for r, n := range st.DecreasesByReason {
			if d := n - before.DecreasesByReason[r]; d > 0 {
				out.DecreasesByReason[r] = d
			}
		}
	}
	if loop != nil {
		rp := loop.Status().Repair
		out.RemainingEstimate, out.LoopRate = rp.Remaining, rp.Rate
	}
	out.Missing = len(srcKeys)
	if withLoop {
		if out.Missing, err = missing(ctx, dst, srcKeys); err != nil {
			return out, err
		}
	}
	out.RepairedPerSec = float64(len(srcKeys)-out.Missing) / elapsed.Seconds()
	if withLoop && cfg.Tail > 0 {
		// The foreground stops; the loop must finish the repair on its own.
		tailStart := time.Now()
		for out.Missing > 0 && time.Since(tailStart) < cfg.Tail {
			time.Sleep(250 * time.Millisecond)
			for _, r := range adm.Status().Reasons {
				out.Reasons["tail "+r]++
			}
			if out.TailMissing, err = missing(ctx, dst, srcKeys); err != nil {
				return out, err
			}
			if out.TailMissing == 0 {
				break
			}
		}
		if out.Missing > 0 {
			out.TailSeconds = time.Since(tailStart).Seconds()
		}
	}
	return out, nil
}

// roundLogger returns a SyncOptions.Progress that writes a line per round
// to w (nil: none): the round's wall time, what its requests moved, and the
// busy time the throttles were charged meanwhile.
func roundLogger(w io.Writer, scan, write *repair.Throttle) func(reconcile.Progress) {
	if w == nil {
		return nil
	}
	var mu sync.Mutex
	last := time.Now()
	var prev reconcile.Stats
	busy := func() time.Duration { return scan.Status().BusyTaken + write.Status().BusyTaken }
	lastBusy := busy()
	return func(p reconcile.Progress) {
		mu.Lock()
		defer mu.Unlock()
		now, b := time.Now(), busy()
		st := p.Stats
		if st.Rounds < prev.Rounds {
			prev = reconcile.Stats{} // a new session
		}
		d := func(get func(reconcile.Stats) uint64) uint64 { return get(st) - get(prev) }
		fmt.Fprintf(w, "  round %d: %6.3fs busy %6.3fs fp %d keys %d sketches %d records %d repaired %d remaining %d\n",
			st.Rounds, now.Sub(last).Seconds(), (b - lastBusy).Seconds(),
			d(func(s reconcile.Stats) uint64 { return s.A.Total().Fingerprints + s.B.Total().Fingerprints }),
			d(func(s reconcile.Stats) uint64 { return s.A.Total().KeyLists + s.B.Total().KeyLists }),
			d(func(s reconcile.Stats) uint64 { return s.A.Total().Sketches + s.B.Total().Sketches }),
			d(func(s reconcile.Stats) uint64 { return s.A.Total().Records + s.B.Total().Records }),
			d(func(s reconcile.Stats) uint64 { return s.KeysRepaired() }), st.Remaining)
		last, lastBusy, prev = now, b, st
	}
}

// writeProfiles writes the block and mutex profiles to
// <prefix>.{block,mutex}-<when>.pprof.
func writeProfiles(prefix, when string) error {
	for _, name := range []string{"block", "mutex"} {
		f, err := os.Create(fmt.Sprintf("%s.%s-%s.pprof", prefix, name, when))
		if err != nil {
			return err
		}
		err = pprof.Lookup(name).WriteTo(f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// gcCPUSeconds returns the CPU time the Go runtime has spent on garbage
// collection so far (an estimate, updated at least at every GC cycle; see
// runtime/metrics).
func gcCPUSeconds() float64 {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64 {
		return 0
	}
	return s[0].Value.Float64()
}

// keySet returns every key of e's partition 0.
func keySet(ctx context.Context, e *engine.Engine) (map[string]struct{}, error) {
	set := make(map[string]struct{})
	req := reconcile.RangeScanRequest{Partition: 0, Limit: 10000}
	for {
		res, err := e.RangeScan(ctx, req)
		if err != nil {
			return nil, err
		}
		for _, ent := range res.Entries {
			set[string(ent.Key)] = struct{}{}
		}
		if !res.More {
			return set, nil
		}
		req.Range.Start = res.Next
	}
}

// missing counts the keys of want that e lacks.
func missing(ctx context.Context, e *engine.Engine, want map[string]struct{}) (int, error) {
	have, err := keySet(ctx, e)
	if err != nil {
		return 0, err
	}
	n := 0
	for k := range want {
		if _, ok := have[k]; !ok {
			n++
		}
	}
	return n, nil
}

func percentiles(ds []time.Duration, ps ...float64) []time.Duration {
	out := make([]time.Duration, len(ps))
	if len(ds) == 0 {
		return out
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	for i, p := range ps {
		out[i] = s[min(max(int(math.Ceil(p*float64(len(s))))-1, 0), len(s)-1)]
	}
	return out
}

func randKey(rng *rand.Rand) []byte {
	k := binary.BigEndian.AppendUint64(nil, rng.Uint64())
	k = binary.BigEndian.AppendUint64(k, rng.Uint64())
	if k[0] == 0xff {
		k[0] = 0xfe
	}
	return k
}

func loopScratch(dir string) (string, func(), error) {
	d, err := os.MkdirTemp(dir, "pebble-ae-loop-")
	if err != nil {
		return "", nil, err
	}
	return d, func() { os.RemoveAll(d) }, nil
}

// ScanRateConfig configures ScanRate.
type ScanRateConfig struct {
	Dir       string
	Keys      int     // default 200000
	ValueSize int     // default 100
	Limit     float64 // bytes/s (default 8 MiB/s)
}

// ScanRateResult is the achieved rate of a throttled tree rebuild.
type ScanRateResult struct {
	Keys            int     `json:"keys"`
	LimitBytesPerS  float64 `json:"limit_bytes_per_sec"`
	BytesScanned    uint64  `json:"bytes_scanned"`
	Seconds         float64 `json:"seconds"`
	AchievedBytesPS float64 `json:"achieved_bytes_per_sec"`
	Ratio           float64 `json:"ratio"`
}

// ScanRate rebuilds the tree of an engine holding Keys records with its
// scans throttled to Limit bytes/s (engine.Options.Throttle =
// repair.Throttle.Wait) and reports the achieved rate.
func ScanRate(ctx context.Context, cfg ScanRateConfig) (ScanRateResult, error) {
	if err := nonNegative(intField{"keys", cfg.Keys}, intField{"value size", cfg.ValueSize}); err != nil {
		return ScanRateResult{}, err
	}
	if cfg.Limit < 0 {
		return ScanRateResult{}, badConfig("limit %v B/s: want >= 0 (0: the default)", cfg.Limit)
	}
	if cfg.Keys == 0 {
		cfg.Keys = 200_000
	}
	if cfg.ValueSize == 0 {
		cfg.ValueSize = 100
	}
	if cfg.Limit == 0 {
		cfg.Limit = 8 << 20
	}
	res := ScanRateResult{Keys: cfg.Keys, LimitBytesPerS: cfg.Limit}
	root, cleanup, err := loopScratch(cfg.Dir)
	if err != nil {
		return res, err
	}
	defer cleanup()
	th, err := repair.NewThrottle("scan", repair.ThrottleConfig{BytesPerSec: cfg.Limit})
	if err != nil {
		return res, err
	}
	var gate sync.Mutex
	throttled := false
	e, err := engine.Open(root, &engine.Options{ReplicaID: "s", CheckpointInterval: -1, Throttle: func(ctx context.Context, keys, bytes int) error {
		gate.Lock()
		on := throttled
		gate.Unlock()
		if !on {
			return nil
		}
		return th.Wait(ctx, keys, bytes)
	}})
	if err != nil {
		return res, err
	}
	defer e.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	value := make([]byte, cfg.ValueSize)
	for i := 0; i < cfg.Keys; {
		b := e.NewBatch()
		for j := 0; j < 1000 && i < cfg.Keys; j, i = j+1, i+1 {
			if err := b.Put(randKey(rng), value); err != nil {
				return res, err
			}
		}
		if err := b.Commit(ctx, engine.NoSync); err != nil {
			return res, err
		}
	}
	if err := e.Maintain(ctx); err != nil {
		return res, err
	}
	if err := e.Tree().MarkRebuild(ctx, -1); err != nil {
		return res, err
	}
	// Drain the bucket's initial burst so that it does not flatter the rate.
	gate.Lock()
	throttled = true
	gate.Unlock()
	_ = th.Wait(ctx, 0, th.Status().BurstBytes)
	before := th.Status().BytesTaken
	start := time.Now()
	if err := e.RebuildNotReady(ctx, nil); err != nil {
		return res, err
	}
	res.Seconds = time.Since(start).Seconds()
	res.BytesScanned = th.Status().BytesTaken - before
	res.AchievedBytesPS = float64(res.BytesScanned) / res.Seconds
	res.Ratio = res.AchievedBytesPS / cfg.Limit
	return res, nil
}
