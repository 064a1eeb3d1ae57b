package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/hooks"
	"github.com/pebble-ae/pebble-ae/reconcile"
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
	// ScanBytesPerSec, ScanKeysPerSec and WriteBytesPerSec configure the
	// loop's throttles (defaults 64 MiB/s, 500k keys/s, 32 MiB/s).
	ScanBytesPerSec, ScanKeysPerSec, WriteBytesPerSec float64
	// Rate is the foreground's offered load in Puts/s, paced open-loop
	// (default 20000; negative: closed loop, as fast as one writer goes).
	Rate float64
	// AdmissionInterval is admission control's window (default 100ms).
	AdmissionInterval time.Duration
	Seed              uint64
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
		c.AdmissionInterval = 100 * time.Millisecond
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
	// KeysRepaired is what the loop's sessions repaired during the phase
	// (a session cut short at the end counts what it applied); DstKeys the
	// repaired replica's records at the end (foreground keys included).
	KeysRepaired uint64 `json:"keys_repaired"`
	DstKeys      int    `json:"dst_keys"`
	// Scale is admission control's final scale; Decreases its decreases
	// during the phase.
	Scale     float64 `json:"admission_scale"`
	Decreases uint64  `json:"admission_decreases"`
}

// LoopLoadResult compares foreground Put latency and throughput on a replica
// being repaired by its loop with the same replica idle, in one run.
type LoopLoadResult struct {
	Keys int `json:"keys"`
	// Idle: no loop. Admission: the loop running the large repair with
	// admission control scaling its throttles. NoAdmission: the same
	// without admission control (throttles at their configured rates).
	Idle, Admission, NoAdmission LoadPhase
	// Ratios against Idle.
	P99RatioAdmission, ThroughputRatioAdmission     float64
	P99RatioNoAdmission, ThroughputRatioNoAdmission float64
}

// LoopLoad measures what a large repair costs foreground writes. A source
// replica holds Keys records; each phase opens a fresh, empty replica (on
// disk, NoSync) and runs one foreground writer (single blind Puts, closed
// loop) on it for Phase: first with no repair loop, then with its loop
// repairing it from the source with admission control on, then off.
// Foreground latencies are measured around each Put and fed to admission
// control (what the engine's Put does once wired).
func LoopLoad(ctx context.Context, cfg LoopLoadConfig) (LoopLoadResult, error) {
	cfg.defaults()
	res := LoopLoadResult{Keys: cfg.Keys}
	root, cleanup, err := loopScratch(cfg.Dir)
	if err != nil {
		return res, err
	}
	defer cleanup()
	src, err := engine.Open(filepath.Join(root, "src"), &engine.Options{ReplicaID: "src", CheckpointInterval: -1})
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
	if err := src.Checkpoint(ctx); err != nil {
		return res, err
	}
	// One admission controller for the run: its latency baseline is
	// learned in the idle phase, as on a node that runs for months.
	scan, err := reconcile.NewThrottle("scan", reconcile.ThrottleConfig{BytesPerSec: cfg.ScanBytesPerSec, KeysPerSec: cfg.ScanKeysPerSec})
	if err != nil {
		return res, err
	}
	write, err := reconcile.NewThrottle("write", reconcile.ThrottleConfig{BytesPerSec: cfg.WriteBytesPerSec})
	if err != nil {
		return res, err
	}
	adm, err := engine.NewAdmission(engine.AdmissionConfig{Throttles: []*reconcile.Throttle{scan, write}, Interval: cfg.AdmissionInterval})
	if err != nil {
		return res, err
	}
	actx, stopAdm := context.WithCancel(ctx)
	defer stopAdm()
	go func() { _ = adm.Run(actx) }()

	for i, ph := range []struct {
		name      string
		loop      bool
		admission bool
		out       *LoadPhase
	}{
		{"idle", false, true, &res.Idle},
		{"loop, admission on", true, true, &res.Admission},
		{"loop, admission off", true, false, &res.NoAdmission},
	} {
		p, err := loadPhase(ctx, cfg, filepath.Join(root, fmt.Sprintf("dst%d", i)), src, adm, scan, write, ph.loop, ph.admission, rng)
		if err != nil {
			return res, fmt.Errorf("bench: phase %q: %w", ph.name, err)
		}
		p.Name = ph.name
		*ph.out = p
	}
	res.P99RatioAdmission = float64(res.Admission.P99) / float64(res.Idle.P99)
	res.ThroughputRatioAdmission = res.Admission.OpsPerSec / res.Idle.OpsPerSec
	res.P99RatioNoAdmission = float64(res.NoAdmission.P99) / float64(res.Idle.P99)
	res.ThroughputRatioNoAdmission = res.NoAdmission.OpsPerSec / res.Idle.OpsPerSec
	return res, nil
}

func loadPhase(ctx context.Context, cfg LoopLoadConfig, dir string, src *engine.Engine, adm *engine.Admission,
	scan, write *reconcile.Throttle, withLoop, withAdmission bool, rng *rand.Rand) (LoadPhase, error) {
	var out LoadPhase
	scan.SetScale(1)
	write.SetScale(1)
	dst, err := engine.Open(dir, &engine.Options{ReplicaID: "dst", CheckpointInterval: time.Second, Throttle: scan.Wait, Hooks: []hooks.Hook{adm.Hook()}})
	if err != nil {
		return out, err
	}
	defer dst.Close()
	if err := dst.WaitReady(ctx); err != nil {
		return out, err
	}
	adm.Attach(dst)
	observe := adm.ObserveForeground
	if !withAdmission {
		// Admission control is off: nobody scales the throttles.
		a2, err := engine.NewAdmission(engine.AdmissionConfig{})
		if err != nil {
			return out, err
		}
		observe = a2.ObserveForeground
	}
	before := adm.Status().Decreases

	value := make([]byte, cfg.ValueSize)
	keys := make([][]byte, 1<<16)
	for i := range keys {
		keys[i] = randKey(rng)
	}
	var lats []time.Duration
	var paceStart time.Time
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
		t0 := time.Now()
		err := dst.Put(ctx, k, value, engine.NoSync)
		d := time.Since(t0)
		observe(d)
		lats = append(lats, d)
		return err
	}
	// Warm up alone (admission learns the baseline), then start the loop.
	n := 0
	paceStart = time.Now()
	for end := time.Now().Add(cfg.Warmup); time.Now().Before(end); n++ {
		if err := put(n); err != nil {
			return out, err
		}
	}
	lats = lats[:0]
	var repaired uint64
	var mu sync.Mutex
	lctx, stopLoop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if withLoop {
		loop, err := reconcile.NewLoop(reconcile.LoopConfig{
			Local:         dst,
			Peers:         []reconcile.Peer{{ID: "src", Replica: src}},
			Scheduler:     reconcile.SchedulerConfig{Interval: 50 * time.Millisecond, MinInterval: 10 * time.Millisecond, MaxInterval: time.Second},
			ScanThrottle:  scan,
			WriteThrottle: write,
			OnSession: func(r reconcile.SessionReport) {
				mu.Lock()
				repaired += r.Stats.KeysRepaired()
				mu.Unlock()
			},
		})
		if err != nil {
			stopLoop()
			return out, err
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = loop.Run(lctx) }()
	}
	start := time.Now()
	paceStart, n = start, 0
	for end := start.Add(cfg.Phase); time.Now().Before(end); n++ {
		if err := put(n); err != nil {
			stopLoop()
			wg.Wait()
			return out, err
		}
	}
	elapsed := time.Since(start)
	stopLoop()
	wg.Wait()
	st := adm.Status()
	out.Ops = len(lats)
	out.OpsPerSec = float64(len(lats)) / elapsed.Seconds()
	ps := percentiles(lats, 0.5, 0.99, 0.999)
	out.P50, out.P99, out.P999 = ps[0], ps[1], ps[2]
	mu.Lock()
	out.KeysRepaired = repaired
	mu.Unlock()
	if c, err := countKeys(ctx, dst); err == nil {
		out.DstKeys = c
	}
	out.Scale, out.Decreases = st.Scale, st.Decreases-before
	return out, nil
}

func countKeys(ctx context.Context, e *engine.Engine) (int, error) {
	hs, err := e.RangeHash(ctx, reconcile.RangeHashRequest{Partition: 0, Ranges: []reconcile.KeyRange{{}}})
	if err != nil {
		return 0, err
	}
	if len(hs) != 1 {
		return 0, errors.New("bench: bad range hash")
	}
	return int(hs[0].Fingerprint.Count), nil
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
// reconcile.Throttle.Wait) and reports the achieved rate.
func ScanRate(ctx context.Context, cfg ScanRateConfig) (ScanRateResult, error) {
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
	th, err := reconcile.NewThrottle("scan", reconcile.ThrottleConfig{BytesPerSec: cfg.Limit})
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
