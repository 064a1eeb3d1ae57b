package main

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pebble-ae/pebble-ae/internal/bench"
	"github.com/pebble-ae/pebble-ae/internal/units"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"github.com/spf13/cobra"
)

func newBenchCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "bench",
		Short: "Measure pebble-ae against its baselines, side by side in one run",
		Example: `  pebble-ae bench write --keys 1000000 --json
  pebble-ae bench rebuild --keys 1000000 --json
  pebble-ae bench sync --keys 1000000 --diffs 100 --json
  pebble-ae bench write --transport plugin --json
  pebble-ae bench read --transport plugin --keys 1000000 --json`,
	}
	c.AddCommand(newBenchWriteCmd(), newBenchReadCmd(), newBenchRebuildCmd(), newBenchSyncCmd())
	return c
}

func newBenchWriteCmd() *cobra.Command {
	var cfg bench.WriteConfig
	var kv kvFlags
	var mode string
	var asJSON bool
	c := &cobra.Command{
		Use:   "write",
		Short: "Write path: engine Put vs raw Pebble Set (LWW) or Get+Set (causal); with --transport, the application's store in process vs through the plugin",
		Long: `write measures the engine's write path against raw Pebble, side by side.

With --transport plugin (or grpc) it measures instead the application's
store (engine.KV): the same Put and Write calls against an engine in this
process and against a pebble-ae plugin subprocess (or the gRPC service over
an in-memory connection), for every batch size, writer count and sync
setting, after loading --kv-warmup keys into each side, each side writing
new random keys for --kv-cell per round
(synced cells in --kv-slices slices alternating with the other side's),
each run after waiting, up to --kv-settle, for both processes to go idle
(and syncing both databases' files).
Every cell reports ratio_median (through the transport / in process).`,
		Example: `  pebble-ae bench write --keys 1000000 --json
  pebble-ae bench write --keys 200000 --mode causal
  pebble-ae bench write --transport plugin --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if kv.transport != "" {
				kc, err := kv.config(cmd, cfg.KeySize, cfg.ValueSize, cfg.Seed, cfg.Dir)
				if err != nil {
					return err
				}
				res, err := bench.KVWrite(cmd.Context(), kc)
				if err != nil {
					return err
				}
				return printKVResult(res, asJSON)
			}
			m, err := record.ParseMode(mode)
			if err != nil {
				return err
			}
			cfg.Mode = m
			res, err := bench.Write(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(res)
			}
			printWriteResult(res, cfg)
			return nil
		},
	}
	c.Flags().IntVar(&cfg.Keys, "keys", 1_000_000, "number of writes")
	c.Flags().IntVar(&cfg.KeySize, "key-size", 16, "key size in bytes")
	c.Flags().IntVar(&cfg.ValueSize, "value-size", 100, "value size in bytes")
	c.Flags().IntVar(&cfg.BatchSize, "batch", 100, "writes per batch (LWW)")
	c.Flags().StringVar(&mode, "mode", "lww", "write mode: lww or causal")
	c.Flags().BoolVar(&cfg.RandomValues, "random-values", false, "a random (incompressible) value per write instead of one constant value")
	c.Flags().IntVar(&cfg.Rounds, "rounds", 5, "repetitions, each running every side once on a fresh DB")
	c.Flags().StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the engine side of the first repetition to this file")
	c.Flags().StringVar(&cfg.PebbleCPUProfile, "pebble-cpuprofile", "", "write a CPU profile of the raw Pebble side of the first repetition to this file")
	c.Flags().BoolVar(&cfg.SameRecords, "same-records", false, "add baselines: raw Pebble writing the engine's own encoded records (the format without the engine) and, in LWW mode, each value behind the least an LWW record must carry (the floor of any format)")
	c.Flags().IntVar(&cfg.BloomBitsPerKey, "bloom-bits", 0, "give every side's Pebble a Bloom filter of this many bits a key on every level (0: Pebble's default, no filter)")
	c.Flags().StringVar(&cfg.Dir, "dir", "", "scratch directory (default: a temporary directory)")
	c.Flags().Uint64Var(&cfg.Seed, "seed", 1, "seed of the keys")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	kv.register(c, true)
	return c
}

// kvFlags are the flags of the application-store benchmarks (bench write
// and bench read with --transport).
type kvFlags struct {
	transport string
	duration  time.Duration
	settle    time.Duration
	rounds    int
	slices    int
	batches   []int
	writers   []int
	readers   []int
	sync      string
	keys      int
	warmup    int
}

func (f *kvFlags) register(c *cobra.Command, write bool) {
	fl := c.Flags()
	fl.StringVar(&f.transport, "transport", "", "measure the application's store in process vs through this transport: plugin (a pebble-ae plugin subprocess), tcp (a pebble-ae serve node on loopback, mutual TLS) or grpc (the gRPC service in this process)")
	fl.DurationVar(&f.duration, "kv-cell", bench.DefaultKVCell, "with --transport: how long each side runs each write or point-read cell in each round")
	fl.DurationVar(&f.duration, "duration", bench.DefaultKVCell, "the old name of --kv-cell")
	_ = fl.MarkDeprecated("duration", "use --kv-cell")
	fl.DurationVar(&f.settle, "kv-settle", bench.DefaultKVSettle, "with --transport: the longest each side waits before it runs for both processes to go idle (the other side's compactions done); negative: no wait")
	fl.IntVar(&f.rounds, "kv-rounds", 3, "with --transport: rounds (the sides alternate which runs first)")
	fl.IntVar(&f.slices, "kv-slices", bench.DefaultKVSlices, "with --transport: slices each side's --kv-cell is cut into, the sides alternating slice by slice (synced writes and point reads; unsynced writes and the scan run whole)")
	if write {
		fl.IntSliceVar(&f.batches, "batches", []int{1, 100}, "with --transport: batch sizes (1: single-key Put)")
		fl.IntSliceVar(&f.writers, "writers", []int{1, 8}, "with --transport: concurrent writers")
		fl.StringVar(&f.sync, "sync", "both", "with --transport: nosync, sync or both")
		fl.IntVar(&f.warmup, "kv-warmup", bench.DefaultKVWarmupKeys, "with --transport: keys loaded into each side before the first cell, so that the cells write into compacting databases (negative: none)")
	} else {
		fl.IntSliceVar(&f.readers, "readers", []int{1, 8}, "concurrent point readers")
	}
}

func (f *kvFlags) config(cmd *cobra.Command, keySize, valueSize int, seed uint64, dir string) (bench.KVConfig, error) {
	kc := bench.KVConfig{
		Dir: dir, Transport: f.transport, KeySize: keySize, ValueSize: valueSize, Seed: seed,
		Duration: f.duration, Settle: f.settle, Rounds: f.rounds, Slices: f.slices, BatchSizes: f.batches, Writers: f.writers, Readers: f.readers, Keys: f.keys, WarmupKeys: f.warmup,
	}
	switch f.sync {
	case "", "both":
		kc.Syncs = []bool{true, false}
	case "sync":
		kc.Syncs = []bool{true}
	case "nosync":
		kc.Syncs = []bool{false}
	default:
		return kc, fmt.Errorf("--sync %q: want nosync, sync or both", f.sync)
	}
	if f.transport == "plugin" || f.transport == "tcp" {
		exe, err := os.Executable()
		if err != nil {
			return kc, err
		}
		kc.PluginPath = exe
	}
	return kc, nil
}

func printKVResult(res bench.KVResult, asJSON bool) error {
	if asJSON {
		return printJSON(res)
	}
	fmt.Printf("application store (%s), in process vs %s: %d-byte keys, %d-byte values, %d rounds of %gs a side in %d slices", res.Benchmark, res.Transport, res.KeySize, res.ValueSize, res.Rounds, res.DurationSeconds, res.Slices)
	if res.Keys > 0 {
		fmt.Printf(", %d keys loaded (%.1fs in process, %.1fs through %s)", res.Keys, res.LoadSecondsInProcess, res.LoadSecondsRemote, res.Transport)
	}
	if res.WarmupKeys > 0 {
		fmt.Printf(", a warm-up of %d keys (%.1fs in process, %.1fs through %s)", res.WarmupKeys, res.LoadSecondsInProcess, res.LoadSecondsRemote, res.Transport)
	}
	fmt.Printf("\n  load average: %s before, %s after\n", loadString(res.LoadAvgStart), loadString(res.LoadAvgEnd))
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CELL\tIN PROCESS /s\tTHROUGH "+strings.ToUpper(res.Transport)+" /s\tRATIO (MEDIAN)\tMIN\tMAX\tCPU µs/OP IN, THROUGH\tLATENCY P50 µs IN, THROUGH\tGOAL")
	for _, c := range res.Cells {
		goal := "-"
		if c.Met != nil {
			goal = fmt.Sprintf(">= %.2f: met %t", c.Goal, *c.Met)
		}
		var cpuIn, cpuOut []float64
		for _, r := range c.Runs {
			cpuIn, cpuOut = append(cpuIn, r.InProcessCPUPerOp), append(cpuOut, r.RemoteCPUPerOp)
		}
		latency := "-"
		if c.InProcessLatencyP50 > 0 {
			latency = fmt.Sprintf("%.1f, %.1f", c.InProcessLatencyP50, c.RemoteLatencyP50)
		}
		fmt.Fprintf(tw, "%s\t%.0f %s\t%.0f %s\t%.3f\t%.3f\t%.3f\t%.2f, %.2f\t%s\t%s\n", c.Name, c.InProcessPerSec, c.Unit, c.RemotePerSec, c.Unit, c.RatioMedian, c.RatioMin, c.RatioMax, medianOf(cpuIn), medianOf(cpuOut), latency, goal)
	}
	return tw.Flush()
}

// medianOf returns the median of xs (0 if empty), leaving xs in order.
func medianOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

func newBenchReadCmd() *cobra.Command {
	var kv kvFlags
	var keySize, valueSize int
	var seed uint64
	var dir string
	var asJSON bool
	c := &cobra.Command{
		Use:   "read",
		Short: "The application's reads (Get, GetMany, Scan) in process vs through the plugin",
		Long: `read loads --keys keys into an engine in this process and, with a bulk
load, into a pebble-ae plugin subprocess (--transport plugin) or the gRPC
service over an in-memory connection (--transport grpc); then measures
point reads (Get) for every reader count, GetMany of 100 keys and a full
Scan of all the keys, on each side in turn. Every cell reports
ratio_median (through the transport / in process).`,
		Example: `  pebble-ae bench read --transport plugin --keys 1000000 --json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if kv.transport == "" {
				return fmt.Errorf("--transport is required: plugin or grpc")
			}
			kc, err := kv.config(cmd, keySize, valueSize, seed, dir)
			if err != nil {
				return err
			}
			res, err := bench.KVRead(cmd.Context(), kc)
			if err != nil {
				return err
			}
			return printKVResult(res, asJSON)
		},
	}
	kv.register(c, false)
	c.Flags().IntVar(&kv.keys, "keys", 1_000_000, "keys loaded into each side and scanned")
	c.Flags().IntVar(&keySize, "key-size", 16, "key size in bytes")
	c.Flags().IntVar(&valueSize, "value-size", 100, "value size in bytes")
	c.Flags().Uint64Var(&seed, "seed", 1, "seed of the keys")
	c.Flags().StringVar(&dir, "dir", "", "scratch directory (default: a temporary directory)")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func printWriteResult(res bench.WriteResult, cfg bench.WriteConfig) {
	kind := "constant"
	if res.RandomValues {
		kind = "random"
	}
	fmt.Printf("%s write path, %d keys (%d-byte keys, %d-byte %s values, batches of %d, NoSync), %d repetitions\n",
		res.Mode, res.Keys, cfg.KeySize, cfg.ValueSize, kind, res.BatchSize, res.Rounds)
	fmt.Printf("  load average: %s before, %s after\n", loadString(res.LoadAvgStart), loadString(res.LoadAvgEnd))
	for i, r := range res.Runs {
		fmt.Printf("  run %d (%s, load %.2f): engine %.0f ops/s, %s %.0f ops/s, ratio %.3f", i+1, r.Order, r.LoadAvg1, r.EngineOpsPerSec, res.Baseline, r.PebbleOpsPerSec, r.Ratio)
		if r.RatioSameBytes > 0 {
			fmt.Printf(", same bytes %.0f ops/s, ratio %.3f", r.PebbleSameBytesOpsPerSec, r.RatioSameBytes)
		}
		if r.RatioRecords > 0 {
			fmt.Printf(", records %.0f ops/s", r.PebbleRecordsOpsPerSec)
		}
		if r.FloorVsPebble > 0 {
			fmt.Printf(", floor %.0f ops/s (floor/pebble %.3f)", r.PebbleFloorOpsPerSec, r.FloorVsPebble)
		}
		fmt.Println()
	}
	fmt.Printf("  best:    engine %.0f ops/s, %s %.0f ops/s, ratio %.3f\n", res.EngineOpsPerSec, res.Baseline, res.PebbleOpsPerSec, res.Ratio)
	fmt.Printf("  ratio:   median %.3f (min %.3f, max %.3f)\n", res.RatioMedian, res.RatioMin, res.RatioMax)
	if res.RatioRecordsMedian > 0 {
		fmt.Printf("  ratio vs raw Pebble writing the engine's records: median %.3f (min %.3f, max %.3f); by CPU time median %.3f (min %.3f, max %.3f)\n",
			res.RatioRecordsMedian, res.RatioRecordsMin, res.RatioRecordsMax, res.CPURatioRecordsMedian, res.CPURatioRecordsMin, res.CPURatioRecordsMax)
	}
	if res.FloorVsPebbleMedian > 0 {
		fmt.Printf("  floor (raw Pebble writing %d-byte values: the value behind the %d bytes an LWW stamp needs) vs %s: median %.3f (min %.3f, max %.3f), by CPU time %.3f; engine vs floor: median %.3f\n",
			res.FloorRecordBytes, res.FloorRecordBytes-cfg.ValueSize, res.Baseline, res.FloorVsPebbleMedian, res.FloorVsPebbleMin, res.FloorVsPebbleMax, res.CPUFloorVsPebbleMedian, res.RatioFloorMedian)
	}
	if res.RatioSameBytesMedian > 0 {
		fmt.Printf("  ratio vs same bytes (%d-byte values): median %.3f (min %.3f, max %.3f)\n", res.RecordBytes, res.RatioSameBytesMedian, res.RatioSameBytesMin, res.RatioSameBytesMax)
	}
	if res.CPURatioMedian > 0 {
		fmt.Printf("  by CPU time: ratio median %.3f (min %.3f, max %.3f), vs same bytes median %.3f (min %.3f, max %.3f)\n",
			res.CPURatioMedian, res.CPURatioMin, res.CPURatioMax, res.CPURatioSameBytesMedian, res.CPURatioSameBytesMin, res.CPURatioSameBytesMax)
	}
}

func loadString(la []float64) string {
	if len(la) < 3 {
		return "unknown"
	}
	return fmt.Sprintf("%.2f %.2f %.2f", la[0], la[1], la[2])
}

func newBenchRebuildCmd() *cobra.Command {
	var cfg bench.RebuildConfig
	var asJSON bool
	c := &cobra.Command{
		Use:     "rebuild",
		Short:   "Tree rebuild speed vs a plain Pebble scan + BLAKE3 loop over the same data",
		Example: "  pebble-ae bench rebuild --keys 1000000 --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := bench.Rebuild(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(res)
			}
			fmt.Printf("rebuild of %d keys\n  tree rebuild:     %10.0f keys/s\n  scan + BLAKE3:    %10.0f keys/s\n  ratio:            %10.3f\n  tree memory:      %d bytes (%d leaves, %.1f bytes/key)\n",
				res.Keys, res.KeysPerSec, res.ScanHashKeysPerSec, res.Ratio, res.TreeMemoryBytes, res.Leaves, float64(res.TreeMemoryBytes)/float64(res.Keys))
			return nil
		},
	}
	c.Flags().IntVar(&cfg.Keys, "keys", 1_000_000, "number of keys")
	c.Flags().Uint32Var(&cfg.LeafSize, "leaf-size", 0, "expected keys per leaf (default 64)")
	c.Flags().StringVar(&cfg.Dir, "dir", "", "scratch directory (default: a temporary directory)")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func newBenchSyncCmd() *cobra.Command {
	var cfg bench.SyncConfig
	var asJSON, scale, noSketch bool
	var sizes, diffCounts string
	c := &cobra.Command{
		Use:   "sync",
		Short: "One anti-entropy session between two diverged replicas vs the naive full comparison",
		Long: `sync builds two engines on disk with N common keys and K differences (missing
on either side, newer on either side, deleted on either side), runs one
session (replica B reached through --transport), checks by full scan that
both converged, then rebuilds the same divergence and runs the naive O(N)
session on it, and prints both next to the information-theoretic floor.

With --scale it measures sessions at the sizes users have instead: for each
of --sizes, replica A is bulk-loaded (sorted SSTables ingested, then the
tree and entry index rebuilt from the data) and B is a Pebble checkpoint of
A; for each of --diff-counts, one session right after both engines were
reopened, then --repeat sessions after fresh differences (the repair loop's
steady state), with wall and CPU time, rounds, metadata on the wire, the
keys the trees rescanned, and memory.`,
		Example: `  pebble-ae bench sync --keys 100000 --diffs 100 --json
  pebble-ae bench sync --keys 1000000 --diffs 100 --transport grpc
  pebble-ae bench sync --scale --sizes 1e6,1e7 --diff-counts 0,1,100,10000 --repeat 5 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if scale {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				return runScale(cmd, bench.ScaleConfig{Dir: cfg.Dir, Repeat: cfg.Repeat, Seed: cfg.Seed, PluginPath: exe, CPUProfile: cfg.CPUProfile}, sizes, diffCounts, asJSON)
			}
			if noSketch {
				cfg.Method = reconcile.MethodDescent
			}
			if cfg.Transport == "plugin" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				cfg.PluginPath = exe
			}
			res, err := bench.Sync(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(res)
			}
			fmt.Printf("N=%d keys, K=%d differences, transport %s, sketch %t\n", res.Keys, res.Diffs, res.Transport, res.Sketch)
			fmt.Printf("  session: %d rounds, %s (metadata %s, records %s), %d keys transferred, converged %t, %.3fs\n",
				res.Rounds, units.Bytes(res.BytesTotal), units.Bytes(res.BytesMetadata), units.Bytes(res.BytesRecords), res.KeysTransferred, res.Converged, res.Seconds)
			if res.Diffs > 0 {
				fmt.Printf("  metadata per difference: %.1f B both replicas, %.1f B with B alone (the wire when the session runs at A)\n",
					res.MetadataBytesPerDiff, res.MetadataBytesPerDiffRemote)
			}
			fmt.Printf("  naive:   %d rounds, %s, %.3fs\n", res.NaiveRounds, units.Bytes(res.NaiveBytesTotal), res.NaiveSeconds)
			fmt.Printf("  floor:   %s (records sent once), metadata floor %.0f B\n", units.Bytes(res.FloorBytes), res.FloorBytesMetadata)
			if res.WirePayloadBytes > 0 {
				fmt.Printf("  wire:    %s measured by gRPC vs %s in the session's accounting\n", units.Bytes(res.WirePayloadBytes), units.Bytes(res.WireModelBytes))
			}
			if res.RepeatSessions > 0 {
				fmt.Printf("  repeat:  %d sessions after %d fresh differences each: median %.4fs (p90 %.4fs), CPU %.4fs, %d rounds, %.1f B metadata a difference, converged %v\n",
					res.RepeatSessions, res.Diffs, res.RepeatSecondsMedian, res.RepeatSecondsP90, res.RepeatCPUSecondsMedian, res.RepeatRoundsMedian, res.RepeatMetadataBytesPerDiff, res.RepeatConverged)
			}
			return nil
		},
	}
	c.Flags().IntVar(&cfg.Keys, "keys", 100_000, "N: keys per replica")
	c.Flags().IntVar(&cfg.Diffs, "diffs", 100, "K: differing keys")
	c.Flags().StringVar(&cfg.Transport, "transport", "inproc", "how the session reaches replica B: inproc, grpc or plugin")
	c.Flags().StringVar((*string)(&cfg.Method), "method", "", "the session's method: symbols, sketch, descent (empty: the best both replicas serve, symbols)")
	c.Flags().BoolVar(&noSketch, "no-sketch", false, "the tree descent (--method descent)")
	_ = c.Flags().MarkDeprecated("no-sketch", "use --method descent")
	c.Flags().BoolVar(&cfg.Warm, "warm", false, "recompute both trees before the divergent writes, as a previous session would have (a repair loop's steady state)")
	c.Flags().BoolVar(&cfg.Restart, "restart", false, "close both engines after the setup and open them again before the session (the first session after a restart)")
	c.Flags().BoolVar(&scale, "scale", false, "the scale matrix: bulk-loaded replicas of each of --sizes, sessions for each of --diff-counts after a restart and warm")
	c.Flags().StringVar(&sizes, "sizes", "1e6", "with --scale: comma-separated N values (1e6 or 1000000)")
	c.Flags().StringVar(&diffCounts, "diff-counts", "0,1,100,10000", "with --scale: comma-separated K values")
	c.Flags().StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the session (not the setup) to this file")
	c.Flags().IntVar(&cfg.Repeat, "repeat", 0, "then run this many more sessions, each after K fresh divergent writes (a repair loop's steady state; inproc only)")
	c.Flags().Uint64Var(&cfg.Seed, "seed", 1, "seed of the data")
	c.Flags().StringVar(&cfg.Dir, "dir", "", "scratch directory (default: a temporary directory)")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// runScale runs bench sync --scale.
func runScale(cmd *cobra.Command, cfg bench.ScaleConfig, sizes, diffCounts string, asJSON bool) error {
	var err error
	if cfg.Sizes, err = parseCounts(sizes); err != nil {
		return fmt.Errorf("--sizes: %w", err)
	}
	if cfg.Diffs, err = parseCounts(diffCounts); err != nil {
		return fmt.Errorf("--diff-counts: %w", err)
	}
	if cfg.Repeat == 0 {
		cfg.Repeat = 5
	}
	cfg.Progress = func(s string) { fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), s) }
	res, err := bench.Scale(cmd.Context(), cfg)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(res)
	}
	for _, s := range res.Setups {
		fmt.Printf("N=%d: load %.1fs, rebuild %.1fs, compaction %.1fs, A on disk %s; one engine: tree %s, prefixes %s, Pebble block cache %s, memtables %s; process: Go heap %s, RSS %s (peak %s)\n",
			s.Keys, s.LoadSeconds, s.RebuildSeconds, s.SettleSeconds, units.Bytes(uint64(s.DiskBytesA)), units.Bytes(uint64(s.TreeBytes)), units.Bytes(uint64(s.PrefixBytes)),
			units.Bytes(uint64(s.BlockCacheSize)), units.Bytes(s.MemtableSize), units.Bytes(s.GoHeapInuse), units.Bytes(s.ProcessRSS), units.Bytes(s.ProcessPeakRSS))
	}
	fmt.Printf("%-11s %-7s %-8s %-9s %-9s %-9s %-7s %-10s %-9s %-9s %-9s %s\n", "N", "K", "phase", "open s", "median s", "CPU s", "rounds", "B/diff", "moved", "scanned", "at open", "converged")
	for _, r := range res.Rows {
		fmt.Printf("%-11d %-7d %-8s %-9.3f %-9.4f %-9.4f %-7d %-10.1f %-9d %-9d %-9d %t\n", r.Keys, r.Diffs, r.Phase, r.OpenSeconds, r.SecondsMedian, r.CPUSecondsMedian, r.RoundsMedian, r.MetadataBytesPerDiffRemote, r.KeysTransferredMedian, r.KeysScanned, r.KeysScannedAtOpen, r.Converged)
	}
	for _, r := range res.Rows {
		if r.Phase == "served" {
			fmt.Printf("N=%d, one node serving %d sessions as a pebble-ae plugin process: RSS %s (peak %s)\n", r.Keys, r.Sessions, units.Bytes(r.NodeRSSBytes), units.Bytes(r.NodePeakRSSBytes))
		}
	}
	return nil
}

// parseCounts parses a comma-separated list of counts, each an integer or
// a float form such as 1e6.
func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v < 0 || v != math.Trunc(v) || v > 1e12 {
			return nil, fmt.Errorf("bad count %q", f)
		}
		out = append(out, int(v))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no counts in %q", s)
	}
	return out, nil
}
