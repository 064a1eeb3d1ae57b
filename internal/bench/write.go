// Package bench holds the measurements behind `pebble-ae bench`: each one
// runs pebble-ae and its baseline side by side in one process, on the same
// machine, with the same data.
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
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// WriteConfig configures the write-path benchmark.
type WriteConfig struct {
	Dir       string // scratch directory (default: a temp dir)
	Keys      int    // number of writes (default 1e6)
	KeySize   int    // default 16
	ValueSize int    // default 100
	BatchSize int    // default 100 (LWW); causal writes are single ops
	Mode      record.Mode
	Seed      uint64
	// RandomValues gives every write its own random (incompressible)
	// value instead of the same constant value for every key, which
	// Pebble's block compression shrinks to almost nothing.
	RandomValues bool
	// Rounds is the number of repetitions (default 5). Each repetition runs
	// every side once, each on a fresh DB, in an order that alternates
	// between repetitions; it yields one engine/Pebble ratio.
	Rounds int
	// CPUProfile, if set, is a file to write a CPU profile of the engine
	// side of the first repetition to.
	CPUProfile string
	// PebbleCPUProfile, if set, is a file to write a CPU profile of the raw
	// Pebble side (the baseline with the same values, not the same-bytes
	// one) of the first repetition to, for comparison with CPUProfile.
	PebbleCPUProfile string
	// SameRecords adds a third baseline to every repetition: raw Pebble
	// writing exactly the records the engine writes (LWW: each value
	// encoded as the engine's record, stamped by an HLC; causal: Get,
	// decode what is found, encode the causal put over it, Set), so that
	// what the record format costs Pebble and what the engine's own code
	// costs (tree hook, batch wrapper, locks) can be told apart. In LWW
	// mode it also adds a fourth: raw Pebble writing each value behind the
	// least any LWW record must carry (see FloorStampBytes), the floor of
	// every record format.
	SameRecords bool
	// BloomBitsPerKey, if positive, gives every side's Pebble (the
	// engine's and the raw baselines') a Bloom filter of that many bits a
	// key on every level, as a deployment whose reads matter would (the
	// causal path reads before it writes, and Pebble has no filter by
	// default). 0 keeps Pebble's defaults.
	BloomBitsPerKey int
}

// pebbleOptions returns the Pebble options every side of the write
// benchmark opens its DB with (the engine adds its own on a copy).
func pebbleOptions(cfg WriteConfig) *pebble.Options {
	o := &pebble.Options{FormatMajorVersion: engine.FormatMajorVersion, Logger: silent{}}
	if cfg.BloomBitsPerKey > 0 {
		// Later levels inherit L0's filter (Options.EnsureDefaults).
		o.Levels[0].FilterPolicy = bloom.FilterPolicy(cfg.BloomBitsPerKey)
	}
	return o
}

// FloorStampBytes is the least an LWW record adds to its value: the HLC
// timestamp's 8-byte wall time and 1-byte logical counter (0 for all but
// the writes of one nanosecond), and the writer's replica ID with its
// 1-byte length (the tie-break of equal timestamps), for the bench's
// 5-byte writer ID.
const FloorStampBytes = 8 + 1 + 1 + len(benchWriter)

// benchWriter is the replica ID every side of the write benchmark stamps.
const benchWriter = record.ReplicaID("bench")

// appendFloorStamp appends value behind the FloorStampBytes an LWW record
// cannot do without (see FloorStampBytes).
func appendFloorStamp(dst []byte, ts record.Timestamp, value []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts.WallTime))
	dst = binary.AppendUvarint(dst, uint64(ts.Logical))
	dst = append(dst, byte(len(benchWriter)))
	dst = append(dst, benchWriter...)
	return append(dst, value...)
}

// WriteResult is what the write-path benchmark measured.
type WriteResult struct {
	Mode         string `json:"mode"`
	Keys         int    `json:"keys"`
	RandomValues bool   `json:"random_values"`
	// BloomBitsPerKey is WriteConfig.BloomBitsPerKey (0: no filter).
	BloomBitsPerKey int `json:"bloom_bits_per_key,omitempty"`
	BatchSize       int `json:"batch_size"`
	Rounds          int `json:"rounds"`
	// EngineOpsPerSec and PebbleOpsPerSec are the best run of each side;
	// Ratio is their quotient (best / best). RatioMedian is the median of
	// the per-repetition ratios, the figure least moved by noise on a
	// shared machine; RatioMin and RatioMax are their spread.
	EngineOpsPerSec float64 `json:"engine_ops_per_sec"`
	PebbleOpsPerSec float64 `json:"pebble_ops_per_sec"`
	Ratio           float64 `json:"ratio"`
	RatioMedian     float64 `json:"ratio_median"`
	RatioMin        float64 `json:"ratio_min"`
	RatioMax        float64 `json:"ratio_max"`
	Baseline        string  `json:"baseline"`
	EngineSeconds   float64 `json:"engine_seconds"`
	PebbleSeconds   float64 `json:"pebble_seconds"`
	MarkersWritten  uint64  `json:"markers_written"`
	// RecordBytes is the length of one encoded record (the value the engine
	// stores); the same-bytes baseline writes raw values of that length.
	RecordBytes              int     `json:"record_bytes"`
	PebbleSameBytesOpsPerSec float64 `json:"pebble_same_bytes_ops_per_sec,omitempty"`
	PebbleSameBytesSeconds   float64 `json:"pebble_same_bytes_seconds,omitempty"`
	RatioSameBytes           float64 `json:"ratio_same_bytes,omitempty"`
	RatioSameBytesMedian     float64 `json:"ratio_same_bytes_median,omitempty"`
	RatioSameBytesMin        float64 `json:"ratio_same_bytes_min,omitempty"`
	RatioSameBytesMax        float64 `json:"ratio_same_bytes_max,omitempty"`
	TreeLeaves               int     `json:"tree_leaves"`
	// The SameRecords baseline, as the same-bytes one: best run, ratios
	// by wall-clock and by CPU time (engine vs raw Pebble writing the
	// engine's records).
	PebbleRecordsOpsPerSec float64 `json:"pebble_records_ops_per_sec,omitempty"`
	RatioRecordsMedian     float64 `json:"ratio_records_median,omitempty"`
	RatioRecordsMin        float64 `json:"ratio_records_min,omitempty"`
	RatioRecordsMax        float64 `json:"ratio_records_max,omitempty"`
	CPURatioRecordsMedian  float64 `json:"cpu_ratio_records_median,omitempty"`
	CPURatioRecordsMin     float64 `json:"cpu_ratio_records_min,omitempty"`
	CPURatioRecordsMax     float64 `json:"cpu_ratio_records_max,omitempty"`
	// The floor baseline (LWW with SameRecords): raw Pebble writing each
	// value behind FloorStampBytes. RatioFloorMedian is the engine against
	// it; FloorVsPebbleMedian is it against raw Pebble Set, the most any
	// engine storing an LWW stamp with the value could reach.
	FloorRecordBytes       int     `json:"floor_record_bytes,omitempty"`
	PebbleFloorOpsPerSec   float64 `json:"pebble_floor_ops_per_sec,omitempty"`
	RatioFloorMedian       float64 `json:"ratio_floor_median,omitempty"`
	FloorVsPebbleMedian    float64 `json:"floor_vs_pebble_median,omitempty"`
	FloorVsPebbleMin       float64 `json:"floor_vs_pebble_min,omitempty"`
	FloorVsPebbleMax       float64 `json:"floor_vs_pebble_max,omitempty"`
	CPUFloorVsPebbleMedian float64 `json:"cpu_floor_vs_pebble_median,omitempty"`
	// Median megabytes written by each side (see WriteRun.EngineMBWritten).
	EngineMBWrittenMedian  float64 `json:"engine_mb_written_median,omitempty"`
	PebbleMBWrittenMedian  float64 `json:"pebble_mb_written_median,omitempty"`
	RecordsMBWrittenMedian float64 `json:"records_mb_written_median,omitempty"`
	FloorMBWrittenMedian   float64 `json:"floor_mb_written_median,omitempty"`
	// CPURatio* are the same ratios by CPU time instead of wall-clock time
	// (Pebble's CPU seconds / the engine's, per repetition: how much more
	// CPU the engine spends on the same writes, background work included).
	// Less moved than wall-clock time by other work on a shared machine;
	// the goals are in ops/s.
	CPURatioMedian          float64 `json:"cpu_ratio_median,omitempty"`
	CPURatioMin             float64 `json:"cpu_ratio_min,omitempty"`
	CPURatioMax             float64 `json:"cpu_ratio_max,omitempty"`
	CPURatioSameBytesMedian float64 `json:"cpu_ratio_same_bytes_median,omitempty"`
	CPURatioSameBytesMin    float64 `json:"cpu_ratio_same_bytes_min,omitempty"`
	CPURatioSameBytesMax    float64 `json:"cpu_ratio_same_bytes_max,omitempty"`
	// LoadAvgStart and LoadAvgEnd are the 1-, 5- and 15-minute load
	// averages (/proc/loadavg) before the first and after the last
	// repetition; absent where the system does not report them.
	LoadAvgStart []float64 `json:"load_avg_start,omitempty"`
	LoadAvgEnd   []float64 `json:"load_avg_end,omitempty"`
	// Runs are the repetitions, in order.
	Runs []WriteRun `json:"runs"`
}

// WriteRun is one repetition of the write-path benchmark.
type WriteRun struct {
	// Order is the order the sides ran in ("pebble,same,engine" or the
	// reverse).
	Order                    string  `json:"order"`
	EngineOpsPerSec          float64 `json:"engine_ops_per_sec"`
	PebbleOpsPerSec          float64 `json:"pebble_ops_per_sec"`
	PebbleSameBytesOpsPerSec float64 `json:"pebble_same_bytes_ops_per_sec,omitempty"`
	Ratio                    float64 `json:"ratio"`
	RatioSameBytes           float64 `json:"ratio_same_bytes,omitempty"`
	// LoadAvg1 is the 1-minute load average when the repetition started.
	LoadAvg1 float64 `json:"load_avg_1,omitempty"`
	// CPU seconds of the process while each side ran, and the ratios by
	// CPU time (see WriteResult.CPURatioMedian).
	EngineCPUSeconds          float64 `json:"engine_cpu_seconds,omitempty"`
	PebbleCPUSeconds          float64 `json:"pebble_cpu_seconds,omitempty"`
	PebbleSameBytesCPUSeconds float64 `json:"pebble_same_bytes_cpu_seconds,omitempty"`
	CPURatio                  float64 `json:"cpu_ratio,omitempty"`
	CPURatioSameBytes         float64 `json:"cpu_ratio_same_bytes,omitempty"`
	// The SameRecords baseline's throughput, CPU seconds and ratios.
	PebbleRecordsOpsPerSec  float64 `json:"pebble_records_ops_per_sec,omitempty"`
	PebbleRecordsCPUSeconds float64 `json:"pebble_records_cpu_seconds,omitempty"`
	RatioRecords            float64 `json:"ratio_records,omitempty"`
	CPURatioRecords         float64 `json:"cpu_ratio_records,omitempty"`
	// The floor baseline's throughput, CPU seconds and ratios (engine /
	// floor, floor / raw Pebble).
	PebbleFloorOpsPerSec  float64 `json:"pebble_floor_ops_per_sec,omitempty"`
	PebbleFloorCPUSeconds float64 `json:"pebble_floor_cpu_seconds,omitempty"`
	RatioFloor            float64 `json:"ratio_floor,omitempty"`
	FloorVsPebble         float64 `json:"floor_vs_pebble,omitempty"`
	CPUFloorVsPebble      float64 `json:"cpu_floor_vs_pebble,omitempty"`
	// Megabytes (1e6) each side's Pebble had written by the end of its timed
	// part: WAL, flushes and compactions. Compactions still running then
	// are not counted, so these move a little between repetitions.
	EngineMBWritten    float64 `json:"engine_mb_written,omitempty"`
	PebbleMBWritten    float64 `json:"pebble_mb_written,omitempty"`
	SameBytesMBWritten float64 `json:"same_bytes_mb_written,omitempty"`
	RecordsMBWritten   float64 `json:"records_mb_written,omitempty"`
	FloorMBWritten     float64 `json:"floor_mb_written,omitempty"`
}

// validate returns an error wrapping ErrBadConfig for a configuration
// Write cannot run. Zero fields take their defaults.
func (c *WriteConfig) validate() error {
	return nonNegative(intField{"keys", c.Keys}, intField{"key size", c.KeySize}, intField{"value size", c.ValueSize},
		intField{"batch size", c.BatchSize}, intField{"rounds", c.Rounds}, intField{"bloom bits per key", c.BloomBitsPerKey})
}

func (c *WriteConfig) defaults() {
	if c.Keys == 0 {
		c.Keys = 1_000_000
	}
	if c.KeySize == 0 {
		c.KeySize = 16
	}
	if c.ValueSize == 0 {
		c.ValueSize = 100
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	if c.Mode == 0 {
		c.Mode = record.ModeLWW
	}
	if c.Rounds == 0 {
		c.Rounds = 5
	}
}

func keyAt(dst []byte, rng *rand.Rand) []byte {
	fillRandom(dst, rng)
	// Keep keys out of the reserved space.
	if dst[0] == 0xff {
		dst[0] = 0xfe
	}
	return dst
}

func fillRandom(dst []byte, rng *rand.Rand) {
	for i := 0; i < len(dst); i += 8 {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], rng.Uint64())
		copy(dst[i:], b[:])
	}
}

// values returns the value source of one side: the next value to write.
// Both sides draw the same sequence.
func values(cfg WriteConfig) func() []byte {
	value := benchValue(cfg.ValueSize)
	if !cfg.RandomValues {
		return func() []byte { return value }
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 2))
	return func() []byte {
		fillRandom(value, rng)
		return value
	}
}

func scratchDir(dir, name string) (string, func(), error) {
	if dir == "" {
		d, err := os.MkdirTemp("", "pebble-ae-bench-")
		if err != nil {
			return "", nil, err
		}
		return filepath.Join(d, name), func() { os.RemoveAll(d) }, nil
	}
	p := filepath.Join(dir, name)
	if err := os.RemoveAll(p); err != nil {
		return "", nil, err
	}
	return p, func() { os.RemoveAll(p) }, nil
}

// Write measures the engine's write path against raw Pebble in one run: the
// same keys, values, batch size and sync mode (NoSync), each on a fresh DB
// on disk. LWW is compared with raw Pebble Set in batches, causal (whose
// puts are single read-modify-writes) with raw Pebble Get+Set, one op per
// commit; each also with the same raw Pebble writes of values as long as the
// engine's encoded records ("same bytes").
//
// The sides are interleaved: each of the Rounds repetitions runs every side
// once on a fresh DB, the order reversed every other repetition, with a GC
// before each side so that one side's garbage is not collected on the
// next's time. Each repetition gives one engine/Pebble ratio; the result
// reports their median and spread next to the best run of each side.
func Write(ctx context.Context, cfg WriteConfig) (WriteResult, error) {
	if err := cfg.validate(); err != nil {
		return WriteResult{}, err
	}
	cfg.defaults()
	res := WriteResult{Mode: cfg.Mode.String(), Keys: cfg.Keys, RandomValues: cfg.RandomValues, BatchSize: cfg.BatchSize, Rounds: cfg.Rounds,
		BloomBitsPerKey: cfg.BloomBitsPerKey}
	causal := cfg.Mode == record.ModeCausal
	if causal {
		res.Baseline = "pebble Get+Set"
		res.BatchSize = 1
	} else {
		res.Baseline = "pebble Set"
	}
	// The same writes with values as long as the engine's encoded records
	// (a new key's record): what the record format itself costs Pebble.
	sameBytes := cfg
	now, value := record.NewHLC(nil).Now(), benchValue(cfg.ValueSize)
	if causal {
		sameBytes.ValueSize = record.CausalPut(record.Record{}, nil, benchWriter, now, value, false).EncodedLen()
	} else {
		sameBytes.ValueSize = record.NewLWW(benchWriter, now, value, false).EncodedLen()
	}
	res.RecordBytes = sameBytes.ValueSize
	res.LoadAvgStart = loadAverage()
	for r := 0; r < cfg.Rounds; r++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		var run WriteRun
		if la := loadAverage(); la != nil {
			run.LoadAvg1 = la[0]
		}
		var pt, bt, et, rt, ft sideTime
		sides := []func() error{
			func() (err error) {
				profile := ""
				if r == 0 {
					profile = cfg.PebbleCPUProfile
				}
				pt, err = writePebble(cfg, profile)
				return err
			},
			func() (err error) { bt, err = writePebble(sameBytes, ""); return err },
			func() (err error) {
				profile := ""
				if r == 0 {
					profile = cfg.CPUProfile
				}
				et, res.MarkersWritten, res.TreeLeaves, err = writeEngine(ctx, cfg, profile)
				return err
			},
		}
		run.Order = "pebble,same,engine"
		if cfg.SameRecords {
			sides = slices.Insert(sides, 2, func() (err error) { rt, err = writePebbleRecords(cfg, false); return err })
			run.Order = "pebble,same,records,engine"
			if !causal {
				sides = slices.Insert(sides, 3, func() (err error) { ft, err = writePebbleRecords(cfg, true); return err })
				run.Order = "pebble,same,records,floor,engine"
			}
		}
		if r%2 == 1 {
			slices.Reverse(sides)
			order := strings.Split(run.Order, ",")
			slices.Reverse(order)
			run.Order = strings.Join(order, ",")
		}
		for _, side := range sides {
			runtime.GC()
			if err := side(); err != nil {
				return res, err
			}
		}
		ps, pb, es := pt.wall, bt.wall, et.wall
		if r == 0 || ps < res.PebbleSeconds {
			res.PebbleSeconds = ps
		}
		if r == 0 || es < res.EngineSeconds {
			res.EngineSeconds = es
		}
		run.PebbleOpsPerSec = float64(cfg.Keys) / ps
		run.EngineOpsPerSec = float64(cfg.Keys) / es
		run.Ratio = ps / es
		if r == 0 || pb < res.PebbleSameBytesSeconds {
			res.PebbleSameBytesSeconds = pb
		}
		run.PebbleSameBytesOpsPerSec = float64(cfg.Keys) / pb
		run.RatioSameBytes = pb / es
		run.EngineMBWritten, run.PebbleMBWritten, run.SameBytesMBWritten = mb(et.written), mb(pt.written), mb(bt.written)
		run.RecordsMBWritten, run.FloorMBWritten = mb(rt.written), mb(ft.written)
		if et.cpu > 0 {
			run.EngineCPUSeconds, run.PebbleCPUSeconds, run.PebbleSameBytesCPUSeconds = et.cpu, pt.cpu, bt.cpu
			run.CPURatio, run.CPURatioSameBytes = pt.cpu/et.cpu, bt.cpu/et.cpu
		}
		if cfg.SameRecords {
			run.PebbleRecordsOpsPerSec = float64(cfg.Keys) / rt.wall
			run.RatioRecords = rt.wall / es
			res.PebbleRecordsOpsPerSec = max(res.PebbleRecordsOpsPerSec, run.PebbleRecordsOpsPerSec)
			if et.cpu > 0 {
				run.PebbleRecordsCPUSeconds = rt.cpu
				run.CPURatioRecords = rt.cpu / et.cpu
			}
		}
		if ft.wall > 0 {
			run.PebbleFloorOpsPerSec = float64(cfg.Keys) / ft.wall
			run.RatioFloor = ft.wall / es
			run.FloorVsPebble = ps / ft.wall
			res.PebbleFloorOpsPerSec = max(res.PebbleFloorOpsPerSec, run.PebbleFloorOpsPerSec)
			if ft.cpu > 0 {
				run.PebbleFloorCPUSeconds = ft.cpu
				run.CPUFloorVsPebble = pt.cpu / ft.cpu
			}
		}
		res.Runs = append(res.Runs, run)
	}
	res.LoadAvgEnd = loadAverage()
	res.PebbleOpsPerSec = float64(cfg.Keys) / res.PebbleSeconds
	res.EngineOpsPerSec = float64(cfg.Keys) / res.EngineSeconds
	res.Ratio = res.EngineOpsPerSec / res.PebbleOpsPerSec
	res.RatioMedian, res.RatioMin, res.RatioMax = spread(res.Runs, func(r WriteRun) float64 { return r.Ratio })
	res.CPURatioMedian, res.CPURatioMin, res.CPURatioMax = spread(res.Runs, func(r WriteRun) float64 { return r.CPURatio })
	res.CPURatioSameBytesMedian, res.CPURatioSameBytesMin, res.CPURatioSameBytesMax = spread(res.Runs, func(r WriteRun) float64 { return r.CPURatioSameBytes })
	res.EngineMBWrittenMedian, _, _ = spread(res.Runs, func(r WriteRun) float64 { return r.EngineMBWritten })
	res.PebbleMBWrittenMedian, _, _ = spread(res.Runs, func(r WriteRun) float64 { return r.PebbleMBWritten })
	res.RecordsMBWrittenMedian, _, _ = spread(res.Runs, func(r WriteRun) float64 { return r.RecordsMBWritten })
	res.FloorMBWrittenMedian, _, _ = spread(res.Runs, func(r WriteRun) float64 { return r.FloorMBWritten })
	if cfg.SameRecords {
		res.RatioRecordsMedian, res.RatioRecordsMin, res.RatioRecordsMax = spread(res.Runs, func(r WriteRun) float64 { return r.RatioRecords })
		res.CPURatioRecordsMedian, res.CPURatioRecordsMin, res.CPURatioRecordsMax = spread(res.Runs, func(r WriteRun) float64 { return r.CPURatioRecords })
		if !causal {
			res.FloorRecordBytes = FloorStampBytes + cfg.ValueSize
			res.RatioFloorMedian, _, _ = spread(res.Runs, func(r WriteRun) float64 { return r.RatioFloor })
			res.FloorVsPebbleMedian, res.FloorVsPebbleMin, res.FloorVsPebbleMax = spread(res.Runs, func(r WriteRun) float64 { return r.FloorVsPebble })
			res.CPUFloorVsPebbleMedian, _, _ = spread(res.Runs, func(r WriteRun) float64 { return r.CPUFloorVsPebble })
		}
	}
	if res.PebbleSameBytesSeconds > 0 {
		res.PebbleSameBytesOpsPerSec = float64(cfg.Keys) / res.PebbleSameBytesSeconds
		res.RatioSameBytes = res.EngineOpsPerSec / res.PebbleSameBytesOpsPerSec
		res.RatioSameBytesMedian, res.RatioSameBytesMin, res.RatioSameBytesMax = spread(res.Runs, func(r WriteRun) float64 { return r.RatioSameBytes })
	}
	return res, nil
}

// mb is n bytes in megabytes (1e6), rounded to 0.1.
func mb(n uint64) float64 { return math.Round(float64(n)/1e5) / 10 }

// spread returns the median, minimum and maximum of f over runs (the median
// of an even count is the mean of the middle two).
func spread(runs []WriteRun, f func(WriteRun) float64) (median, lo, hi float64) {
	if len(runs) == 0 {
		return 0, 0, 0
	}
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = f(r)
	}
	slices.Sort(xs)
	n := len(xs)
	median = xs[n/2]
	if n%2 == 0 {
		median = (xs[n/2-1] + xs[n/2]) / 2
	}
	return median, xs[0], xs[n-1]
}

// loadAverage returns the 1-, 5- and 15-minute load averages from
// /proc/loadavg, or nil where there is no such file.
func loadAverage() []float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return nil
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return nil
	}
	la := make([]float64, 3)
	for i := range la {
		if la[i], err = strconv.ParseFloat(f[i], 64); err != nil {
			return nil
		}
	}
	return la
}

// sideTime is how long one side of one repetition took: wall-clock seconds
// and the process's CPU seconds (foreground and Pebble's background work).
type sideTime struct {
	wall, cpu float64
	// written is what Pebble wrote by the end of the timed part: WAL,
	// flushes and compactions (tables and blob files), in bytes.
	written uint64
}

// bytesWritten is everything db has written so far: its WAL and the
// tables and blob files of its flushes and compactions.
func bytesWritten(db *pebble.DB) uint64 {
	m := db.Metrics()
	t := m.Total()
	return m.WAL.BytesWritten + t.TableBytesFlushed + t.TableBytesCompacted + t.BlobBytesFlushed + t.BlobBytesCompacted
}

// startTimer starts timing one side; the returned func stops it.
func startTimer() func() sideTime {
	start, cpu := time.Now(), processCPUSeconds()
	return func() sideTime {
		return sideTime{wall: time.Since(start).Seconds(), cpu: processCPUSeconds() - cpu}
	}
}

func benchValue(n int) []byte {
	value := make([]byte, n)
	for i := range value {
		value[i] = byte(i)
	}
	return value
}

func writePebble(cfg WriteConfig, cpuProfile string) (t sideTime, err error) {
	dir, cleanup, err := scratchDir(cfg.Dir, "pebble")
	if err != nil {
		return sideTime{}, err
	}
	defer cleanup()
	db, err := pebble.Open(dir, pebbleOptions(cfg))
	if err != nil {
		return sideTime{}, err
	}
	nextValue := values(cfg)
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	key := make([]byte, cfg.KeySize)
	stopProfile := func() {}
	if cpuProfile != "" {
		if stopProfile, err = startCPUProfile(cpuProfile); err != nil {
			return sideTime{}, err
		}
	}
	defer func() { stopProfile() }()
	stop := startTimer()
	if cfg.Mode == record.ModeCausal {
		for i := 0; i < cfg.Keys; i++ {
			keyAt(key, rng)
			if _, closer, err := db.Get(key); err == nil {
				closer.Close()
			}
			if err := db.Set(key, nextValue(), pebble.NoSync); err != nil {
				return sideTime{}, err
			}
		}
	} else {
		for i := 0; i < cfg.Keys; {
			b := db.NewBatch()
			for j := 0; j < cfg.BatchSize && i < cfg.Keys; j, i = j+1, i+1 {
				if err := b.Set(keyAt(key, rng), nextValue(), nil); err != nil {
					return sideTime{}, err
				}
			}
			if err := b.Commit(pebble.NoSync); err != nil {
				return sideTime{}, err
			}
			b.Close()
		}
	}
	t = stop()
	t.written = bytesWritten(db)
	stopProfile()
	stopProfile = func() {}
	return t, db.Close()
}

// writePebbleRecords is writePebble writing the engine's records instead of
// the bare values (see WriteConfig.SameRecords): the record format without
// the engine around it. With floor (LWW only) it writes each value behind
// the least an LWW record needs instead (appendFloorStamp).
func writePebbleRecords(cfg WriteConfig, floor bool) (t sideTime, err error) {
	dir, cleanup, err := scratchDir(cfg.Dir, "records")
	if err != nil {
		return sideTime{}, err
	}
	defer cleanup()
	db, err := pebble.Open(dir, pebbleOptions(cfg))
	if err != nil {
		return sideTime{}, err
	}
	const writer = benchWriter
	clock := record.NewHLC(nil)
	nextValue := values(cfg)
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	key := make([]byte, cfg.KeySize)
	var enc []byte
	stop := startTimer()
	if cfg.Mode == record.ModeCausal {
		for i := 0; i < cfg.Keys; i++ {
			keyAt(key, rng)
			var cur record.Record
			v, closer, err := db.Get(key)
			switch {
			case errors.Is(err, pebble.ErrNotFound):
			case err != nil:
				return sideTime{}, err
			default:
				if cur, err = record.DecodeRecord(v); err != nil {
					closer.Close()
					return sideTime{}, err
				}
			}
			enc = record.AppendCausalPut(enc[:0], cur, nil, writer, clock.Now(), nextValue(), false)
			if closer != nil {
				closer.Close()
			}
			if err := db.Set(key, enc, pebble.NoSync); err != nil {
				return sideTime{}, err
			}
		}
	} else {
		for i := 0; i < cfg.Keys; {
			b := db.NewBatch()
			ts := clock.Now()
			for j := 0; j < cfg.BatchSize && i < cfg.Keys; j, i = j+1, i+1 {
				if j > 0 {
					ts = clock.Next()
				}
				if floor {
					enc = appendFloorStamp(enc[:0], ts, nextValue())
				} else {
					enc = record.AppendLWW(enc[:0], writer, ts, nextValue(), false)
				}
				if err := b.Set(keyAt(key, rng), enc, nil); err != nil {
					return sideTime{}, err
				}
			}
			if err := b.Commit(pebble.NoSync); err != nil {
				return sideTime{}, err
			}
			b.Close()
		}
	}
	t = stop()
	t.written = bytesWritten(db)
	return t, db.Close()
}

func writeEngine(ctx context.Context, cfg WriteConfig, cpuProfile string) (t sideTime, markers uint64, leaves int, err error) {
	dir, cleanup, err := scratchDir(cfg.Dir, "engine")
	if err != nil {
		return sideTime{}, 0, 0, err
	}
	defer cleanup()
	e, err := engine.Open(dir, &engine.Options{ReplicaID: benchWriter, Mode: cfg.Mode, Pebble: pebbleOptions(cfg)})
	if err != nil {
		return sideTime{}, 0, 0, err
	}
	nextValue := values(cfg)
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	key := make([]byte, cfg.KeySize)
	stopProfile := func() {}
	if cpuProfile != "" {
		if stopProfile, err = startCPUProfile(cpuProfile); err != nil {
			return sideTime{}, 0, 0, err
		}
	}
	defer func() { stopProfile() }()
	stop := startTimer()
	if cfg.Mode == record.ModeCausal {
		for i := 0; i < cfg.Keys; i++ {
			if err := e.Put(ctx, keyAt(key, rng), nextValue(), engine.NoSync); err != nil {
				return sideTime{}, 0, 0, err
			}
		}
	} else {
		for i := 0; i < cfg.Keys; {
			b := e.NewBatch()
			for j := 0; j < cfg.BatchSize && i < cfg.Keys; j, i = j+1, i+1 {
				if err := b.Put(keyAt(key, rng), nextValue()); err != nil {
					return sideTime{}, 0, 0, err
				}
			}
			if err := b.Commit(ctx, engine.NoSync); err != nil {
				return sideTime{}, 0, 0, err
			}
		}
	}
	t = stop()
	t.written = bytesWritten(e.DB())
	stopProfile()
	stopProfile = func() {}
	markers = e.Tree().Stats().MarkersWritten
	for _, p := range e.Tree().Partitions() {
		leaves += p.Leaves
	}
	return t, markers, leaves, e.Close()
}

type silent struct{}

func (silent) Infof(string, ...interface{})  {}
func (silent) Errorf(string, ...interface{}) {}
func (silent) Fatalf(format string, args ...interface{}) {
	panic(fmt.Sprintf(format, args...))
}
