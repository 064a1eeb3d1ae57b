package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/internal/campaign"
	"github.com/pebble-ae/pebble-ae/internal/loopback"
	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// KVConfig configures the application-store benchmarks (`pebble-ae bench
// write --transport` and `bench read --transport`): the same engine.KV
// calls against an engine in this process and against a replica reached
// through a transport, side by side in one run.
type KVConfig struct {
	Dir string // scratch directory (default: a temp dir)
	// Transport is the out-of-process side: "plugin" (a go-plugin
	// subprocess of PluginPath, `pebble-ae plugin`), "tcp" (a node,
	// `pebble-ae serve` of PluginPath, on loopback over mutual TLS, written
	// to as its writer identity) or "grpc" (the gRPC service in this
	// process over bufconn: the RPC cost without a second process).
	Transport  string
	PluginPath string
	KeySize    int // default 16
	ValueSize  int // default 100
	// Duration is how long each side runs each write or point-read cell
	// in each round (default DefaultKVCell).
	Duration time.Duration
	// Settle is the longest each side waits, before it runs, for both
	// processes to go idle (the compactions of the side that ran before
	// would otherwise run on the CPUs of the side measured now; default
	// DefaultKVSettle, negative: no wait).
	Settle time.Duration
	// Rounds is the number of repetitions (default 3); sides alternate
	// which runs first. Each round yields one ratio per cell.
	Rounds int
	// Slices is the number of parts each side's Duration is run in, the
	// sides alternating slice by slice within a round (default
	// DefaultKVSlices). It applies to synced writes and point reads;
	// unsynced writes run whole (a slice's flushes and compactions would
	// be settled off the clock, and the in-process side, writing faster,
	// leaves more of them), and the scan runs whole, once a side a round.
	Slices int
	Seed   uint64
	// BatchSizes, Writers and Syncs are the write cells' dimensions
	// (defaults: 1 and 100; 1 and 8; Sync and NoSync, in that order). A batch of 1 is a
	// single-key Put; larger ones are one Write of a WriteBatch.
	BatchSizes []int
	Writers    []int
	Syncs      []bool
	// Keys is the number of keys the read benchmark loads into each side
	// and scans (default 1e6).
	Keys int
	// WarmupKeys is the number of keys the write benchmark loads into each
	// side before its first cell (default DefaultKVWarmupKeys; negative:
	// none), so that every cell writes into a database that compacts, as
	// a store in use does.
	WarmupKeys int
	// Readers are the point-read cells' concurrency (default 1 and 8).
	Readers []int
}

func (c *KVConfig) ensureDefaults() error {
	if err := nonNegative(intField{"key size", c.KeySize}, intField{"value size", c.ValueSize}, intField{"rounds", c.Rounds}, intField{"keys", c.Keys}); err != nil {
		return err
	}
	if c.Transport != "plugin" && c.Transport != "grpc" && c.Transport != "tcp" {
		return badConfig("unknown transport %q (want plugin, tcp or grpc)", c.Transport)
	}
	if (c.Transport == "plugin" || c.Transport == "tcp") && c.PluginPath == "" {
		return badConfig("the %s transport needs the pebble-ae binary (PluginPath)", c.Transport)
	}
	if c.KeySize == 0 {
		c.KeySize = 16
	}
	if c.KeySize < 8 {
		return badConfig("key size %d: want at least 8", c.KeySize)
	}
	if c.ValueSize == 0 {
		c.ValueSize = 100
	}
	if c.Duration <= 0 {
		c.Duration = DefaultKVCell
	}
	if c.Slices <= 0 {
		c.Slices = DefaultKVSlices
	}
	if c.Settle == 0 {
		c.Settle = DefaultKVSettle
	}
	if c.Rounds == 0 {
		c.Rounds = 3
	}
	if c.Keys == 0 {
		c.Keys = 1_000_000
	}
	if c.WarmupKeys == 0 {
		c.WarmupKeys = DefaultKVWarmupKeys
	}
	if len(c.BatchSizes) == 0 {
		c.BatchSizes = []int{1, 100}
	}
	if len(c.Writers) == 0 {
		c.Writers = []int{1, 8}
	}
	if len(c.Syncs) == 0 {
		// Sync first: the NoSync cells write ~100x more and leave both
		// databases compacting, which slows the fsyncs that follow.
		c.Syncs = []bool{true, false}
	}
	if len(c.Readers) == 0 {
		c.Readers = []int{1, 8}
	}
	for _, n := range append(append(append([]int(nil), c.BatchSizes...), c.Writers...), c.Readers...) {
		if n <= 0 {
			return badConfig("batch sizes, writers and readers must be positive (got %d)", n)
		}
	}
	return nil
}

// DefaultKVCell is how long each side runs a cell in a round: at 1 s the
// rounds' ratios of the same cell spread over 0.5-1.4 on a quiet 2-core
// machine (2026-12-06), a memtable flush or a compaction inside one run
// moving it by half.
const DefaultKVCell = 3 * time.Second

// DefaultKVSlices is the number of alternating slices a side's run of a
// cell is cut into: the synced cells' in-process rate moved 3x between
// runs a minute apart (the shared disk), so each side's 3 s are
// interleaved with the other's.
const DefaultKVSlices = 4

// DefaultKVWarmupKeys is the write benchmark's warm-up load. Into empty
// databases the first round's writes run without compactions, and the
// in-process side, bound by CPU, gained more from that than the plugin,
// bound by round trips (batch 100 NoSync: 2.7 µs of CPU a write in the
// first round, 5.2-5.6 in the later ones; the first round's ratio 0.66
// against 0.73-1.05).
const DefaultKVWarmupKeys = 1_000_000

// warmupFirst is the first key index of the warm-up load, far from the
// write cells' (which count from 1).
const warmupFirst = 1 << 62

// DefaultKVSettle is the longest a side waits for both processes to go
// idle before it runs.
const DefaultKVSettle = 20 * time.Second

// KVCell is one measured configuration: the same calls in process and
// through the transport, Rounds times.
type KVCell struct {
	// Name says what was measured ("write batch=100 writers=8 sync").
	Name      string `json:"name"`
	BatchSize int    `json:"batch_size,omitempty"`
	Writers   int    `json:"writers,omitempty"`
	Readers   int    `json:"readers,omitempty"`
	Sync      bool   `json:"sync"`
	// Unit is what the rates count: "writes", "reads" or "keys".
	Unit string `json:"unit"`
	// Slices is the number of alternating slices of each side's run a
	// round (KVConfig.Slices, or 1).
	Slices int `json:"slices"`
	// InProcessPerSec and RemotePerSec are the medians of each side's
	// rounds.
	InProcessPerSec float64 `json:"in_process_per_sec"`
	RemotePerSec    float64 `json:"remote_per_sec"`
	// RatioMedian is the median of the rounds' remote / in-process
	// ratios; RatioMin and RatioMax their spread.
	RatioMedian float64 `json:"ratio_median"`
	RatioMin    float64 `json:"ratio_min"`
	RatioMax    float64 `json:"ratio_max"`
	// InProcessLatencyP50 and RemoteLatencyP50 are the medians of the
	// rounds' median call latencies, in microseconds (every
	// latencyEvery-th call of each caller timed; not for the scan). With
	// a fixed number of callers each waiting for its call, the rate is
	// the callers over the latency: a transport that adds D to a call of
	// latency L gives a ratio near L / (L + D).
	InProcessLatencyP50 float64 `json:"in_process_latency_p50_us,omitempty"`
	RemoteLatencyP50    float64 `json:"remote_latency_p50_us,omitempty"`
	// Goal is the ratio the issue asks of this cell (0: none, reported).
	Goal float64 `json:"goal,omitempty"`
	// Met reports RatioMedian >= Goal (cells with a goal only).
	Met  *bool     `json:"met,omitempty"`
	Runs []KVRound `json:"runs"`
}

// KVRound is one round of a cell.
type KVRound struct {
	Order           string  `json:"order"`
	InProcessPerSec float64 `json:"in_process_per_sec"`
	RemotePerSec    float64 `json:"remote_per_sec"`
	Ratio           float64 `json:"ratio"`
	// Load1 is the 1-minute load average when the round started.
	Load1 float64 `json:"load1,omitempty"`
	// SettleSeconds is how long the round waited for idle processes
	// (both sides together).
	SettleSeconds float64 `json:"settle_seconds,omitempty"`
	// InProcessCPUPerOp and RemoteCPUPerOp are the CPU time of both
	// processes (this one and the plugin's) during each side's run,
	// divided by its operations, in microseconds: where the transport's
	// cost goes when the rates are close (only where /proc is).
	InProcessCPUPerOp float64 `json:"in_process_cpu_us_per_op,omitempty"`
	RemoteCPUPerOp    float64 `json:"remote_cpu_us_per_op,omitempty"`
	// InProcessLatencyP50/P99 and RemoteLatencyP50/P99 are each side's
	// call latencies in the round, in microseconds (KVCell).
	InProcessLatencyP50 float64 `json:"in_process_latency_p50_us,omitempty"`
	InProcessLatencyP99 float64 `json:"in_process_latency_p99_us,omitempty"`
	RemoteLatencyP50    float64 `json:"remote_latency_p50_us,omitempty"`
	RemoteLatencyP99    float64 `json:"remote_latency_p99_us,omitempty"`
}

// KVResult is what an application-store benchmark measured.
type KVResult struct {
	Benchmark       string    `json:"benchmark"`
	Transport       string    `json:"transport"`
	KeySize         int       `json:"key_size"`
	ValueSize       int       `json:"value_size"`
	Keys            int       `json:"keys,omitempty"`
	WarmupKeys      int       `json:"warmup_keys,omitempty"`
	DurationSeconds float64   `json:"duration_seconds,omitempty"`
	Rounds          int       `json:"rounds"`
	Slices          int       `json:"slices"`
	CPUs            int       `json:"cpus"`
	LoadAvgStart    []float64 `json:"load_avg_start,omitempty"`
	LoadAvgEnd      []float64 `json:"load_avg_end,omitempty"`
	// LoadSeconds are the bulk loads (the read benchmark's keys, the write
	// benchmark's warm-up): in process (Write of batches of 1000, NoSync)
	// and through the transport (a Loader).
	LoadSecondsInProcess float64  `json:"load_seconds_in_process,omitempty"`
	LoadSecondsRemote    float64  `json:"load_seconds_remote,omitempty"`
	Cells                []KVCell `json:"cells"`
}

// kvSides are the two stores of a run.
type kvSides struct {
	local  *engine.Engine
	remote *plugin.Client
	// remoteEngine is the grpc transport's engine (in this process).
	remoteEngine *engine.Engine
	// node is the tcp transport's `pebble-ae serve` process.
	node    *campaign.Node
	dir     string
	cleanup bool
	// settleMax is KVConfig.Settle.
	settleMax time.Duration
}

func openKVSides(ctx context.Context, cfg *KVConfig) (*kvSides, error) {
	s := &kvSides{dir: cfg.Dir, settleMax: cfg.Settle}
	if s.dir == "" {
		d, err := os.MkdirTemp("", "pebble-ae-bench-kv-")
		if err != nil {
			return nil, err
		}
		s.dir, s.cleanup = d, true
	}
	var err error
	// The same options as `pebble-ae plugin` with its default flags.
	if s.local, err = engine.Open(filepath.Join(s.dir, "inproc"), &engine.Options{ReplicaID: "inproc"}); err != nil {
		s.close()
		return nil, err
	}
	switch cfg.Transport {
	case "plugin":
		s.remote, err = plugin.Open(ctx, cfg.PluginPath, "plugin", "--dir", filepath.Join(s.dir, "remote"), "--id", "remote")
	case "grpc":
		if s.remoteEngine, err = engine.Open(filepath.Join(s.dir, "remote"), &engine.Options{ReplicaID: "remote"}); err == nil {
			s.remote, err = plugin.InProcess(s.remoteEngine, nil, nil)
		}
	case "tcp":
		s.remote, err = s.startNode(ctx, cfg.PluginPath)
	}
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// startNode starts the tcp transport's node, `pebble-ae serve` with its
// default flags but no peers (no repair loop), and dials it as its writer.
func (s *kvSides) startNode(ctx context.Context, bin string) (*plugin.Client, error) {
	certs := filepath.Join(s.dir, "certs")
	if err := plugin.GenerateCerts(certs, []record.ReplicaID{"remote", "app"}, "127.0.0.1"); err != nil {
		return nil, err
	}
	addrs, err := loopback.FreeAddrs(1)
	if err != nil {
		return nil, err
	}
	s.node = &campaign.Node{Bin: bin, ID: "remote", Dir: filepath.Join(s.dir, "remote"), Addr: addrs[0], Certs: certs, Roles: "app=writer"}
	if err := s.node.Start(); err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := s.node.Dial(dctx, "app")
	if err != nil {
		return nil, fmt.Errorf("%w; the node printed:\n%s", err, s.node.Output())
	}
	return c, nil
}

func (s *kvSides) close() {
	if s.remote != nil {
		_ = s.remote.Close()
	}
	if s.node != nil {
		_ = s.node.Stop()
	}
	if s.remoteEngine != nil {
		_ = s.remoteEngine.Close()
	}
	if s.local != nil {
		_ = s.local.Close()
	}
	if s.cleanup {
		_ = os.RemoveAll(s.dir)
	}
}

// pids are the processes a run's work happens in: this one and the
// plugin's, if any.
func (s *kvSides) pids() []int {
	pids := []int{os.Getpid()}
	if pid := s.remote.PluginPID(); pid > 0 {
		pids = append(pids, pid)
	}
	if pid := s.node.PID(); pid > 0 {
		pids = append(pids, pid)
	}
	return pids
}

// cpuSeconds is the CPU time the sides' processes have used (user and
// system, all threads), or 0 where /proc is missing.
func (s *kvSides) cpuSeconds() float64 {
	var sum float64
	for _, pid := range s.pids() {
		t, ok := processCPU(pid)
		if !ok {
			return 0
		}
		sum += t
	}
	return sum
}

// settle waits until the sides' processes together use at most a fifth
// of a core over settleWindow (Pebble's flushes and compactions after the
// last run are done), or settleMax has passed, then syncs the files of
// both databases (what the last run left in the page cache would
// otherwise be written back during the next), and returns how long it
// took.
func (s *kvSides) settle() time.Duration {
	if s.settleMax < 0 {
		return 0
	}
	start := time.Now()
	prev := s.cpuSeconds()
	if prev == 0 {
		return 0
	}
	for time.Since(start) < s.settleMax {
		time.Sleep(settleWindow)
		cur := s.cpuSeconds()
		if cur-prev <= settleWindow.Seconds()/5 {
			break
		}
		prev = cur
	}
	syncFiles(s.dir)
	return time.Since(start)
}

// syncFiles fsyncs every regular file under dir, ignoring errors (a
// compaction may delete a file meanwhile).
func syncFiles(dir string) {
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if f, err := os.Open(path); err == nil {
			_ = f.Sync()
			_ = f.Close()
		}
		return nil
	})
}

// settleWindow is the interval over which settle judges the processes
// idle (/proc's CPU times count 10 ms ticks).
const settleWindow = 100 * time.Millisecond

// processCPU returns the user and system CPU seconds of process pid from
// /proc/<pid>/stat.
func processCPU(pid int) (float64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces: fields count from the
	// last ')'. utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return float64(utime+stime) / clockTicks, true
}

// clockTicks is USER_HZ, the unit of /proc's CPU times (100 on Linux's
// every architecture Go supports).
const clockTicks = 100

// kvKey writes the key of index i: 8 bytes of a hash of i (random order),
// then i, padded to len(dst). Keys never start with 0xff, so never in the
// reserved internal key space.
func kvKey(dst []byte, seed uint64, i uint64) []byte {
	binary.BigEndian.PutUint64(dst, splitmix(seed^i))
	dst[0] &^= 0x80 // below the reserved prefix \xff\xff
	for j := 8; j < len(dst); j++ {
		dst[j] = byte(i >> (8 * ((j - 8) % 8)))
	}
	return dst
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// measureCell runs one cell's rounds. A round runs each side for
// cfg.Duration in cfg.Slices alternating slices (in, remote, in, remote,
// ..., the first side alternating between rounds), each after a settle,
// so that a change of the machine's speed during the round (the disk's
// fsync rate, another process) falls on both sides alike. run(kv, slice,
// d) runs one slice of about d (slice numbers every slice of the cell
// uniquely) and returns its count and elapsed time.
func measureCell(cell KVCell, cfg *KVConfig, s *kvSides, run func(kv engine.KV, slice int, d time.Duration, lat *callLatencies) (int, time.Duration, error)) (KVCell, error) {
	var ratios, local, remote, localP50, remoteP50 []float64
	slice := 0
	for r := range cfg.Rounds {
		order := []string{"inproc", "remote"}
		if r%2 == 1 {
			order = []string{"remote", "inproc"}
		}
		count, elapsed, cpu := map[string]int{}, map[string]time.Duration{}, map[string]float64{}
		lat := map[string]*callLatencies{"inproc": {}, "remote": {}}
		var load1, settled float64
		if la := loadAverage(); la != nil {
			load1 = la[0]
		}
		for range cfg.Slices {
			for _, side := range order {
				var kv engine.KV = s.local
				if side == "remote" {
					kv = s.remote
				}
				settled += s.settle().Seconds()
				cpu0 := s.cpuSeconds()
				n, d, err := run(kv, slice, cfg.Duration/time.Duration(cfg.Slices), lat[side])
				slice++
				if err != nil {
					return cell, fmt.Errorf("bench: %s, %s side: %w", cell.Name, side, err)
				}
				count[side] += n
				elapsed[side] += d
				if cpu1 := s.cpuSeconds(); cpu1 > 0 {
					cpu[side] += cpu1 - cpu0
				}
			}
		}
		rate := func(side string) float64 { return float64(count[side]) / elapsed[side].Seconds() }
		cpuPerOp := func(side string) float64 {
			if count[side] == 0 {
				return 0
			}
			return cpu[side] / float64(count[side]) * 1e6
		}
		run := KVRound{Order: order[0] + "," + order[1], InProcessPerSec: rate("inproc"), RemotePerSec: rate("remote"),
			Load1: load1, SettleSeconds: settled, InProcessCPUPerOp: cpuPerOp("inproc"), RemoteCPUPerOp: cpuPerOp("remote"),
			InProcessLatencyP50: lat["inproc"].micros(0.5), InProcessLatencyP99: lat["inproc"].micros(0.99),
			RemoteLatencyP50: lat["remote"].micros(0.5), RemoteLatencyP99: lat["remote"].micros(0.99)}
		if run.InProcessPerSec > 0 {
			run.Ratio = run.RemotePerSec / run.InProcessPerSec
		}
		localP50, remoteP50 = append(localP50, run.InProcessLatencyP50), append(remoteP50, run.RemoteLatencyP50)
		cell.Runs = append(cell.Runs, run)
		ratios = append(ratios, run.Ratio)
		local = append(local, run.InProcessPerSec)
		remote = append(remote, run.RemotePerSec)
	}
	cell.InProcessPerSec, cell.RemotePerSec = median(local), median(remote)
	cell.InProcessLatencyP50, cell.RemoteLatencyP50 = median(localP50), median(remoteP50)
	cell.RatioMedian = median(ratios) // sorts ratios
	cell.RatioMin, cell.RatioMax = ratios[0], ratios[len(ratios)-1]
	if cell.Goal > 0 {
		met := cell.RatioMedian >= cell.Goal
		cell.Met = &met
	}
	return cell, nil
}

// KVWrite measures writes through the application's store, in process and
// through cfg.Transport: for every batch size, writer count and sync
// setting, each side writes new random keys for cfg.Duration.
func KVWrite(ctx context.Context, cfg KVConfig) (KVResult, error) {
	if err := cfg.ensureDefaults(); err != nil {
		return KVResult{}, err
	}
	s, err := openKVSides(ctx, &cfg)
	if err != nil {
		return KVResult{}, err
	}
	defer s.close()
	res := KVResult{Benchmark: "write", Transport: cfg.Transport, KeySize: cfg.KeySize, ValueSize: cfg.ValueSize,
		DurationSeconds: cfg.Duration.Seconds(), Rounds: cfg.Rounds, Slices: cfg.Slices, CPUs: runtime.NumCPU(), LoadAvgStart: loadAverage()}
	value := randomValue(cfg.Seed, cfg.ValueSize)
	if cfg.WarmupKeys > 0 {
		res.WarmupKeys = cfg.WarmupKeys
		res.LoadSecondsInProcess, res.LoadSecondsRemote, err = loadSides(ctx, s, &cfg, warmupFirst, cfg.WarmupKeys, value)
		if err != nil {
			return res, err
		}
	}
	var next atomic.Uint64 // key indexes: every write a new key
	for _, syncWrites := range cfg.Syncs {
		for _, batch := range cfg.BatchSizes {
			for _, writers := range cfg.Writers {
				cell := KVCell{BatchSize: batch, Writers: writers, Sync: syncWrites, Unit: "writes"}
				cell.Name = fmt.Sprintf("write batch=%d writers=%d %s", batch, writers, syncName(syncWrites))
				switch {
				case batch >= 100 && !syncWrites:
					cell.Goal = 0.7
				case writers >= 8 && syncWrites:
					cell.Goal = 0.8
				}
				wo := &engine.WriteOptions{Sync: syncWrites}
				cellCfg := cfg
				if !syncWrites {
					cellCfg.Slices = 1
				}
				cell.Slices = cellCfg.Slices
				cell, err = measureCell(cell, &cellCfg, s, func(kv engine.KV, _ int, d time.Duration, lat *callLatencies) (int, time.Duration, error) {
					return writeFor(ctx, kv, cfg, d, writers, batch, wo, value, &next, lat)
				})
				if err != nil {
					return res, err
				}
				res.Cells = append(res.Cells, cell)
			}
		}
	}
	res.LoadAvgEnd = loadAverage()
	return res, nil
}

func syncName(s bool) string {
	if s {
		return "sync"
	}
	return "nosync"
}

// writeFor runs writers goroutines writing batches of batch new keys (a
// batch of 1: Put) for d and returns the writes done.
func writeFor(ctx context.Context, kv engine.KV, cfg KVConfig, d time.Duration, writers, batch int, wo *engine.WriteOptions, value []byte, next *atomic.Uint64, lat *callLatencies) (int, time.Duration, error) {
	var (
		wg    sync.WaitGroup
		done  atomic.Int64
		first error
		mu    sync.Mutex
	)
	start := time.Now()
	deadline := start.Add(d)
	for range writers {
		wg.Go(func() {
			key := make([]byte, cfg.KeySize)
			var b engine.WriteBatch
			var own []time.Duration
			defer func() { lat.add(own) }()
			for i := 0; time.Now().Before(deadline); i++ {
				var err error
				if batch == 1 {
					kvKey(key, cfg.Seed, next.Add(1))
				} else {
					b.Reset()
					for range batch {
						b.Put(kvKey(key, cfg.Seed, next.Add(1)), value)
					}
				}
				var start time.Time
				if i%latencyEvery == 0 {
					start = time.Now()
				}
				if batch == 1 {
					err = kv.Put(ctx, key, value, wo)
				} else {
					err = kv.Write(ctx, &b, wo)
				}
				if i%latencyEvery == 0 {
					own = append(own, time.Since(start))
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
				done.Add(int64(batch))
			}
		})
	}
	wg.Wait()
	return int(done.Load()), time.Since(start), first
}

// KVRead loads cfg.Keys keys into each side (in process: Writes of 1000;
// through the transport: a Loader), then measures point reads (Get, for
// every reader count), multi-gets of 100 keys and full scans, in process
// and through cfg.Transport.
func KVRead(ctx context.Context, cfg KVConfig) (KVResult, error) {
	if err := cfg.ensureDefaults(); err != nil {
		return KVResult{}, err
	}
	s, err := openKVSides(ctx, &cfg)
	if err != nil {
		return KVResult{}, err
	}
	defer s.close()
	res := KVResult{Benchmark: "read", Transport: cfg.Transport, KeySize: cfg.KeySize, ValueSize: cfg.ValueSize, Keys: cfg.Keys,
		DurationSeconds: cfg.Duration.Seconds(), Rounds: cfg.Rounds, Slices: cfg.Slices, CPUs: runtime.NumCPU(), LoadAvgStart: loadAverage()}
	value := randomValue(cfg.Seed, cfg.ValueSize)

	// Load both sides with the same keys.
	res.LoadSecondsInProcess, res.LoadSecondsRemote, err = loadSides(ctx, s, &cfg, 0, cfg.Keys, value)
	if err != nil {
		return res, err
	}
	// Both sides settle their memtables the same way.
	if err := s.local.DB().Flush(); err != nil {
		return res, err
	}
	if s.remoteEngine != nil {
		if err := s.remoteEngine.DB().Flush(); err != nil {
			return res, err
		}
	}

	for _, readers := range cfg.Readers {
		cell := KVCell{Name: fmt.Sprintf("get readers=%d", readers), Readers: readers, Unit: "reads", Slices: cfg.Slices}
		cell, err = measureCell(cell, &cfg, s, func(kv engine.KV, slice int, d time.Duration, lat *callLatencies) (int, time.Duration, error) {
			return readFor(ctx, kv, cfg, d, readers, 1, slice, lat)
		})
		if err != nil {
			return res, err
		}
		res.Cells = append(res.Cells, cell)
	}
	cell := KVCell{Name: "getmany batch=100 readers=1", BatchSize: 100, Readers: 1, Unit: "reads", Slices: cfg.Slices}
	cell, err = measureCell(cell, &cfg, s, func(kv engine.KV, slice int, d time.Duration, lat *callLatencies) (int, time.Duration, error) {
		return readFor(ctx, kv, cfg, d, 1, 100, slice, lat)
	})
	if err != nil {
		return res, err
	}
	res.Cells = append(res.Cells, cell)
	cell = KVCell{Name: fmt.Sprintf("scan keys=%d", cfg.Keys), Unit: "keys", Goal: 0.5}
	scanCfg := cfg
	scanCfg.Slices = 1 // a slice is a full scan
	cell.Slices = 1
	cell, err = measureCell(cell, &scanCfg, s, func(kv engine.KV, _ int, _ time.Duration, _ *callLatencies) (int, time.Duration, error) {
		start := time.Now()
		n, sum := 0, 0
		_, err := kv.Scan(ctx, engine.ScanRequest{}, func(it engine.Item) error {
			n++
			sum += len(it.Value)
			return nil
		})
		if err == nil && n != cfg.Keys {
			err = fmt.Errorf("scanned %d keys, want %d", n, cfg.Keys)
		}
		return n, time.Since(start), err
	})
	if err != nil {
		return res, err
	}
	res.Cells = append(res.Cells, cell)
	res.LoadAvgEnd = loadAverage()
	return res, nil
}

// loadSides writes keys n keys, indexes first to first+n-1, into each side
// (in process: Writes of 1000, NoSync; through the transport: a Loader)
// and returns the seconds each side took.
func loadSides(ctx context.Context, s *kvSides, cfg *KVConfig, first uint64, n int, value []byte) (inProcess, remote float64, err error) {
	start := time.Now()
	var b engine.WriteBatch
	key := make([]byte, cfg.KeySize)
	for i := range n {
		b.Put(kvKey(key, cfg.Seed, first+uint64(i)), value)
		if b.Len() == 1000 || i == n-1 {
			if err := s.local.Write(ctx, &b, engine.NoSync); err != nil {
				return 0, 0, err
			}
			b.Reset()
		}
	}
	inProcess = time.Since(start).Seconds()
	start = time.Now()
	l, err := s.remote.NewLoader(ctx, &plugin.LoaderOptions{Write: engine.NoSync})
	if err != nil {
		return 0, 0, err
	}
	for i := range n {
		if err := l.Put(kvKey(key, cfg.Seed, first+uint64(i)), value); err != nil {
			_, _ = l.Close()
			return 0, 0, err
		}
	}
	if got, err := l.Close(); err != nil || got != n {
		return 0, 0, fmt.Errorf("bench: load through %s: %d of %d keys (%v)", cfg.Transport, got, n, err)
	}
	return inProcess, time.Since(start).Seconds(), nil
}

// readFor runs readers goroutines reading random loaded keys for
// d, one Get at a time (batch 1) or GetMany of batch keys.
func readFor(ctx context.Context, kv engine.KV, cfg KVConfig, d time.Duration, readers, batch, slice int, lat *callLatencies) (int, time.Duration, error) {
	var (
		wg    sync.WaitGroup
		done  atomic.Int64
		first error
		mu    sync.Mutex
	)
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	start := time.Now()
	deadline := start.Add(d)
	for r := range readers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(slice*1000+r)))
			keys := make([][]byte, batch)
			for i := range keys {
				keys[i] = make([]byte, cfg.KeySize)
			}
			var own []time.Duration
			defer func() { lat.add(own) }()
			for n := 0; time.Now().Before(deadline); n++ {
				for i := range keys {
					kvKey(keys[i], cfg.Seed, uint64(rng.IntN(cfg.Keys)))
				}
				var start time.Time
				if n%latencyEvery == 0 {
					start = time.Now()
				}
				if batch == 1 {
					_, err := kv.Get(ctx, keys[0])
					if n%latencyEvery == 0 {
						own = append(own, time.Since(start))
					}
					if err != nil {
						fail(err)
						return
					}
				} else {
					items, err := kv.GetMany(ctx, keys, nil)
					if n%latencyEvery == 0 {
						own = append(own, time.Since(start))
					}
					if err != nil {
						fail(err)
						return
					}
					for _, it := range items {
						if !it.Found {
							fail(fmt.Errorf("key %x not found", it.Key))
							return
						}
					}
				}
				done.Add(int64(batch))
			}
		})
	}
	wg.Wait()
	return int(done.Load()), time.Since(start), first
}

// latencyEvery is how often a benchmark caller times its call: one call
// in latencyEvery (the clock reads cost the fastest in-process calls a few
// percent if every call were timed).
const latencyEvery = 8

// callLatencies gathers the call latencies of one side's runs in a round.
type callLatencies struct {
	mu sync.Mutex
	d  []time.Duration
}

// add adds a caller's latencies (a nil l takes none).
func (l *callLatencies) add(ds []time.Duration) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.d = append(l.d, ds...)
	l.mu.Unlock()
}

// micros returns the q quantile of the latencies in microseconds (0 if
// none).
func (l *callLatencies) micros(q float64) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	slices.Sort(l.d)
	return float64(l.d[min(int(q*float64(len(l.d))), len(l.d)-1)]) / 1e3
}

// randomValue returns n bytes from a generator seeded by seed: one
// incompressible value every write of the benchmark carries.
func randomValue(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	v := make([]byte, n)
	for i := range v {
		v[i] = byte(rng.Uint32())
	}
	return v
}
