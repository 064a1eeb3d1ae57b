package bench

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// SyncConfig configures the anti-entropy benchmark.
type SyncConfig struct {
	Dir   string // scratch directory (default: a temp dir)
	Keys  int    // N: keys per replica before the divergence (default 1e5)
	Diffs int    // K: differing keys, at most Keys (default 100)
	// Transport is how the session reaches replica B: "" or "inproc"
	// (the engine itself; bytes are the wire model's), "grpc" (the gRPC
	// service in-process over bufconn) or "plugin" (B served by a
	// go-plugin subprocess of PluginPath). With grpc and plugin the bytes
	// measured on the wire are reported too.
	Transport string
	// PluginPath is the pebble-ae binary for the plugin transport.
	PluginPath string
	Seed       uint64
	// Method is the session's method (reconcile.SessionConfig.Method;
	// empty: the best both replicas serve, symbol streams).
	Method reconcile.Method
	// Warm recomputes both engines' trees (as a previous session would
	// have) before the divergent writes, so the session rescans only the
	// leaves they changed: a repair loop's steady state. Without it the
	// session also recomputes the leaves the setup's copy to B wrote.
	Warm bool
	// CPUProfile, if set, is a file to write a CPU profile of the session
	// (not of the setup or the naive baseline) to.
	CPUProfile string
	// Repeat, if > 0, runs that many more sessions after the first, each
	// after Diffs fresh divergent writes of the six kinds (new keys on
	// either side, newer versions and deletes of existing keys on either
	// side): a repair loop's steady state, measured with warm digest
	// caches and without the compaction the first session's setup ends
	// with. Only with the inproc transport.
	Repeat int
	// Restart closes both engines after the setup and opens them again
	// before the session: the first session after a process restart.
	Restart bool
}

// SyncResult is what the anti-entropy benchmark measured: one session
// (SyncAll) between two engines on disk that differ in Diffs keys, and the
// naive full-comparison session on a fresh copy of the same divergence.
type SyncResult struct {
	Keys      int    `json:"keys"`
	Diffs     int    `json:"diffs"`
	Transport string `json:"transport"`
	Sketch    bool   `json:"sketch"`
	Warm      bool   `json:"warm"`
	Restart   bool   `json:"restart"`

	Rounds          int    `json:"rounds"`
	BytesTotal      uint64 `json:"bytes_total"`
	BytesRemoteSide uint64 `json:"bytes_remote_side"`
	BytesMetadata   uint64 `json:"bytes_metadata"`
	// BytesMetadataRemote and MetadataBytesPerDiffRemote are the metadata
	// exchanged with replica B alone: what crosses the network when the
	// session runs at replica A (a node's repair loop with its own engine
	// in-process), as in `pebble-ae serve`.
	BytesMetadataRemote uint64 `json:"bytes_metadata_remote"`
	// BytesRecords are the records moved, keys included: every entry
	// that carries a record counts its key and encoded record here, and
	// its framing and digest in BytesKeyLists. BytesRecordKeys is the
	// key part of BytesRecords.
	BytesRecords      uint64 `json:"bytes_records"`
	BytesRecordKeys   uint64 `json:"bytes_record_keys"`
	BytesFingerprints uint64 `json:"bytes_fingerprints"`
	BytesSketches     uint64 `json:"bytes_sketches"`
	BytesKeyLists     uint64 `json:"bytes_key_lists"`
	KeysTransferred   uint64 `json:"keys_transferred"`
	// SketchFallbacks counts symbol streams or sketches that did not
	// decode, so the session fell back to descending the trees.
	SketchFallbacks      int     `json:"sketch_fallbacks"`
	KeysRepaired         uint64  `json:"keys_repaired"`
	Converged            bool    `json:"converged"`
	Seconds              float64 `json:"seconds"`
	MetadataBytesPerDiff float64 `json:"metadata_bytes_per_diff"`
	TransferredPerDiff   float64 `json:"transferred_per_diff"`
	// MetadataBytesPerDiffRemote: see BytesMetadataRemote.
	MetadataBytesPerDiffRemote float64 `json:"metadata_bytes_per_diff_remote"`

	NaiveRounds     int     `json:"naive_rounds"`
	NaiveBytesTotal uint64  `json:"naive_bytes_total"`
	NaiveMetadata   uint64  `json:"naive_bytes_metadata"`
	NaiveSeconds    float64 `json:"naive_seconds"`
	NaiveConverged  bool    `json:"naive_converged"`

	// FloorBytes is the information-theoretic floor the session is
	// compared with: K x (key + winning record), the bytes of the
	// differing records sent once each (any protocol that ships records
	// verbatim sends at least these). FloorBytesMetadata is the part of it
	// that is not records: log2(C(N+K, K)) bits to name which keys differ.
	FloorBytes         uint64  `json:"floor_bytes"`
	FloorBytesMetadata float64 `json:"floor_bytes_metadata"`
	SetupSeconds       float64 `json:"setup_seconds"`
	// WirePayloadBytes are the bytes the gRPC client measured on the wire
	// (payload with gRPC framing, uncompressed) for the session with B;
	// WireModelBytes the session's own accounting of the same traffic.
	WirePayloadBytes uint64 `json:"wire_payload_bytes,omitempty"`
	WireModelBytes   uint64 `json:"wire_model_bytes,omitempty"`

	// The repeated sessions (SyncConfig.Repeat): how many, the median and
	// 90th percentile of their durations, the median CPU time of the
	// process during one (both replicas' work, on every thread), their
	// median rounds and metadata per differing key, and whether every one
	// converged (a full scan of both replicas after the last).
	RepeatSessions             int     `json:"repeat_sessions,omitempty"`
	RepeatSecondsMedian        float64 `json:"repeat_seconds_median,omitempty"`
	RepeatSecondsP90           float64 `json:"repeat_seconds_p90,omitempty"`
	RepeatCPUSecondsMedian     float64 `json:"repeat_cpu_seconds_median,omitempty"`
	RepeatRoundsMedian         int     `json:"repeat_rounds_median,omitempty"`
	RepeatMetadataBytesPerDiff float64 `json:"repeat_metadata_bytes_per_diff,omitempty"`
	RepeatConverged            bool    `json:"repeat_converged,omitempty"`
}

func (c *SyncConfig) defaults() error {
	if err := nonNegative(intField{"keys", c.Keys}, intField{"diffs", c.Diffs}); err != nil {
		return err
	}
	if c.Keys == 0 {
		c.Keys = 100_000
	}
	if c.Diffs < 0 || c.Diffs > c.Keys {
		return badConfig("diffs %d out of [0, keys %d]", c.Diffs, c.Keys)
	}
	if c.Transport != "" && c.Transport != "inproc" && c.Transport != "grpc" && c.Transport != "plugin" {
		return badConfig("unknown transport %q (want inproc, grpc or plugin)", c.Transport)
	}
	if c.Transport == "" {
		c.Transport = "inproc"
	}
	if c.Repeat < 0 || (c.Repeat > 0 && c.Transport != "inproc") {
		return badConfig("repeat %d: want >= 0, and only with the inproc transport", c.Repeat)
	}
	return nil
}

// Divergence kinds of the i-th differing key (i % numKinds).
const (
	kindMissingOnB = iota
	kindMissingOnA
	kindNewerOnA
	kindNewerOnB
	kindDeletedOnA
	kindDeletedOnB
	numKinds
)

// Sync builds the divergence twice (same seed) and measures one session on
// the first copy and the naive baseline on the second.
func Sync(ctx context.Context, cfg SyncConfig) (SyncResult, error) {
	if err := cfg.defaults(); err != nil {
		return SyncResult{}, err
	}
	res := SyncResult{Keys: cfg.Keys, Diffs: cfg.Diffs, Transport: cfg.Transport, Warm: cfg.Warm, Restart: cfg.Restart}

	run := func(name string, naive bool) (reconcile.Stats, float64, bool, [2]*engine.Engine, func(), error) {
		dir, cleanup, err := scratchDir(cfg.Dir, name)
		if err != nil {
			return reconcile.Stats{}, 0, false, [2]*engine.Engine{}, nil, err
		}
		start := time.Now()
		reps, err := buildDivergence(ctx, dir, cfg)
		closeAll := func() {
			for _, e := range reps {
				if e != nil {
					_ = e.Close()
				}
			}
			cleanup()
		}
		if err != nil {
			closeAll()
			return reconcile.Stats{}, 0, false, reps, nil, err
		}
		res.SetupSeconds += time.Since(start).Seconds()
		if cfg.Restart {
			if reps, err = reopen(dir, reps); err != nil {
				closeAll()
				return reconcile.Stats{}, 0, false, reps, nil, err
			}
		}
		// B is reached through the chosen transport; A is local.
		peer, stopPeer, err := transportFor(ctx, cfg, dir, &reps)
		if err != nil {
			closeAll()
			return reconcile.Stats{}, 0, false, reps, nil, err
		}
		opts := reconcile.SyncOptions{}
		opts.Session.Method = cfg.Method
		if naive {
			opts.Session.Method = reconcile.MethodNaive
		}
		if naive {
			opts.Session.ScanLimit = engine.MaxKeysPerRequest // pages as large as the engine serves
		}
		stopProfile := func() {}
		if cfg.CPUProfile != "" && !naive {
			if stopProfile, err = startCPUProfile(cfg.CPUProfile); err != nil {
				closeAll()
				return reconcile.Stats{}, 0, false, reps, nil, err
			}
		}
		start = time.Now()
		stats, err := reconcile.SyncAll(ctx, reps[0], peer, opts)
		secs := time.Since(start).Seconds()
		stopProfile()
		wire, werr := stopPeer()
		if err == nil {
			err = werr
		}
		if err != nil {
			closeAll()
			return reconcile.Stats{}, 0, false, reps, nil, fmt.Errorf("bench: %s session: %w", name, err)
		}
		var total reconcile.Stats
		for _, st := range stats {
			total = total.Add(st)
		}
		if !naive && wire > 0 {
			res.WirePayloadBytes = wire
			res.WireModelBytes = total.B.Total().Total()
		}
		conv, err := converged(ctx, reps)
		if err != nil {
			closeAll()
			return reconcile.Stats{}, 0, false, reps, nil, err
		}
		return total, secs, conv, reps, closeAll, nil
	}

	st, secs, conv, reps, closeAll, err := run("session", false)
	if err != nil {
		return res, err
	}
	res.FloorBytes, err = floorBytes(ctx, reps[0], cfg)
	if err == nil && cfg.Repeat > 0 {
		err = repeatSessions(ctx, cfg, reps, &res)
	}
	closeAll()
	if err != nil {
		return res, err
	}
	b := st.Bytes()
	res.Sketch = b.Sketches > 0
	res.Rounds = st.Rounds
	res.BytesTotal = b.Total()
	res.BytesRemoteSide = st.B.Total().Total()
	res.BytesMetadata = st.BytesMetadata()
	rb := st.B.Total()
	res.BytesMetadataRemote = rb.Metadata()
	res.BytesRecords = b.Data()
	res.BytesRecordKeys = b.RecordKeys
	res.BytesFingerprints = b.Fingerprints
	res.BytesSketches = b.Sketches
	res.BytesKeyLists = b.KeyLists
	res.KeysTransferred = st.KeysTransferred
	res.SketchFallbacks = st.SketchFallbacks
	res.KeysRepaired = st.KeysRepaired()
	res.Converged = conv && st.Converged
	res.Seconds = secs
	if cfg.Diffs > 0 {
		res.MetadataBytesPerDiff = float64(res.BytesMetadata) / float64(cfg.Diffs)
		res.TransferredPerDiff = float64(res.KeysTransferred) / float64(cfg.Diffs)
		res.MetadataBytesPerDiffRemote = float64(res.BytesMetadataRemote) / float64(cfg.Diffs)
	}
	res.FloorBytesMetadata = log2Binomial(cfg.Keys+cfg.Diffs, cfg.Diffs) / 8

	nst, nsecs, nconv, _, closeNaive, err := run("naive", true)
	if err != nil {
		return res, err
	}
	closeNaive()
	res.NaiveRounds = nst.Rounds
	res.NaiveBytesTotal = nst.BytesTotal()
	res.NaiveMetadata = nst.BytesMetadata()
	res.NaiveSeconds = nsecs
	res.NaiveConverged = nconv && nst.Converged
	return res, nil
}

// buildDivergence opens two engines under dir and loads them: Keys random
// 16-byte keys with 100-byte values, identical records on both sides, except
// for the first Diffs keys (in generation order, so spread over the key
// space), which diverge by kind: missing on B, missing on A, newer on A,
// newer on B, deleted on A, deleted on B.
func buildDivergence(ctx context.Context, dir string, cfg SyncConfig) ([2]*engine.Engine, error) {
	var reps [2]*engine.Engine
	for i, id := range []record.ReplicaID{"a", "b"} {
		e, err := engine.Open(fmt.Sprintf("%s/%s", dir, id), &engine.Options{ReplicaID: id, CheckpointInterval: -1})
		if err != nil {
			return reps, err
		}
		reps[i] = e
	}
	a, b := reps[0], reps[1]
	rng := rand.New(rand.NewPCG(cfg.Seed, 2))
	value := make([]byte, 100)
	keys := make([][]byte, cfg.Keys)
	kind := map[string]int{}
	for i := range keys {
		keys[i] = keyAt(make([]byte, 16), rng)
		if i < cfg.Diffs {
			kind[string(keys[i])] = i % numKinds
		}
	}
	const batchSize = 100
	// The common base, written on A (missing-on-A keys on B instead).
	write := func(e *engine.Engine, pick func(i int) (put, del bool)) error {
		bt := e.NewBatch()
		for i, k := range keys {
			put, del := pick(i)
			if !put && !del {
				continue
			}
			for j := range value {
				value[j] = byte(rng.Uint32())
			}
			var err error
			if del {
				err = bt.Delete(k)
			} else {
				err = bt.Put(k, value)
			}
			if err != nil {
				bt.Close()
				return err
			}
			if bt.Len() == batchSize {
				if err := bt.Commit(ctx, engine.NoSync); err != nil {
					return err
				}
				bt = e.NewBatch()
			}
		}
		return bt.Commit(ctx, engine.NoSync)
	}
	kindOf := func(i int) int {
		if i < cfg.Diffs {
			return i % numKinds
		}
		return -1
	}
	if err := write(a, func(i int) (bool, bool) { return kindOf(i) != kindMissingOnA, false }); err != nil {
		return reps, err
	}
	// Copy the base to B record for record (same writer, same timestamp),
	// except the keys missing on B.
	kr := reconcile.KeyRange{}
	for {
		page, err := a.RangeScan(ctx, reconcile.RangeScanRequest{Range: kr, WithRecords: true, Limit: engine.MaxKeysPerRequest})
		if err != nil {
			return reps, err
		}
		es := page.Entries[:0]
		for _, e := range page.Entries {
			if k, ok := kind[string(e.Key)]; ok && k == kindMissingOnB {
				continue
			}
			es = append(es, e)
		}
		if len(es) > 0 {
			if err := b.Apply(ctx, 0, es); err != nil {
				return reps, err
			}
		}
		if !page.More {
			break
		}
		kr.Start = page.Next
	}
	if cfg.Warm {
		// The steady state of a repair loop: the last session recomputed
		// the trees (and the entry indexes), then the divergent writes
		// came.
		for _, e := range reps {
			st, err := e.OpenSymbols(ctx, reconcile.SymbolsRequest{Partition: 0, Ranges: []reconcile.KeyRange{{}}, Max: 1})
			if err != nil {
				return reps, err
			}
			st.Close()
		}
	}
	if err := write(b, func(i int) (bool, bool) { return kindOf(i) == kindMissingOnA, false }); err != nil {
		return reps, err
	}
	// The later versions.
	if err := write(a, func(i int) (bool, bool) { return kindOf(i) == kindNewerOnA, kindOf(i) == kindDeletedOnA }); err != nil {
		return reps, err
	}
	if err := write(b, func(i int) (bool, bool) { return kindOf(i) == kindNewerOnB, kindOf(i) == kindDeletedOnB }); err != nil {
		return reps, err
	}
	for _, e := range reps {
		if err := e.Maintain(ctx); err != nil {
			return reps, err
		}
		// B's base arrived as merge operands (Apply); compact both DBs so
		// the sessions read the steady state of long-running replicas,
		// not unmerged operands.
		if err := e.DB().Compact(ctx, []byte{0}, []byte{0xff, 0xff, 0xff, 0xff, 0xff}, true); err != nil {
			return reps, err
		}
	}
	return reps, nil
}

// reopen closes both engines (checkpointing) and opens them again from
// their directories under dir, as buildDivergence opened them.
func reopen(dir string, reps [2]*engine.Engine) ([2]*engine.Engine, error) {
	var out [2]*engine.Engine
	for i, id := range []record.ReplicaID{"a", "b"} {
		if err := reps[i].Close(); err != nil {
			return out, err
		}
		e, err := engine.Open(fmt.Sprintf("%s/%s", dir, id), &engine.Options{ReplicaID: id, CheckpointInterval: -1})
		if err != nil {
			return out, err
		}
		out[i] = e
	}
	return out, nil
}

// converged reports whether both engines hold identical records (full
// scans) and equal roots.
func converged(ctx context.Context, reps [2]*engine.Engine) (bool, error) {
	var roots [2]reconcile.Fingerprint
	for i, e := range reps {
		hs, err := e.RangeHash(ctx, reconcile.RangeHashRequest{Ranges: []reconcile.KeyRange{{}}})
		if err != nil {
			return false, err
		}
		roots[i] = hs[0].Fingerprint
	}
	if roots[0] != roots[1] {
		return false, nil
	}
	var cur [2]reconcile.KeyRange
	var pages [2]reconcile.RangeScanResult
	for {
		for i, e := range reps {
			p, err := e.RangeScan(ctx, reconcile.RangeScanRequest{Range: cur[i], WithRecords: true, Limit: engine.MaxKeysPerRequest})
			if err != nil {
				return false, err
			}
			pages[i] = p
			cur[i].Start = p.Next
		}
		pa, pb := pages[0], pages[1]
		if len(pa.Entries) != len(pb.Entries) || pa.More != pb.More {
			return false, nil
		}
		for j := range pa.Entries {
			if !bytes.Equal(pa.Entries[j].Key, pb.Entries[j].Key) || !bytes.Equal(pa.Entries[j].Record, pb.Entries[j].Record) {
				return false, nil
			}
		}
		if !pa.More {
			return true, nil
		}
	}
}

// floorBytes returns K x (key + record): the sizes of the resolved records
// of the differing keys, read from the converged engine e.
func floorBytes(ctx context.Context, e *engine.Engine, cfg SyncConfig) (uint64, error) {
	rng := rand.New(rand.NewPCG(cfg.Seed, 2))
	var keys [][]byte
	for range cfg.Diffs {
		keys = append(keys, keyAt(make([]byte, 16), rng))
	}
	var total uint64
	for len(keys) > 0 {
		n := min(len(keys), engine.MaxKeysPerRequest)
		es, err := e.Fetch(ctx, 0, keys[:n])
		if err != nil {
			return 0, err
		}
		for _, en := range es {
			total += uint64(len(en.Key) + len(en.Record))
		}
		keys = keys[n:]
	}
	return total, nil
}

// log2Binomial returns log2(C(n, k)).
func log2Binomial(n, k int) float64 {
	lg := func(x int) float64 {
		v, _ := math.Lgamma(float64(x) + 1)
		return v
	}
	return (lg(n) - lg(k) - lg(n-k)) / math.Ln2
}

// transportFor returns how the session reaches replica B, and a function
// that ends that transport, returning the payload bytes it measured, and
// leaves reps[1] an open engine again for the convergence check.
func transportFor(ctx context.Context, cfg SyncConfig, dir string, reps *[2]*engine.Engine) (reconcile.Replica, func() (wire uint64, err error), error) {
	var client *plugin.Client
	var err error
	switch cfg.Transport {
	case "", "inproc":
		return reps[1], func() (uint64, error) { return 0, nil }, nil
	case "grpc":
		client, err = plugin.InProcess(reps[1], nil, nil)
	case "plugin":
		if cfg.PluginPath == "" {
			return nil, nil, fmt.Errorf("bench: the plugin transport needs the pebble-ae binary (PluginPath)")
		}
		if err := reps[1].Close(); err != nil {
			return nil, nil, err
		}
		reps[1] = nil
		client, err = plugin.Open(ctx, cfg.PluginPath, "plugin", "--dir", dir+"/b", "--id", "b")
	default:
		return nil, nil, fmt.Errorf("bench: unknown transport %q (inproc, grpc or plugin)", cfg.Transport)
	}
	if err != nil {
		return nil, nil, err
	}
	return client, func() (uint64, error) {
		ws := client.WireStats()
		cerr := client.Close()
		if reps[1] == nil {
			e, err := engine.Open(dir+"/b", &engine.Options{ReplicaID: "b", CheckpointInterval: -1})
			if err != nil {
				return 0, err
			}
			reps[1] = e
		}
		return ws.PayloadSent + ws.PayloadReceived, cerr
	}, nil
}

// startCPUProfile starts a CPU profile written to path and returns its stop.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// repeatSessions runs cfg.Repeat sessions between reps, each after
// cfg.Diffs fresh divergent writes, and records their figures in res.
func repeatSessions(ctx context.Context, cfg SyncConfig, reps [2]*engine.Engine, res *SyncResult) error {
	rng := rand.New(rand.NewPCG(cfg.Seed, 3))
	value := make([]byte, 100)
	// existing returns a key of A at or after a random one.
	existing := func() ([]byte, error) {
		for {
			start := keyAt(make([]byte, 16), rng)
			page, err := reps[0].RangeScan(ctx, reconcile.RangeScanRequest{Range: reconcile.KeyRange{Start: start}, Limit: 1})
			if err != nil {
				return nil, err
			}
			if len(page.Entries) > 0 {
				return page.Entries[0].Key, nil
			}
		}
	}
	var secs, cpus []float64
	var rounds []int
	var meta, diffs uint64
	allConverged := true
	for range cfg.Repeat {
		for i := range cfg.Diffs {
			side := reps[i%2] // kinds alternate sides: new, newer, deleted on A, then on B
			key := keyAt(make([]byte, 16), rng)
			if i%numKinds >= 2 {
				var err error
				if key, err = existing(); err != nil {
					return err
				}
			}
			fillRandom(value, rng)
			var err error
			if i%numKinds >= 4 {
				err = side.Delete(ctx, key, engine.NoSync)
			} else {
				err = side.Put(ctx, key, value, engine.NoSync)
			}
			if err != nil {
				return err
			}
		}
		cpu0, start := processCPUSeconds(), time.Now()
		stats, err := reconcile.SyncAll(ctx, reps[0], reps[1], reconcile.SyncOptions{})
		secs = append(secs, time.Since(start).Seconds())
		cpus = append(cpus, processCPUSeconds()-cpu0)
		if err != nil {
			return fmt.Errorf("bench: repeated session: %w", err)
		}
		var total reconcile.Stats
		for _, st := range stats {
			total = total.Add(st)
		}
		rounds = append(rounds, total.Rounds)
		meta += total.BytesMetadata()
		diffs += uint64(cfg.Diffs)
		allConverged = allConverged && total.Converged
	}
	conv, err := converged(ctx, reps)
	if err != nil {
		return err
	}
	slices.Sort(secs)
	slices.Sort(cpus)
	slices.Sort(rounds)
	res.RepeatSessions = cfg.Repeat
	res.RepeatSecondsMedian = secs[len(secs)/2]
	res.RepeatSecondsP90 = secs[len(secs)*9/10]
	res.RepeatCPUSecondsMedian = cpus[len(cpus)/2]
	res.RepeatRoundsMedian = rounds[len(rounds)/2]
	if diffs > 0 {
		res.RepeatMetadataBytesPerDiff = float64(meta) / float64(diffs)
	}
	res.RepeatConverged = allConverged && conv
	return nil
}
