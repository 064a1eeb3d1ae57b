package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/internal/keyspace"
	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// ScaleConfig configures the scale benchmark of sessions (bench sync
// --scale): for every size N, replica A is bulk-loaded with N records
// (sorted SSTables ingested, then the tree and entry index rebuilt from
// the data, as an engine attached to an existing DB does), replica B is a
// Pebble checkpoint of A (hard links), and for every difference count K
// sessions run between them: one right after both engines were reopened,
// then Repeat more (the repair loop's steady state), each after K fresh
// divergent writes of the six kinds. Both engines use default options.
type ScaleConfig struct {
	Dir    string // scratch directory (default: a temporary directory)
	Sizes  []int  // N values (default 1e6)
	Diffs  []int  // K values (default 0, 1, 100, 10000)
	Repeat int    // warm sessions per (N, K) (default 5)
	Seed   uint64
	// PluginPath, if set, is the pebble-ae binary: after the matrix, B is
	// served by a `pebble-ae plugin` subprocess, takes writes (some
	// recomputed, some not) and is killed with SIGKILL; the "crash" row is
	// B's open after that and the first session.
	PluginPath string
	// CPUProfile, if set, is a file to write a CPU profile of the warm
	// sessions of the last size with 100 differences (or the last K) to.
	CPUProfile string
	// Progress, if set, receives a line per step.
	Progress func(string)
}

// ScaleRow is one (N, K, phase) of the scale benchmark.
type ScaleRow struct {
	Keys  int `json:"keys"`
	Diffs int `json:"diffs"`
	// Phase is "restart" (the first session after both engines were
	// closed and opened again), "warm" (the next Repeat sessions) or
	// "crash" (the first session after B's process was killed).
	Phase    string `json:"phase"`
	Sessions int    `json:"sessions"`
	// OpenSeconds: the time to open both engines (restart only).
	OpenSeconds      float64 `json:"open_seconds,omitempty"`
	SecondsMedian    float64 `json:"seconds_median"`
	SecondsMax       float64 `json:"seconds_max"`
	CPUSecondsMedian float64 `json:"cpu_seconds_median"`
	RoundsMedian     int     `json:"rounds_median"`
	RoundsP99        int     `json:"rounds_p99"`
	RoundsMax        int     `json:"rounds_max"`
	// Metadata on the wire to and from replica B (the remote side when
	// the session runs at A), median over sessions, and a differing key.
	MetadataBytesRemoteMedian uint64 `json:"metadata_bytes_remote_median"`
	MetadataBytesRemoteP99    uint64 `json:"metadata_bytes_remote_p99"`
	MetadataBytesRemoteMax    uint64 `json:"metadata_bytes_remote_max"`
	// Worst is the session with the most metadata: its rounds, fallbacks
	// to the tree descent, and differences fetched in pairs (a chunk a
	// round).
	WorstRounds                int     `json:"worst_rounds"`
	WorstFallbacks             int     `json:"worst_fallbacks"`
	WorstLargeDifferences      int     `json:"worst_large_differences"`
	MetadataBytesPerDiffRemote float64 `json:"metadata_bytes_per_diff_remote,omitempty"`
	KeysTransferredMedian      uint64  `json:"keys_transferred_median"`
	// KeysScanned are the records the trees' recomputes read, summed over
	// both replicas and the sessions (the changed leaves only, if no work
	// is proportional to N); KeysScannedAtOpen those read by opening them
	// (restart and crash).
	KeysScanned       uint64 `json:"keys_scanned"`
	KeysScannedAtOpen uint64 `json:"keys_scanned_at_open"`
	SketchFallbacks   int    `json:"sketch_fallbacks"`
	Converged         bool   `json:"converged"`
	RSSBytes          uint64 `json:"rss_bytes"`
	// NodeRSSBytes and NodePeakRSSBytes ("served" only): the resident set
	// of B's own process, a `pebble-ae plugin` serving the sessions with
	// default options, after them, and its peak since it started.
	NodeRSSBytes     uint64 `json:"node_rss_bytes,omitempty"`
	NodePeakRSSBytes uint64 `json:"node_peak_rss_bytes,omitempty"`
}

// ScaleSetup is what building one size cost.
type ScaleSetup struct {
	Keys           int     `json:"keys"`
	LoadSeconds    float64 `json:"load_seconds"`
	RebuildSeconds float64 `json:"rebuild_seconds"`
	// SettleSeconds: the manual compaction of the internal key space
	// (the ID index the rebuild wrote in random order) before measuring.
	SettleSeconds float64 `json:"settle_seconds"`
	DiskBytesA    int64   `json:"disk_bytes_a"`
	// Memory of one engine after its sessions: the tree's leaves, the
	// symbol prefixes, Pebble's block cache and memtables (as Pebble's
	// metrics count them); and the process's (both engines, the
	// benchmark's own) Go heap in use and RSS, with its peak.
	TreeBytes      int64  `json:"tree_bytes"`
	PrefixBytes    int64  `json:"prefix_bytes"`
	BlockCacheSize int64  `json:"pebble_block_cache_bytes"`
	MemtableSize   uint64 `json:"pebble_memtable_bytes"`
	GoHeapInuse    uint64 `json:"go_heap_inuse_bytes"`
	ProcessRSS     uint64 `json:"process_rss_bytes"`
	ProcessPeakRSS uint64 `json:"process_peak_rss_bytes"`
}

// one is what one session of the scale benchmark measured.
type one struct {
	secs, cpu float64
	rounds    int
	meta      uint64
	moved     uint64
	fallbacks int
	large     int
	converged bool
}

// ScaleResult is the whole matrix.
type ScaleResult struct {
	Setups []ScaleSetup `json:"setups"`
	Rows   []ScaleRow   `json:"rows"`
}

func (c *ScaleConfig) defaults() error {
	if len(c.Sizes) == 0 {
		c.Sizes = []int{1_000_000}
	}
	if c.Diffs == nil {
		c.Diffs = []int{0, 1, 100, 10_000}
	}
	if c.Repeat == 0 {
		c.Repeat = 5
	}
	for _, n := range c.Sizes {
		if n <= 0 {
			return badConfig("size %d: want > 0", n)
		}
	}
	for _, k := range c.Diffs {
		if k < 0 {
			return badConfig("diffs %d: want >= 0", k)
		}
	}
	if c.Repeat < 0 {
		return badConfig("repeat %d: want >= 0", c.Repeat)
	}
	return nil
}

// Scale runs the scale benchmark.
func Scale(ctx context.Context, cfg ScaleConfig) (ScaleResult, error) {
	var res ScaleResult
	if err := cfg.defaults(); err != nil {
		return res, err
	}
	say := func(format string, args ...any) {
		if cfg.Progress != nil {
			cfg.Progress(fmt.Sprintf(format, args...))
		}
	}
	for _, n := range cfg.Sizes {
		dir, cleanup, err := scratchDir(cfg.Dir, fmt.Sprintf("scale-%d", n))
		if err != nil {
			return res, err
		}
		setup, rows, err := scaleSize(ctx, dir, n, cfg, say)
		cleanup()
		if err != nil {
			return res, err
		}
		res.Setups = append(res.Setups, setup)
		res.Rows = append(res.Rows, rows...)
	}
	return res, nil
}

// scaleKey returns the i-th of n sorted 16-byte keys: 8 bytes spread
// evenly below 0xfe00... with a pseudo-random offset, then 8 pseudo-random
// bytes (so any key can be named again from i alone).
func scaleKey(dst []byte, i, n int, seed uint64) []byte {
	stride := (uint64(0xfe) << 56) / uint64(n)
	hi := uint64(i)*stride + splitmix64(seed^uint64(i))%stride
	dst = binary.BigEndian.AppendUint64(dst[:0], hi)
	return binary.BigEndian.AppendUint64(dst, splitmix64(seed^uint64(i)^0x9e3779b97f4a7c15))
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// bulkLoad writes n LWW records of 100 random bytes to sorted SSTables
// and ingests them into e's DB (behind the tree's back: the caller
// rebuilds the tree).
func bulkLoad(ctx context.Context, e *engine.Engine, dir string, n int, seed uint64) error {
	const perTable = 1 << 20
	ts := record.Timestamp{WallTime: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()}
	value := make([]byte, 104) // whole words; records take 100
	var key, rec []byte
	for first := 0; first < n; first += perTable {
		path := filepath.Join(dir, fmt.Sprintf("load-%06d.sst", first/perTable))
		f, err := vfs.Default.Create(path, vfs.WriteCategoryUnspecified)
		if err != nil {
			return err
		}
		w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), sstable.WriterOptions{TableFormat: e.DB().TableFormat(), MergerName: engine.MergerName})
		for i := first; i < min(first+perTable, n); i++ {
			key = scaleKey(key, i, n, seed)
			for j := 0; j < len(value); j += 8 {
				binary.LittleEndian.PutUint64(value[j:], splitmix64(seed^uint64(i)<<8^uint64(j)))
			}
			rec = record.AppendLWW(rec[:0], "a", ts, value[:100], false)
			if err := w.Set(key, rec); err != nil {
				_ = w.Close()
				return err
			}
		}
		if err := w.Close(); err != nil {
			return err
		}
		if err := e.DB().Ingest(ctx, []string{path}); err != nil {
			return err
		}
	}
	return nil
}

func scaleSize(ctx context.Context, dir string, n int, cfg ScaleConfig, say func(string, ...any)) (ScaleSetup, []ScaleRow, error) {
	setup := ScaleSetup{Keys: n}
	dirA, dirB := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	openBoth := func() ([2]*engine.Engine, error) {
		var reps [2]*engine.Engine
		for i, d := range []string{dirA, dirB} {
			e, err := engine.Open(d, &engine.Options{ReplicaID: record.ReplicaID([]string{"a", "b"}[i])})
			if err != nil {
				if i == 1 {
					_ = reps[0].Close()
				}
				return reps, err
			}
			reps[i] = e
		}
		return reps, nil
	}
	// A: bulk-loaded, then its tree and entry index rebuilt.
	start := time.Now()
	a, err := engine.Open(dirA, &engine.Options{ReplicaID: "a"})
	if err != nil {
		return setup, nil, err
	}
	say("N=%d: loading A", n)
	if err := bulkLoad(ctx, a, dir, n, cfg.Seed); err != nil {
		_ = a.Close()
		return setup, nil, err
	}
	setup.LoadSeconds = time.Since(start).Seconds()
	say("N=%d: loaded in %.1f s; rebuilding A's tree and entry index", n, setup.LoadSeconds)
	start = time.Now()
	if err := a.Tree().MarkRebuild(ctx, -1); err != nil {
		_ = a.Close()
		return setup, nil, err
	}
	if err := a.Maintain(ctx); err != nil {
		_ = a.Close()
		return setup, nil, err
	}
	setup.RebuildSeconds = time.Since(start).Seconds()
	// The rebuild wrote the whole ID index at once, in random key order:
	// compact it, as a node that has run for a while has, instead of
	// measuring sessions against the bulk load's compaction debt.
	say("N=%d: rebuilt in %.1f s; compacting the internal key space", n, setup.RebuildSeconds)
	start = time.Now()
	if err := a.DB().Compact(ctx, keyspace.InternalPrefix, keyspace.InternalEnd, true); err != nil {
		_ = a.Close()
		return setup, nil, err
	}
	setup.SettleSeconds = time.Since(start).Seconds()
	say("N=%d: compacted in %.1f s; B is a checkpoint of A", n, setup.SettleSeconds)
	if err := a.DB().Checkpoint(dirB); err != nil {
		_ = a.Close()
		return setup, nil, err
	}
	if err := a.Close(); err != nil {
		return setup, nil, err
	}
	setup.DiskBytesA = dirSize(dirA)

	var rows []ScaleRow
	rng := splitmix64(cfg.Seed ^ 0x5ca1e)
	next := func() uint64 { rng = splitmix64(rng); return rng }
	value := make([]byte, 104) // whole words; writes take 100
	diverge := func(reps [2]*engine.Engine, k int) error {
		for i := range k {
			side := reps[i%2]
			var key []byte
			if i%numKinds < 2 {
				key = binary.BigEndian.AppendUint64(nil, next()%(uint64(0xfe)<<56))
				key = binary.BigEndian.AppendUint64(key, next())
			} else {
				key = scaleKey(nil, int(next()%uint64(n)), n, cfg.Seed)
			}
			for j := 0; j < len(value); j += 8 {
				binary.LittleEndian.PutUint64(value[j:], next())
			}
			var err error
			if i%numKinds >= 4 {
				err = side.Delete(ctx, key, engine.NoSync)
			} else {
				err = side.Put(ctx, key, value[:100], engine.NoSync)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	session := func(reps [2]*engine.Engine, k int) (one, error) {
		if err := diverge(reps, k); err != nil {
			return one{}, err
		}
		cpu0, t0 := processCPUSeconds(), time.Now()
		stats, err := reconcile.SyncAll(ctx, reps[0], reps[1], reconcile.SyncOptions{})
		o := one{secs: time.Since(t0).Seconds(), cpu: processCPUSeconds() - cpu0}
		if err != nil {
			return o, fmt.Errorf("bench: scale session N=%d K=%d: %w", n, k, err)
		}
		var total reconcile.Stats
		for _, st := range stats {
			total = total.Add(st)
		}
		o.rounds, o.meta, o.moved = total.Rounds, total.B.Total().Metadata(), total.KeysTransferred
		o.fallbacks, o.large, o.converged = total.SketchFallbacks, total.LargeDifferences, total.Converged
		return o, nil
	}
	row := func(k int, phase string, os []one, scanned uint64) ScaleRow {
		r := ScaleRow{Keys: n, Diffs: k, Phase: phase, Sessions: len(os), Converged: true, KeysScanned: scanned}
		var secs, cpus []float64
		var rounds []int
		var metas, moved []uint64
		for _, o := range os {
			secs, cpus, rounds = append(secs, o.secs), append(cpus, o.cpu), append(rounds, o.rounds)
			metas, moved = append(metas, o.meta), append(moved, o.moved)
			r.SketchFallbacks += o.fallbacks
			r.Converged = r.Converged && o.converged
		}
		slices.Sort(secs)
		slices.Sort(cpus)
		slices.Sort(rounds)
		slices.Sort(metas)
		slices.Sort(moved)
		r.SecondsMedian, r.SecondsMax = secs[len(secs)/2], secs[len(secs)-1]
		r.CPUSecondsMedian = cpus[len(cpus)/2]
		p99 := len(os) * 99 / 100
		r.RoundsMedian, r.RoundsP99, r.RoundsMax = rounds[len(rounds)/2], rounds[p99], rounds[len(rounds)-1]
		r.MetadataBytesRemoteMedian, r.MetadataBytesRemoteP99, r.MetadataBytesRemoteMax = metas[len(metas)/2], metas[p99], metas[len(metas)-1]
		worst := os[0]
		for _, o := range os {
			if o.meta > worst.meta {
				worst = o
			}
		}
		r.WorstRounds, r.WorstFallbacks, r.WorstLargeDifferences = worst.rounds, worst.fallbacks, worst.large
		r.KeysTransferredMedian = moved[len(moved)/2]
		if k > 0 {
			r.MetadataBytesPerDiffRemote = float64(r.MetadataBytesRemoteMedian) / float64(k)
		}
		r.RSSBytes, _ = processRSS()
		return r
	}
	scannedOf := func(reps [2]*engine.Engine) uint64 {
		return reps[0].Tree().Stats().KeysScanned + reps[1].Tree().Stats().KeysScanned
	}
	var reps [2]*engine.Engine
	for _, k := range cfg.Diffs {
		// Restart: both engines closed (checkpointed) and opened again.
		if reps[0] != nil {
			if err := errorsJoin(reps[0].Close(), reps[1].Close()); err != nil {
				return setup, rows, err
			}
		}
		t0 := time.Now()
		if reps, err = openBoth(); err != nil {
			return setup, rows, err
		}
		openSecs := time.Since(t0).Seconds()
		s0 := scannedOf(reps)
		o, err := session(reps, k)
		if err != nil {
			return setup, rows, err
		}
		r := row(k, "restart", []one{o}, scannedOf(reps)-s0)
		r.OpenSeconds, r.KeysScannedAtOpen = openSecs, s0
		rows = append(rows, r)
		say("N=%d K=%d restart: open %.2f s, session %.3f s, %d rounds, %.1f B/diff", n, k, openSecs, o.secs, o.rounds, r.MetadataBytesPerDiffRemote)
		var os []one
		s0 = scannedOf(reps)
		stopProfile := func() {}
		if cfg.CPUProfile != "" && n == cfg.Sizes[len(cfg.Sizes)-1] && (k == 100 || (!slices.Contains(cfg.Diffs, 100) && k == cfg.Diffs[len(cfg.Diffs)-1])) {
			if stopProfile, err = startCPUProfile(cfg.CPUProfile); err != nil {
				return setup, rows, err
			}
		}
		for range cfg.Repeat {
			o, err := session(reps, k)
			if err != nil {
				return setup, rows, err
			}
			os = append(os, o)
		}
		stopProfile()
		if len(os) > 0 {
			r := row(k, "warm", os, scannedOf(reps)-s0)
			rows = append(rows, r)
			say("N=%d K=%d warm: median %.3f s (%.3f s CPU), %d rounds, %.1f B/diff", n, k, r.SecondsMedian, r.CPUSecondsMedian, r.RoundsMedian, r.MetadataBytesPerDiffRemote)
		}
	}
	// Memory of one engine (A), then of the process.
	if reps[0] != nil {
		m := reps[0].DB().Metrics()
		setup.TreeBytes = int64(reps[0].Tree().MemoryBytes())
		setup.PrefixBytes = int64(reps[0].PrefixMemoryBytes())
		setup.BlockCacheSize = m.BlockCache.Size
		setup.MemtableSize = m.MemTable.Size
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		setup.GoHeapInuse = ms.HeapInuse
		setup.ProcessRSS, setup.ProcessPeakRSS = processRSS()
		if err := errorsJoin(reps[0].Close(), reps[1].Close()); err != nil {
			return setup, rows, err
		}
	}
	if cfg.PluginPath != "" {
		rs, err := scaleCrash(ctx, cfg, dirA, dirB, n, diverge, session, row, say)
		if err != nil {
			return setup, rows, err
		}
		rows = append(rows, rs...)
	}
	return setup, rows, nil
}

// scaleCrash serves B by a plugin subprocess, writes crashDiffs divergent
// records to it (a recompute between the two halves, so its entry index
// moved and some leaves are dirty again), kills it with SIGKILL, opens B
// in process and runs one session.
func scaleCrash(ctx context.Context, cfg ScaleConfig, dirA, dirB string, n int,
	diverge func([2]*engine.Engine, int) error,
	session func([2]*engine.Engine, int) (one, error),
	row func(int, string, []one, uint64) ScaleRow,
	say func(string, ...any)) ([]ScaleRow, error) {
	const crashDiffs = 100
	c, err := plugin.Open(ctx, cfg.PluginPath, "plugin", "--dir", dirB, "--id", "b")
	if err != nil {
		return nil, err
	}
	pid := c.PluginPID()
	served, err := scaleServed(ctx, cfg, dirA, n, c, pid, say)
	if err != nil {
		c.Kill()
		return nil, err
	}
	write := func(i int) error {
		key := binary.BigEndian.AppendUint64(nil, splitmix64(cfg.Seed^uint64(i)^0xc4a54)%(uint64(0xfe)<<56))
		key = binary.BigEndian.AppendUint64(key, uint64(i))
		return c.Put(ctx, key, []byte("written before the crash"), nil) // synced
	}
	for i := range crashDiffs {
		if i == crashDiffs/2 {
			if _, err := c.RangeHash(ctx, reconcile.RangeHashRequest{Ranges: []reconcile.KeyRange{{}}}); err != nil {
				c.Kill()
				return nil, err
			}
		}
		if err := write(i); err != nil {
			c.Kill()
			return nil, err
		}
	}
	// SIGKILL (os.Process.Kill), then go-plugin's Kill reaps it.
	proc, err := os.FindProcess(pid)
	if err == nil {
		err = proc.Kill()
	}
	c.Kill()
	if err != nil {
		return nil, err
	}
	say("N=%d: B killed with SIGKILL after %d writes; reopening", n, crashDiffs)
	var reps [2]*engine.Engine
	t0 := time.Now()
	b, err := engine.Open(dirB, &engine.Options{ReplicaID: "b"})
	if err != nil {
		return nil, err
	}
	openSecs := time.Since(t0).Seconds()
	atOpen := b.Tree().Stats().KeysScanned
	a, err := engine.Open(dirA, &engine.Options{ReplicaID: "a"})
	if err != nil {
		_ = b.Close()
		return nil, err
	}
	reps = [2]*engine.Engine{a, b}
	defer func() { _ = errorsJoin(a.Close(), b.Close()) }()
	s0 := a.Tree().Stats().KeysScanned + b.Tree().Stats().KeysScanned
	o, err := session(reps, 0) // the crash's writes are the difference
	if err != nil {
		return nil, err
	}
	r := row(crashDiffs, "crash", []one{o}, a.Tree().Stats().KeysScanned+b.Tree().Stats().KeysScanned-s0)
	r.OpenSeconds, r.KeysScannedAtOpen = openSecs, atOpen
	say("N=%d crash: B opened in %.2f s (%d keys scanned), session %.3f s, %d rounds, %d moved", n, openSecs, atOpen, o.secs, o.rounds, o.moved)
	return []ScaleRow{served, r}, nil
}

func errorsJoin(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// processRSS returns the process's resident set size and its peak
// (Linux; zero elsewhere).
func processRSS() (rss, peak uint64) { return procRSS("/proc/self/status") }

// procRSS reads VmRSS and VmHWM from a /proc status file.
func procRSS(path string) (rss, peak uint64) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v << 10
		case "VmHWM:":
			peak = v << 10
		}
	}
	return rss, peak
}

// dirSize returns the bytes of the files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// scaleServed runs Repeat sessions of 100 differences between A (opened in
// process) and B served by the plugin subprocess c (pid), and reports B's
// process memory: one node at N records serving sessions.
func scaleServed(ctx context.Context, cfg ScaleConfig, dirA string, n int, c *plugin.Client, pid int, say func(string, ...any)) (ScaleRow, error) {
	const k = 100
	a, err := engine.Open(dirA, &engine.Options{ReplicaID: "a"})
	if err != nil {
		return ScaleRow{}, err
	}
	defer a.Close()
	r := ScaleRow{Keys: n, Diffs: k, Phase: "served", Converged: true}
	rng := splitmix64(cfg.Seed ^ 0x5e7ed)
	var secs []float64
	for range max(cfg.Repeat, 1) {
		for i := range k {
			rng = splitmix64(rng)
			key := binary.BigEndian.AppendUint64(nil, rng%(uint64(0xfe)<<56))
			key = binary.BigEndian.AppendUint64(key, uint64(i))
			var err error
			if i%2 == 0 {
				err = a.Put(ctx, key, []byte("served on A"), engine.NoSync)
			} else {
				err = c.Put(ctx, key, []byte("served on B"), engine.NoSync)
			}
			if err != nil {
				return r, err
			}
		}
		t0 := time.Now()
		stats, err := reconcile.SyncAll(ctx, a, c, reconcile.SyncOptions{})
		if err != nil {
			return r, fmt.Errorf("bench: served session: %w", err)
		}
		secs = append(secs, time.Since(t0).Seconds())
		for _, st := range stats {
			r.Converged = r.Converged && st.Converged
		}
		r.Sessions++
	}
	slices.Sort(secs)
	r.SecondsMedian, r.SecondsMax = secs[len(secs)/2], secs[len(secs)-1]
	r.NodeRSSBytes, r.NodePeakRSSBytes = procRSS(fmt.Sprintf("/proc/%d/status", pid))
	say("N=%d served: %d sessions through the plugin, median %.3f s; B's process RSS %d MiB (peak %d MiB)", n, r.Sessions, r.SecondsMedian, r.NodeRSSBytes>>20, r.NodePeakRSSBytes>>20)
	return r, nil
}
