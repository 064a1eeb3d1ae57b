// Package reconciletest is a reusable randomized test suite for
// reconcile.Replica implementations and the anti-entropy session that drives
// them. Any implementation (internal/memreplica, the engine, the gRPC
// client) runs it with one call:
//
//	reconciletest.RunScenarios(t, newReplica, reconciletest.Options{Seeds: 500})
//	reconciletest.RunRacing(t, newReplica, reconciletest.Options{Seeds: 50})
//	reconciletest.RunLyingPeers(t, newReplica, reconciletest.Options{Seeds: 20})
//
// Replicas are set up only through reconcile.Replica.Apply on fresh, empty
// replicas (so each stored record is exactly the applied one) and checked
// only through RangeScan and RangeHash, so the suite needs nothing beyond
// the interface. Every failure names its seed; Options.FirstSeed reruns one.
package reconciletest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// Config describes a replica to create.
type Config struct {
	// ID is the replica's ID.
	ID record.ReplicaID
	// Mode is its write mode (its resolver is record.ResolverFor(Mode)).
	Mode record.Mode
	// LeafSize is the tree's expected leaf size (merkle.Params.LeafSize);
	// small values make deep trees from little data. Every replica of one
	// scenario gets the same LeafSize.
	LeafSize uint32
	// SplitPoints split the key space into partitions (nil: one); keys of
	// the suite are printable ASCII, split points too.
	SplitPoints [][]byte
}

// NewReplica creates an empty replica for cfg. It is called twice per
// scenario (replicas "a" and "b"); it should register cleanup with t.
type NewReplica func(t testing.TB, cfg Config) reconcile.Replica

// Options tune a suite run.
type Options struct {
	// Seeds is the number of seeds per mode; default 500 for RunScenarios,
	// 50 for RunRacing, 20 for RunLyingPeers.
	Seeds int
	// FirstSeed is the first seed; seeds are FirstSeed, FirstSeed+1, ...
	FirstSeed uint64
	// Modes are the write modes to test; default both.
	Modes []record.Mode
	// MaxKeys bounds the number of keys of a scenario; default 400.
	MaxKeys int
	// Sync overrides the session options (Strict is always set where the
	// suite expects no concurrent writes).
	Sync reconcile.SyncOptions
}

func (o Options) withDefaults(seeds int) Options {
	if o.Seeds == 0 {
		o.Seeds = seeds
	}
	if len(o.Modes) == 0 {
		o.Modes = []record.Mode{record.ModeLWW, record.ModeCausal}
	}
	if o.MaxKeys == 0 {
		o.MaxKeys = 400
	}
	return o
}

// scenario is the initial state of two replicas.
type scenario struct {
	seed  uint64
	mode  record.Mode
	cfg   Config
	recs  [2]map[string]record.Record
	shape string
	nkeys int
}

// shapeNames are the shapes of scenarios, one chosen per seed.
func shapeNames() []string {
	return []string{"identical", "a-empty", "b-empty", "both-empty", "few-diffs", "many-diffs", "disjoint", "one-key"}
}

// key returns the i-th key of a scenario's universe.
func key(rng *rand.Rand, i int) []byte {
	// Varied lengths and shared prefixes, printable.
	return fmt.Appendf(nil, "k%0*d/%s", 1+rng.IntN(4), i, []string{"", "x", "yy", "zzzz"}[rng.IntN(4)])
}

// genScenario builds a random scenario for seed.
func genScenario(seed uint64, mode record.Mode, maxKeys int) scenario {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	shapes := shapeNames()
	sc := scenario{seed: seed, mode: mode, shape: shapes[rng.IntN(len(shapes))]}
	sc.recs = [2]map[string]record.Record{{}, {}}
	switch sc.shape {
	case "both-empty":
		sc.nkeys = 0
	case "one-key":
		sc.nkeys = 1
	default:
		sc.nkeys = rng.IntN(maxKeys + 1)
	}
	sc.cfg = Config{Mode: mode, LeafSize: []uint32{2, 4, 8, 64}[rng.IntN(4)]}
	if rng.IntN(4) == 0 {
		sc.cfg.SplitPoints = [][]byte{[]byte("k1"), []byte("k5")}
	}
	diffRate := 0.0
	switch sc.shape {
	case "few-diffs":
		diffRate = 0.02
	case "many-diffs", "one-key":
		diffRate = 0.5
	case "disjoint":
		diffRate = 1
	}
	seen := map[string]bool{}
	wall := int64(1000)
	for i := 0; i < sc.nkeys; i++ {
		k := key(rng, i)
		if seen[string(k)] {
			continue
		}
		seen[string(k)] = true
		wall += int64(1 + rng.IntN(3))
		base := baseRecord(rng, mode, wall)
		a, b := base, base
		hasA, hasB := true, true
		switch sc.shape {
		case "a-empty":
			hasA = false
		case "b-empty":
			hasB = false
		case "disjoint":
			if rng.IntN(2) == 0 {
				hasA = false
			} else {
				hasB = false
			}
		}
		if rng.Float64() < diffRate {
			a, b, hasA, hasB = divergence(rng, mode, base, wall)
		}
		if hasA {
			sc.recs[0][string(k)] = a
		}
		if hasB {
			sc.recs[1][string(k)] = b
		}
	}
	return sc
}

func value(rng *rand.Rand) []byte {
	return fmt.Appendf(nil, "v%d", rng.IntN(1000))
}

func baseRecord(rng *rand.Rand, mode record.Mode, wall int64) record.Record {
	writer := record.ReplicaID([]string{"a", "b", "c"}[rng.IntN(3)])
	tomb := rng.IntN(10) == 0
	if mode == record.ModeLWW {
		return record.NewLWW(writer, record.Timestamp{WallTime: wall}, value(rng), tomb)
	}
	return record.CausalPut(record.Record{}, nil, writer, record.Timestamp{WallTime: wall}, value(rng), tomb)
}

// divergence returns two differing versions of a key: a missing side, a
// stale side, concurrent updates, a delete against an update.
func divergence(rng *rand.Rand, mode record.Mode, base record.Record, wall int64) (a, b record.Record, hasA, hasB bool) {
	a, b, hasA, hasB = base, base, true, true
	later := func(r record.Record, at record.ReplicaID, dt int64, tomb bool) record.Record {
		ts := record.Timestamp{WallTime: wall + dt, Logical: uint32(rng.IntN(2))}
		if mode == record.ModeLWW {
			return record.NewLWW(at, ts, value(rng), tomb)
		}
		return record.CausalPut(r, r.Context, at, ts, value(rng), tomb)
	}
	concurrent := func(r record.Record, at record.ReplicaID, dt int64, tomb bool) record.Record {
		ts := record.Timestamp{WallTime: wall + dt}
		if mode == record.ModeLWW {
			return record.NewLWW(at, ts, value(rng), tomb)
		}
		// A write that has not seen base: concurrent with it.
		return record.CausalPut(r, nil, at, ts, value(rng), tomb)
	}
	switch rng.IntN(8) {
	case 0:
		hasA = false
	case 1:
		hasB = false
	case 2: // A newer (maybe a delete)
		a = later(base, "a", 5, rng.IntN(3) == 0)
	case 3: // B newer
		b = later(base, "b", 5, rng.IntN(3) == 0)
	case 4: // concurrent updates on both sides
		a = later(base, "a", 5, false)
		b = later(base, "b", 5, false)
	case 5: // delete vs update
		a = later(base, "a", 5, true)
		b = later(base, "b", int64(rng.IntN(9)), false)
	case 6: // same timestamp, different writers
		a = later(base, "a", 7, false)
		b = later(base, "b", 7, rng.IntN(2) == 0)
	case 7: // a blind concurrent write on one side, and missing data
		a = concurrent(base, "c", 3, false)
		if rng.IntN(2) == 0 {
			hasB = false
		}
	}
	return a, b, hasA, hasB
}

// build creates the two replicas of a scenario and loads them.
func build(t testing.TB, newReplica NewReplica, sc scenario) [2]reconcile.Replica {
	t.Helper()
	var reps [2]reconcile.Replica
	for side, id := range []record.ReplicaID{"a", "b"} {
		cfg := sc.cfg
		cfg.ID = id
		reps[side] = newReplica(t, cfg)
		load(t, reps[side], sc.cfg, sc.recs[side])
	}
	return reps
}

// load applies recs to r, partition by partition.
func load(t testing.TB, r reconcile.Replica, cfg Config, recs map[string]record.Record) {
	t.Helper()
	byPart := map[uint32][]reconcile.Entry{}
	for k, rec := range recs {
		p := partitionOf(cfg, []byte(k))
		enc := rec.Encode()
		byPart[p] = append(byPart[p], reconcile.Entry{Key: []byte(k), Digest: reconcile.EntryDigest([]byte(k), enc), Record: enc})
	}
	for p, es := range byPart {
		slices.SortFunc(es, func(a, b reconcile.Entry) int { return bytes.Compare(a.Key, b.Key) })
		if err := r.Apply(context.Background(), p, es); err != nil {
			t.Fatalf("load: apply %d entries to partition %d: %v", len(es), p, err)
		}
	}
}

func partitionOf(cfg Config, key []byte) uint32 {
	p := uint32(0)
	for _, sp := range cfg.SplitPoints {
		if bytes.Compare(key, sp) >= 0 {
			p++
		}
	}
	return p
}

// Dump returns every entry (with records) of every partition of r, in key
// order, through RangeScan, and the root fingerprint of each partition.
func Dump(ctx context.Context, r reconcile.Replica) ([]reconcile.Entry, []reconcile.Fingerprint, error) {
	info, err := r.Info(ctx)
	if err != nil {
		return nil, nil, err
	}
	var out []reconcile.Entry
	var roots []reconcile.Fingerprint
	for _, p := range info.Partitions {
		hs, err := r.RangeHash(ctx, reconcile.RangeHashRequest{Partition: p.ID, Ranges: []reconcile.KeyRange{p.Range}})
		if err != nil {
			return nil, nil, err
		}
		roots = append(roots, hs[0].Fingerprint)
		kr := p.Range
		for {
			res, err := r.RangeScan(ctx, reconcile.RangeScanRequest{Partition: p.ID, Range: kr, WithRecords: true})
			if err != nil {
				return nil, nil, err
			}
			out = append(out, res.Entries...)
			if !res.More {
				break
			}
			kr.Start = res.Next
		}
	}
	return out, roots, nil
}

// expected returns the record every replica must hold for each key after a
// session: the resolution of both sides' records.
func expected(t testing.TB, mode record.Mode, recs [2]map[string]record.Record) map[string]record.Record {
	t.Helper()
	res := record.ResolverFor(mode)
	out := map[string]record.Record{}
	for side := range recs {
		for k, r := range recs[side] {
			cur, ok := out[k]
			if !ok {
				out[k] = r
				continue
			}
			m, err := res.Resolve([]byte(k), cur, r)
			if err != nil {
				t.Fatalf("model resolve %q: %v", k, err)
			}
			out[k] = m
		}
	}
	return out
}

// checkConverged checks the invariants after a session without concurrent
// writes: equal full scans, equal roots, every key holding the expected
// record (so no deleted key returned and the same LWW winner everywhere),
// and no concurrent causal update lost.
func checkConverged(t testing.TB, reps [2]reconcile.Replica, mode record.Mode, before [2]map[string]record.Record, want map[string]record.Record) {
	t.Helper()
	ctx := context.Background()
	da, ra, err := Dump(ctx, reps[0])
	if err != nil {
		t.Fatalf("dump a: %v", err)
	}
	db, rb, err := Dump(ctx, reps[1])
	if err != nil {
		t.Fatalf("dump b: %v", err)
	}
	if !slices.Equal(ra, rb) {
		t.Fatalf("roots differ after the session: %v vs %v", ra, rb)
	}
	if len(da) != len(db) {
		t.Fatalf("full scans differ: %d vs %d entries", len(da), len(db))
	}
	for i := range da {
		if !bytes.Equal(da[i].Key, db[i].Key) || !bytes.Equal(da[i].Record, db[i].Record) || da[i].Digest != db[i].Digest {
			t.Fatalf("full scans differ at %d: %q vs %q", i, da[i].Key, db[i].Key)
		}
	}
	if len(da) != len(want) {
		t.Fatalf("%d keys after the session, want %d", len(da), len(want))
	}
	for _, e := range da {
		got, err := record.DecodeRecord(e.Record)
		if err != nil {
			t.Fatalf("key %q: stored record does not decode: %v", e.Key, err)
		}
		w, ok := want[string(e.Key)]
		if !ok {
			t.Fatalf("key %q appeared from nowhere", e.Key)
		}
		if !got.Equal(w) {
			t.Fatalf("key %q: got %+v, want %+v", e.Key, got, w)
		}
		ra, okA := before[0][string(e.Key)]
		rb, okB := before[1][string(e.Key)]
		if (okA && ra.IsTombstone() || okB && rb.IsTombstone()) && !got.IsTombstone() && mode == record.ModeLWW {
			// A delete may only lose to a strictly later write.
			winner := got.Winner()
			for _, r := range []record.Record{ra, rb} {
				if len(r.Siblings) > 0 && r.IsTombstone() && r.Winner().Timestamp.Compare(winner.Timestamp) > 0 {
					t.Fatalf("key %q: deleted key came back", e.Key)
				}
			}
		}
		if mode == record.ModeLWW {
			for _, r := range []record.Record{ra, rb} {
				if len(r.Siblings) > 0 && r.Winner().Timestamp.Compare(got.Winner().Timestamp) > 0 {
					t.Fatalf("key %q: LWW kept an older write", e.Key)
				}
			}
		}
		if mode == record.ModeCausal && okA && okB {
			// Every sibling one side holds that the other has not seen
			// must survive.
			for _, pair := range [][2]record.Record{{ra, rb}, {rb, ra}} {
				for _, s := range pair[0].Siblings {
					if pair[1].Context.Covers(s.Dot) {
						continue
					}
					if !slices.ContainsFunc(got.Siblings, func(g record.Sibling) bool { return g.Dot == s.Dot }) {
						t.Fatalf("key %q: concurrent update %s lost", e.Key, s.Dot)
					}
				}
			}
		}
	}
}

// RunScenarios runs Options.Seeds random scenarios per mode: missing keys on
// either side, stale versions, concurrent siblings, deletes against updates,
// tombstones, empty and identical replicas, one or several partitions. For
// each, it builds two replicas, runs one strict SyncAll and checks that both
// replicas hold identical records (full scans and roots), that each key holds
// the resolution of its two initial records, that no deleted key came back,
// that LWW kept the latest write and causal mode every concurrent update,
// and that identical replicas cost one round trip per partition.
func RunScenarios(t *testing.T, newReplica NewReplica, opts Options) {
	opts = opts.withDefaults(500)
	for _, mode := range opts.Modes {
		t.Run(mode.String(), func(t *testing.T) {
			for i := range opts.Seeds {
				seed := opts.FirstSeed + uint64(i)
				sc := genScenario(seed, mode, opts.MaxKeys)
				ok := t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
					runScenario(t, newReplica, sc, opts)
				})
				if !ok {
					t.Fatalf("scenario seed=%d mode=%s shape=%s keys=%d failed (rerun with FirstSeed=%d, Seeds=1)", seed, mode, sc.shape, sc.nkeys, seed)
				}
			}
		})
	}
}

func runScenario(t *testing.T, newReplica NewReplica, sc scenario, opts Options) {
	reps := build(t, newReplica, sc)
	want := expected(t, sc.mode, sc.recs)
	so := opts.Sync
	so.Session.Strict = true
	// Odd seeds take the tree descent, even seeds sketches (when both
	// replicas are sketchers).
	if sc.seed%2 == 1 && so.Session.Method == reconcile.MethodAuto {
		so.Session.Method = reconcile.MethodDescent
	}
	// Every third seed holds almost nothing in memory: its writes are
	// applied every round (MaxPendingBytes of 1 byte), it lists 4 keys a
	// round, and a sketch difference of more than 4 keys is reconciled by
	// the descent.
	tight := sc.seed%3 == 0 && so.Session.MaxPendingBytes == 0 && so.Session.ScanLimit == 0
	if tight {
		so.Session.MaxPendingBytes, so.Session.ScanLimit = 1, 4
	}
	stats, err := reconcile.SyncAll(context.Background(), reps[0], reps[1], so)
	if err != nil {
		t.Fatalf("shape=%s keys=%d: sync: %v", sc.shape, sc.nkeys, err)
	}
	if tight {
		// A round resolves at most 16 keys (listings with records: the
		// 4-key budget and one more item of up to 2 pages of 4; fetches:
		// 4 keys), each written to at most 2 sides (a listed record to
		// one), and the next round applies them: at most 20 writes held.
		maxEntry := 0
		for k, rec := range want {
			maxEntry = max(maxEntry, len(k)+len(rec.Encode()))
		}
		for _, st := range stats {
			if st.PeakPendingBytes > int64(20*maxEntry) {
				t.Fatalf("partition %d held %d bytes of writes at once with MaxPendingBytes 1 (%d drains; largest entry %d bytes)",
					st.Partition, st.PeakPendingBytes, st.Drains, maxEntry)
			}
		}
	}
	for _, st := range stats {
		if !st.Converged {
			t.Fatalf("partition %d not converged: %s", st.Partition, st)
		}
	}
	checkConverged(t, reps, sc.mode, sc.recs, want)
	if sc.shape == "identical" || sc.shape == "both-empty" {
		for _, st := range stats {
			if st.Rounds != 1 || st.KeysTransferred != 0 {
				t.Fatalf("identical replicas: %s", st)
			}
		}
	}
	// A second session finds nothing to do.
	stats, err = reconcile.SyncAll(context.Background(), reps[0], reps[1], so)
	if err != nil {
		t.Fatalf("second sync: %v", err)
	}
	for _, st := range stats {
		if st.Rounds != 1 || st.KeysRepaired() != 0 {
			t.Fatalf("second session did work: %s", st)
		}
	}
}
