package reconciletest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// racer wraps a replica and, before serving each call, writes one record to
// it (a fresh key or a newer version of an existing one), remembering every
// record written.
type racer struct {
	reconcile.Replica
	offered
	id   record.ReplicaID
	cfg  Config
	mu   sync.Mutex
	rng  *rand.Rand
	wall int64
	keys []string
	// written are the records written while racing, per key.
	written map[string][]record.Record
	writes  int
	t       testing.TB
}

// offered are the optional calls of the Replica contract a test wrapper
// serves itself: Info declares only these, and the others are answered
// with ErrUnsupported (not passed to the wrapped replica unwrapped), so a
// session takes the path whose answers the wrapper races or lies in.
type offered struct{ caps reconcile.Capabilities }

func unsupported(call string) error {
	return fmt.Errorf("%w: %s (not offered by the test wrapper)", reconcile.ErrUnsupported, call)
}

func (o offered) info(info reconcile.Info, err error) (reconcile.Info, error) {
	info.Capabilities &= o.caps
	return info, err
}

// Info implements reconcile.Replica, declaring what the racer offers.
func (r *racer) Info(ctx context.Context) (reconcile.Info, error) {
	return r.offered.info(r.Replica.Info(ctx))
}

func (r *racer) race(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var k []byte
	if len(r.keys) > 0 && r.rng.IntN(3) > 0 {
		k = []byte(r.keys[r.rng.IntN(len(r.keys))])
	} else {
		k = fmt.Appendf(nil, "k%d/race%d", r.rng.IntN(9), r.rng.IntN(100))
	}
	r.wall += 10
	ts := record.Timestamp{WallTime: r.wall}
	var rec record.Record
	tomb := r.rng.IntN(5) == 0
	if r.cfg.Mode == record.ModeLWW {
		rec = record.NewLWW(r.id, ts, value(r.rng), tomb)
	} else {
		p := partitionOf(r.cfg, k)
		es, err := r.Replica.Fetch(ctx, p, [][]byte{k})
		if err != nil {
			r.t.Errorf("racer fetch: %v", err)
			return
		}
		var cur record.Record
		if len(es) == 1 {
			if cur, err = record.DecodeRecord(es[0].Record); err != nil {
				r.t.Errorf("racer decode: %v", err)
				return
			}
		}
		ctxVV := cur.Context
		if r.rng.IntN(3) == 0 {
			ctxVV = nil // a blind, concurrent write
		}
		rec = record.CausalPut(cur, ctxVV, r.id, ts, value(r.rng), tomb)
	}
	enc := rec.Encode()
	if err := r.Replica.Apply(ctx, partitionOf(r.cfg, k), []reconcile.Entry{{Key: k, Digest: reconcile.EntryDigest(k, enc), Record: enc}}); err != nil {
		r.t.Errorf("racer apply: %v", err)
		return
	}
	r.written[string(k)] = append(r.written[string(k)], rec)
	r.writes++
}

func (r *racer) RangeHash(ctx context.Context, req reconcile.RangeHashRequest) ([]reconcile.RangeHash, error) {
	r.race(ctx)
	return r.Replica.RangeHash(ctx, req)
}

func (r *racer) RangeScan(ctx context.Context, req reconcile.RangeScanRequest) (reconcile.RangeScanResult, error) {
	r.race(ctx)
	return r.Replica.RangeScan(ctx, req)
}

func (r *racer) Fetch(ctx context.Context, p uint32, keys [][]byte) ([]reconcile.Entry, error) {
	r.race(ctx)
	return r.Replica.Fetch(ctx, p, keys)
}

// sketchRacer is a racer in front of a replica with sketches: it races before
// sketch calls too.
type sketchRacer struct{ *racer }

func (r sketchRacer) RangeSketch(ctx context.Context, req reconcile.RangeSketchRequest) (reconcile.RangeSketchResult, error) {
	r.race(ctx)
	return r.Replica.RangeSketch(ctx, req)
}

func (r sketchRacer) FetchByHash(ctx context.Context, req reconcile.FetchByHashRequest) ([]reconcile.Entry, error) {
	r.race(ctx)
	return r.Replica.FetchByHash(ctx, req)
}

// symbolRacer is a sketchRacer in front of a replica with symbol streams: it
// races before opening a stream and before every chunk.
type symbolRacer struct{ sketchRacer }

func (r symbolRacer) OpenSymbols(ctx context.Context, req reconcile.SymbolsRequest) (reconcile.SymbolStream, error) {
	r.race(ctx)
	st, err := r.Replica.OpenSymbols(ctx, req)
	if err != nil {
		return nil, err
	}
	return racingStream{SymbolStream: st, r: r.racer}, nil
}

type racingStream struct {
	reconcile.SymbolStream
	r *racer
}

func (s racingStream) Next(ctx context.Context) (reconcile.SymbolChunk, error) {
	s.r.race(ctx)
	return s.SymbolStream.Next(ctx)
}

// RunRacing runs sessions while both replicas take writes: before every
// RangeHash, RangeScan and Fetch a replica serves, one record is written to
// it (new keys, newer versions, deletes, blind concurrent causal writes).
// The racing session must end without error and without corrupting either
// replica; a second, strict session without writes must converge, every key
// holding the resolution of everything ever written to it.
func RunRacing(t *testing.T, newReplica NewReplica, opts Options) {
	opts = opts.withDefaults(50)
	for _, mode := range opts.Modes {
		t.Run(mode.String(), func(t *testing.T) {
			for i := range opts.Seeds {
				seed := opts.FirstSeed + uint64(i)
				if !t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { runRacing(t, newReplica, seed, mode, opts) }) {
					t.Fatalf("racing seed=%d mode=%s failed", seed, mode)
				}
			}
		})
	}
}

func runRacing(t *testing.T, newReplica NewReplica, seed uint64, mode record.Mode, opts Options) {
	sc := genScenario(seed, mode, opts.MaxKeys)
	reps := build(t, newReplica, sc)
	var racers [2]*racer
	var wrapped [2]reconcile.Replica
	for side := range 2 {
		var keys []string
		for k := range sc.recs[side] {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		racers[side] = &racer{Replica: reps[side], id: record.ReplicaID([]string{"a", "b"}[side]), cfg: sc.cfg,
			rng: rand.New(rand.NewPCG(seed, uint64(side))), wall: 1 << 20, keys: keys, written: map[string][]record.Record{}, t: t}
		wrapped[side] = racers[side]
		info, err := reps[side].Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		sk, sy := info.Capabilities.Has(reconcile.CapSketch), info.Capabilities.Has(reconcile.CapSymbols)
		switch {
		case sk && sy && seed%3 == 0:
			racers[side].caps = reconcile.CapSketch | reconcile.CapSymbols
			wrapped[side] = symbolRacer{sketchRacer{racers[side]}}
		case sk && seed%3 == 1:
			racers[side].caps = reconcile.CapSketch
			wrapped[side] = sketchRacer{racers[side]}
		}
	}
	if _, err := reconcile.SyncAll(context.Background(), wrapped[0], wrapped[1], opts.Sync); err != nil {
		t.Fatalf("racing session (%d + %d racing writes): %v", racers[0].writes, racers[1].writes, err)
	}
	so := opts.Sync
	so.Session.Strict = true
	if _, err := reconcile.SyncAll(context.Background(), reps[0], reps[1], so); err != nil {
		t.Fatalf("second session: %v", err)
	}
	// The model: everything ever written, resolved.
	all := [2]map[string]record.Record{sc.recs[0], {}}
	res := record.ResolverFor(mode)
	for k, r := range sc.recs[1] {
		all[1][k] = r
	}
	for _, rc := range racers {
		for k, recs := range rc.written {
			for _, r := range recs {
				cur, ok := all[1][k]
				if ok {
					m, err := res.Resolve([]byte(k), cur, r)
					if err != nil {
						t.Fatalf("model: %v", err)
					}
					r = m
				}
				all[1][k] = r
			}
		}
	}
	checkConverged(t, reps, mode, [2]map[string]record.Record{}, expected(t, mode, all))
}

// Lie is a way a lying peer corrupts one answer.
type Lie int

// The lies RunLyingPeers tells. Each corrupts the first answer it applies
// to.
const (
	LieExtraRange       Lie = iota // a RangeHash answer for one more range than asked
	LieWrongRange                  // a RangeHash answer for another range
	LieChildCount                  // children whose counts do not add up
	LieUnaskedChildren             // children when none were asked for
	LieScanOutside                 // a scanned entry outside the range
	LieScanUnsorted                // duplicate scanned entries
	LieScanRecords                 // records not asked for
	LieScanEmptyMore               // an empty page claiming more
	LieFetchDigest                 // a fetched record with a wrong digest
	LieFetchUndecodable            // a fetched record that does not decode
	LieFetchUnasked                // a fetched key not asked for
	LieSketchCells                 // a sketch with a cell missing
	LieSketchCount                 // sketch cell counts that do not add up
	LieHashUnasked                 // a FetchByHash entry whose ID was not asked for
	LieHashOutside                 // a FetchByHash entry outside the partition
	LieSymbolsShort                // a symbol chunk one symbol short
	LieSymbolsWideID               // a symbol whose ID is wider than 48 bits
	LieSymbolsCount                // a stream whose entry count changes
	LieSymbolsFirst                // symbol 0 not counting every entry
	numLies
)

// sketchLie reports whether the lie is told in sketch answers (the liars
// then offer sketches (CapSketch); otherwise they do not, so the session
// takes the descent path whose answers the other lies corrupt).
func (l Lie) sketchLie() bool { return l >= LieSketchCells }

// symbolLie reports whether the lie is told in symbol streams (the liars
// then offer symbol streams too; otherwise they do not, so the
// session takes the fixed-sketch or descent path).
func (l Lie) symbolLie() bool { return l >= LieSymbolsShort }

// String names the lie.
func (l Lie) String() string {
	return [...]string{"extra-range", "wrong-range", "child-count", "unasked-children", "scan-outside",
		"scan-unsorted", "scan-records", "scan-empty-more", "fetch-digest", "fetch-undecodable", "fetch-unasked",
		"sketch-cells", "sketch-count", "hash-unasked", "hash-outside",
		"symbols-short", "symbols-wide-id", "symbols-count", "symbols-first"}[l]
}

// lieState is shared by the two liars of a session.
type lieState struct {
	mu   sync.Mutex
	told bool
	// partition is the partition of the lie.
	partition uint32
	// appliesAfter counts Apply calls made after the lie was told.
	appliesAfter int
}

// liar wraps a replica and tells one lie, once.
type liar struct {
	reconcile.Replica
	offered
	lie   Lie
	state *lieState
}

// Info implements reconcile.Replica, declaring what the liar offers.
func (l *liar) Info(ctx context.Context) (reconcile.Info, error) {
	return l.offered.info(l.Replica.Info(ctx))
}

func (l *liar) tell(partition uint32, cond bool) bool {
	l.state.mu.Lock()
	defer l.state.mu.Unlock()
	if l.state.told || !cond {
		return false
	}
	l.state.told = true
	l.state.partition = partition
	return true
}

func (l *liar) RangeHash(ctx context.Context, req reconcile.RangeHashRequest) ([]reconcile.RangeHash, error) {
	hs, err := l.Replica.RangeHash(ctx, req)
	if err != nil || len(hs) == 0 {
		return hs, err
	}
	switch l.lie {
	case LieExtraRange:
		if l.tell(req.Partition, true) {
			hs = append(hs, hs[len(hs)-1])
		}
	case LieWrongRange:
		if l.tell(req.Partition, true) {
			hs[0].Range.Start = append(slices.Clone(hs[0].Range.Start), 'z')
		}
	case LieChildCount:
		if l.tell(req.Partition, len(hs[0].Children) > 1) {
			hs[0].Children[0].Fingerprint.Count++
		}
	case LieUnaskedChildren:
		if l.tell(req.Partition, req.Fanout == 0) {
			hs[0].Children = []reconcile.Child{{Range: hs[0].Range, Fingerprint: hs[0].Fingerprint}}
		}
	}
	return hs, nil
}

func (l *liar) RangeScan(ctx context.Context, req reconcile.RangeScanRequest) (reconcile.RangeScanResult, error) {
	res, err := l.Replica.RangeScan(ctx, req)
	if err != nil {
		return res, err
	}
	n := len(res.Entries)
	switch l.lie {
	case LieScanOutside:
		if l.tell(req.Partition, n > 0 && len(req.Range.End) > 0) {
			res.Entries[n-1].Key = append(slices.Clone(req.Range.End), 0)
		}
	case LieScanUnsorted:
		if l.tell(req.Partition, n > 0) {
			res.Entries = append(res.Entries, res.Entries[n-1])
		}
	case LieScanRecords:
		if l.tell(req.Partition, n > 0 && !req.WithRecords) {
			res.Entries[0].Record = []byte{1}
		}
	case LieScanEmptyMore:
		if l.tell(req.Partition, true) {
			res = reconcile.RangeScanResult{More: true, Next: req.Range.Start}
		}
	}
	return res, nil
}

func (l *liar) Fetch(ctx context.Context, p uint32, keys [][]byte) ([]reconcile.Entry, error) {
	es, err := l.Replica.Fetch(ctx, p, keys)
	if err != nil {
		return es, err
	}
	n := len(es)
	switch l.lie {
	case LieFetchDigest:
		if l.tell(p, n > 0) {
			es[0].Digest ^= 1
		}
	case LieFetchUndecodable:
		if l.tell(p, n > 0) {
			es[0].Record = []byte{record.RecordFormatVersion, 9, 9}
			es[0].Digest = reconcile.EntryDigest(es[0].Key, es[0].Record)
		}
	case LieFetchUnasked:
		if l.tell(p, n > 0) {
			e := es[n-1]
			e.Key = append(slices.Clone(e.Key), 0)
			e.Digest = reconcile.EntryDigest(e.Key, e.Record)
			es = append(es, e)
		}
	}
	return es, nil
}

// sketchLiar is a liar in front of a replica with sketches.
type sketchLiar struct{ *liar }

func (l sketchLiar) RangeSketch(ctx context.Context, req reconcile.RangeSketchRequest) (reconcile.RangeSketchResult, error) {
	res, err := l.Replica.RangeSketch(ctx, req)
	if err != nil {
		return res, err
	}
	n := len(res.Cells)
	switch l.lie {
	case LieSketchCells:
		if l.tell(req.Partition, n > 0) {
			res.Cells = res.Cells[:n-1]
		}
	case LieSketchCount:
		if l.tell(req.Partition, n > 0) {
			res.Cells[n/2].Count++
		}
	}
	return res, nil
}

func (l sketchLiar) FetchByHash(ctx context.Context, req reconcile.FetchByHashRequest) ([]reconcile.Entry, error) {
	es, err := l.Replica.FetchByHash(ctx, req)
	if err != nil {
		return es, err
	}
	n := len(es)
	switch l.lie {
	case LieHashUnasked:
		if l.tell(req.Partition, n > 0) {
			e := es[n-1]
			e.Key = append(slices.Clone(e.Key), 0)
			es = append(es, e)
		}
	case LieHashOutside:
		if l.tell(req.Partition, n > 0 && len(req.Ranges) > 0 && len(req.Ranges[0].End) > 0) {
			es[n-1].Key = append(slices.Clone(req.Ranges[len(req.Ranges)-1].End), 0)
		}
	}
	return es, nil
}

// symbolLiar is a sketchLiar in front of a replica with symbol streams.
type symbolLiar struct{ sketchLiar }

func (l symbolLiar) OpenSymbols(ctx context.Context, req reconcile.SymbolsRequest) (reconcile.SymbolStream, error) {
	st, err := l.Replica.OpenSymbols(ctx, req)
	if err != nil {
		return nil, err
	}
	return &lyingStream{SymbolStream: st, l: l.liar, part: req.Partition}, nil
}

type lyingStream struct {
	reconcile.SymbolStream
	l      *liar
	part   uint32
	chunks int
}

func (s *lyingStream) Next(ctx context.Context) (reconcile.SymbolChunk, error) {
	c, err := s.SymbolStream.Next(ctx)
	if err != nil {
		return c, err
	}
	s.chunks++
	n := len(c.Symbols)
	switch s.l.lie {
	case LieSymbolsShort:
		if s.l.tell(s.part, n > 1) {
			c.Symbols = c.Symbols[:n-1]
		}
	case LieSymbolsWideID:
		if s.l.tell(s.part, n > 0) {
			c.Symbols[n-1].ID |= 1 << 60
		}
	case LieSymbolsCount:
		if s.l.tell(s.part, s.chunks == 2) {
			c.Count++
		}
	case LieSymbolsFirst:
		if s.l.tell(s.part, s.chunks == 1 && n > 0) {
			c.Symbols[0].Count++
		}
	}
	return c, nil
}

func (l *liar) Apply(ctx context.Context, p uint32, es []reconcile.Entry) error {
	l.state.mu.Lock()
	if l.state.told && p == l.state.partition {
		l.state.appliesAfter++
	}
	l.state.mu.Unlock()
	return l.Replica.Apply(ctx, p, es)
}

// RunLyingPeers runs, for each seed and each Lie, a session in which
// replica B tells that lie once. Whenever the lie is told, the session must
// fail with reconcile.ErrBadPeerAnswer and neither replica may change: the
// session issues no Apply to that partition (SyncAll repairs the other
// partitions). Seeds whose sessions never reach the lied-about
// answer are counted and must not be all of them.
func RunLyingPeers(t *testing.T, newReplica NewReplica, opts Options) {
	opts = opts.withDefaults(20)
	for _, mode := range opts.Modes {
		for lie := range numLies {
			t.Run(fmt.Sprintf("%s/%s", mode, lie), func(t *testing.T) {
				told := 0
				for i := range opts.Seeds {
					seed := opts.FirstSeed + uint64(i)
					sc := genScenario(seed, mode, opts.MaxKeys)
					if sc.shape == "identical" || sc.shape == "both-empty" {
						continue
					}
					reps := build(t, newReplica, sc)
					ctx := context.Background()
					before0, _, err0 := Dump(ctx, reps[0])
					before1, _, err1 := Dump(ctx, reps[1])
					if err := errors.Join(err0, err1); err != nil {
						t.Fatal(err)
					}
					state := &lieState{}
					var a, b reconcile.Replica = &liar{Replica: reps[0], lie: -1, state: state}, &liar{Replica: reps[1], lie: lie, state: state}
					both := reconcile.CapAll
					for _, r := range reps {
						info, err := r.Info(ctx)
						if err != nil {
							t.Fatal(err)
						}
						both &= info.Capabilities
					}
					if lie.sketchLie() {
						if !both.Has(reconcile.CapSketch) {
							t.Skip("replicas do not serve sketches")
						}
						a.(*liar).caps, b.(*liar).caps = reconcile.CapSketch, reconcile.CapSketch
						a, b = sketchLiar{a.(*liar)}, sketchLiar{b.(*liar)}
					}
					if lie.symbolLie() {
						if !both.Has(reconcile.CapSketch | reconcile.CapSymbols) {
							t.Skip("replicas do not stream symbols")
						}
						a.(sketchLiar).caps, b.(sketchLiar).caps = reconcile.CapSketch|reconcile.CapSymbols, reconcile.CapSketch|reconcile.CapSymbols
						a, b = symbolLiar{a.(sketchLiar)}, symbolLiar{b.(sketchLiar)}
					}
					so := opts.Sync
					so.Parallelism = 1
					_, err := reconcile.SyncAll(ctx, a, b, so)
					if !state.told {
						continue
					}
					told++
					if !errors.Is(err, reconcile.ErrBadPeerAnswer) {
						t.Fatalf("seed=%d shape=%s: lie %s told, err = %v, want ErrBadPeerAnswer", seed, sc.shape, lie, err)
					}
					var pe *reconcile.PeerAnswerError
					if !errors.As(err, &pe) || pe.Side != reconcile.SideB {
						t.Fatalf("seed=%d: error does not blame side B: %v", seed, err)
					}
					if state.appliesAfter != 0 {
						t.Fatalf("seed=%d: %d applies after a lie", seed, state.appliesAfter)
					}
					if len(sc.cfg.SplitPoints) > 0 {
						continue // earlier partitions were rightly repaired
					}
					after0, _, _ := Dump(ctx, reps[0])
					after1, _, _ := Dump(ctx, reps[1])
					if !entriesEqual(before0, after0) || !entriesEqual(before1, after1) {
						t.Fatalf("seed=%d: a replica changed after a lie", seed)
					}
				}
				if told == 0 {
					t.Fatalf("lie %s was never told in %d seeds", lie, opts.Seeds)
				}
			})
		}
	}
}

func entriesEqual(a, b []reconcile.Entry) bool {
	return slices.EqualFunc(a, b, func(x, y reconcile.Entry) bool {
		return bytes.Equal(x.Key, y.Key) && bytes.Equal(x.Record, y.Record) && x.Digest == y.Digest
	})
}

// RangeSketch implements reconcile.Replica: not offered (racers that race in
// or lie about sketches override it).
func (*racer) RangeSketch(context.Context, reconcile.RangeSketchRequest) (reconcile.RangeSketchResult, error) {
	return reconcile.RangeSketchResult{}, unsupported("RangeSketch")
}

// FetchByHash implements reconcile.Replica: not offered (see RangeSketch).
func (*racer) FetchByHash(context.Context, reconcile.FetchByHashRequest) ([]reconcile.Entry, error) {
	return nil, unsupported("FetchByHash")
}

// OpenSymbols implements reconcile.Replica: not offered (see RangeSketch).
func (*racer) OpenSymbols(context.Context, reconcile.SymbolsRequest) (reconcile.SymbolStream, error) {
	return nil, unsupported("OpenSymbols")
}

// ApplyAndHash implements reconcile.Replica: not offered (sessions apply,
// then hash, through the racer's Apply and RangeHash).
func (*racer) ApplyAndHash(context.Context, uint32, []reconcile.Entry, []reconcile.KeyRange) ([]reconcile.RangeHash, error) {
	return nil, unsupported("ApplyAndHash")
}

// RangeSketch implements reconcile.Replica: not offered (liars that race in
// or lie about sketches override it).
func (*liar) RangeSketch(context.Context, reconcile.RangeSketchRequest) (reconcile.RangeSketchResult, error) {
	return reconcile.RangeSketchResult{}, unsupported("RangeSketch")
}

// FetchByHash implements reconcile.Replica: not offered (see RangeSketch).
func (*liar) FetchByHash(context.Context, reconcile.FetchByHashRequest) ([]reconcile.Entry, error) {
	return nil, unsupported("FetchByHash")
}

// OpenSymbols implements reconcile.Replica: not offered (see RangeSketch).
func (*liar) OpenSymbols(context.Context, reconcile.SymbolsRequest) (reconcile.SymbolStream, error) {
	return nil, unsupported("OpenSymbols")
}

// ApplyAndHash implements reconcile.Replica: not offered (sessions apply,
// then hash, through the liar's Apply and RangeHash).
func (*liar) ApplyAndHash(context.Context, uint32, []reconcile.Entry, []reconcile.KeyRange) ([]reconcile.RangeHash, error) {
	return nil, unsupported("ApplyAndHash")
}
