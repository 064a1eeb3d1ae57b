package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile"
)

// TestDigestCacheMatchesScan checks that symbol streams and FetchByHash
// answered from the digest cache equal the answers computed by scanning,
// after random writes, deletes, range deletes and checkpoints, with the cache
// on, off and under a budget so small that it evicts on every call.
func TestDigestCacheMatchesScan(t *testing.T) {
	seed := testSeed(t)
	for _, tc := range []struct {
		name  string
		bytes int
	}{
		{"default", 0},
		{"evicting", 4 << 10},
		{"disabled", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			pn, err := merkle.SplitPoints([][]byte{[]byte("k3"), []byte("k6")})
			if err != nil {
				t.Fatal(err)
			}
			e := openMem(t, vfs.NewMem(), Options{Partitioner: pn, DigestCacheBytes: tc.bytes, Tree: merkle.Params{LeafSize: 16}})
			defer e.Close()
			e.digests.minIndexed = 0 // index these small partitions too
			ctx := context.Background()
			key := func() []byte { return fmt.Appendf(nil, "k%04d", rng.IntN(1000)) }
			for round := range 12 {
				for range 1 + rng.IntN(300) {
					var err error
					switch r := rng.IntN(20); {
					case r < 14:
						err = e.Put(ctx, key(), fmt.Appendf(nil, "v%d", rng.Uint64()), nil)
					case r < 19:
						err = e.Delete(ctx, key(), nil)
					default:
						a, b := key(), key()
						if string(a) > string(b) {
							a, b = b, a
						}
						if string(a) == string(b) {
							b = append(b, 0)
						}
						err = e.DeleteRange(ctx, a, b, nil)
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				if rng.IntN(3) == 0 {
					if err := e.Checkpoint(ctx); err != nil {
						t.Fatal(err)
					}
				}
				if err := e.WaitReady(ctx); err != nil {
					t.Fatal(err)
				}
				for _, p := range e.Tree().Partitions() {
					whole := []reconcile.KeyRange{{Start: p.Start, End: p.End}}
					// The same records as two ranges: never
					// answered from the cache.
					mid := []byte("k5")
					if p.ID == 0 {
						mid = []byte("k1")
					} else if p.ID == 2 {
						mid = []byte("k8")
					}
					split := []reconcile.KeyRange{{Start: p.Start, End: mid}, {Start: mid, End: p.End}}
					got := symbols(t, e, uint32(p.ID), whole)
					e.digests.builds.Wait() // the ID index, if one is being built
					want := symbols(t, e, uint32(p.ID), split)
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("round %d partition %d: cached symbols differ from scanned ones", round, p.ID)
					}
					ids := []uint64{rng.Uint64() >> 16}
					var all []uint64
					err := e.scanRanges(ctx, uint32(p.ID), split, func(se merkle.ScanEntry) error {
						all = append(all, reconcile.SketchID(se.Digest.Short()))
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
					for _, id := range all {
						if rng.IntN(8) == 0 {
							ids = append(ids, id)
						}
					}
					gotE, err := e.FetchByHash(ctx, reconcile.FetchByHashRequest{Partition: uint32(p.ID), Ranges: whole, IDs: ids})
					if err != nil {
						t.Fatal(err)
					}
					wantE, err := e.FetchByHash(ctx, reconcile.FetchByHashRequest{Partition: uint32(p.ID), Ranges: split, IDs: ids})
					if err != nil {
						t.Fatal(err)
					}
					if len(wantE) != len(ids)-1 && len(wantE) != len(ids) {
						t.Fatalf("scan path fetched %d entries for %d IDs", len(wantE), len(ids))
					}
					if !slices.EqualFunc(gotE, wantE, func(a, b reconcile.Entry) bool {
						return string(a.Key) == string(b.Key) && string(a.Record) == string(b.Record)
					}) {
						t.Fatalf("round %d partition %d: cached fetch returned %d entries, scan %d", round, p.ID, len(gotE), len(wantE))
					}
				}
			}
			e.digests.mu.Lock()
			defer e.digests.mu.Unlock()
			switch {
			case tc.bytes < 0 && len(e.digests.parts) != 0:
				t.Errorf("disabled cache holds %d partitions", len(e.digests.parts))
			case tc.bytes == 0 && len(e.digests.parts) != 3:
				t.Errorf("cache holds %d partitions, want 3", len(e.digests.parts))
			case tc.bytes > 0 && e.digests.bytes > tc.bytes:
				t.Errorf("cache holds %d bytes over its budget of %d", e.digests.bytes, tc.bytes)
			case tc.bytes == 0 && e.digests.indexed.Load() == 0:
				t.Errorf("no fetch was answered through an ID index")
			}
		})
	}
}

// TestDigestCacheTakesRecomputedLeaves checks that a view does not scan the
// leaves the tree's recompute just scanned: a RangeHash recomputes the
// written leaves and hands their digests over (merkle's LeafObserver), the
// next symbol stream takes them, and its symbols still equal a scan's.
func TestDigestCacheTakesRecomputedLeaves(t *testing.T) {
	ctx := context.Background()
	e := openMem(t, vfs.NewMem(), Options{Tree: merkle.Params{LeafSize: 16}})
	defer e.Close()
	for i := range 4000 {
		if err := e.Put(ctx, fmt.Appendf(nil, "k%05d", i), []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
	}
	whole := []reconcile.KeyRange{{}}
	symbols(t, e, 0, whole) // fills the cache
	for i := 0; i < 4000; i += 400 {
		if err := e.Put(ctx, fmt.Appendf(nil, "k%05d", i), []byte("w"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.RangeHash(ctx, reconcile.RangeHashRequest{Partition: 0, Ranges: whole}); err != nil {
		t.Fatal(err)
	}
	scanned, handed := e.digests.scanned.Load(), e.digests.handed.Load()
	got := symbols(t, e, 0, whole)
	if n := e.digests.scanned.Load() - scanned; n != 0 {
		t.Errorf("the view scanned %d leaves the recompute had just scanned", n)
	}
	if n := e.digests.handed.Load() - handed; n < 10 {
		t.Errorf("the recompute handed over %d leaves, want at least the 10 written", n)
	}
	want := symbols(t, e, 0, []reconcile.KeyRange{{End: []byte("k02")}, {Start: []byte("k02")}})
	if !reflect.DeepEqual(got, want) {
		t.Fatal("symbols from handed-over digests differ from a scan's")
	}
}

// TestDigestCacheReusesView checks that a view asked for while no leaf of
// the partition changed is the last one (no walk over the tree's leaves),
// that any write ends that, and that the answers still equal a scan's.
func TestDigestCacheReusesView(t *testing.T) {
	ctx := context.Background()
	e := openMem(t, vfs.NewMem(), Options{Tree: merkle.Params{LeafSize: 16}})
	defer e.Close()
	for i := range 2000 {
		if err := e.Put(ctx, fmt.Appendf(nil, "k%05d", i), []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
	}
	whole := []reconcile.KeyRange{{}}
	split := []reconcile.KeyRange{{End: []byte("k01")}, {Start: []byte("k01")}}
	fetch := func(ids []uint64) []reconcile.Entry {
		t.Helper()
		got, err := e.FetchByHash(ctx, reconcile.FetchByHashRequest{Partition: 0, Ranges: whole, IDs: ids})
		if err != nil {
			t.Fatal(err)
		}
		want, err := e.FetchByHash(ctx, reconcile.FetchByHashRequest{Partition: 0, Ranges: split, IDs: ids})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) || len(got) != len(ids) {
			t.Fatalf("cached fetch: %d entries, scan: %d, asked %d", len(got), len(want), len(ids))
		}
		return got
	}
	idOf := func(k string) uint64 {
		rec, closer, err := e.DB().Get([]byte(k))
		if err != nil {
			t.Fatal(err)
		}
		defer closer.Close()
		d, _ := merkle.LeafDigest(nil, []byte(k), rec)
		return reconcile.SketchID(d.Short())
	}
	symbols(t, e, 0, whole)
	r0 := e.digests.reused.Load()
	fetch([]uint64{idOf("k00007"), idOf("k01500")})
	if n := e.digests.reused.Load() - r0; n != 1 {
		t.Fatalf("a fetch right after a stream reused %d views, want 1", n)
	}
	if err := e.Put(ctx, []byte("k00007"), []byte("w"), nil); err != nil {
		t.Fatal(err)
	}
	r1 := e.digests.reused.Load()
	got := fetch([]uint64{idOf("k00007")})
	if n := e.digests.reused.Load() - r1; n != 0 {
		t.Fatalf("a fetch after a write reused %d views, want 0", n)
	}
	if string(got[0].Key) != "k00007" {
		t.Fatalf("fetched %q, want the rewritten k00007", got[0].Key)
	}
	if !reflect.DeepEqual(symbols(t, e, 0, whole), symbols(t, e, 0, split)) {
		t.Fatal("symbols of a reused view differ from a scan's")
	}
}

// TestDigestIndexFallsBack checks that FetchByHash answers through the ID
// index once a symbol stream built it, and falls back to the walk, with the
// same answer, for an ambiguous ID (two leaves hold it) or without room in
// the budget for an index.
func TestDigestIndexFallsBack(t *testing.T) {
	ctx := context.Background()
	for _, budget := range []int{0, 100 << 10} {
		e := openMem(t, vfs.NewMem(), Options{Tree: merkle.Params{LeafSize: 16}, DigestCacheBytes: budget})
		e.digests.minIndexed = 0
		for i := range 3000 {
			if err := e.Put(ctx, fmt.Appendf(nil, "k%05d", i), []byte("v"), nil); err != nil {
				t.Fatal(err)
			}
		}
		whole := []reconcile.KeyRange{{}}
		split := []reconcile.KeyRange{{End: []byte("k01")}, {Start: []byte("k01")}}
		var ids []uint64
		err := e.scanRanges(ctx, 0, whole, func(se merkle.ScanEntry) error {
			if len(ids) < 50 && se.Digest.Short()%7 == 0 {
				ids = append(ids, reconcile.SketchID(se.Digest.Short()))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		check := func(what string, wantIndexed bool) {
			t.Helper()
			before := e.digests.indexed.Load()
			got, err := e.FetchByHash(ctx, reconcile.FetchByHashRequest{Partition: 0, Ranges: whole, IDs: ids})
			if err != nil {
				t.Fatal(err)
			}
			if indexed := e.digests.indexed.Load() > before; indexed != wantIndexed {
				t.Errorf("budget %d, %s: answered through the index: %v, want %v", budget, what, indexed, wantIndexed)
			}
			want, err := e.FetchByHash(ctx, reconcile.FetchByHashRequest{Partition: 0, Ranges: split, IDs: ids})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) || len(got) != len(ids) {
				t.Fatalf("budget %d, %s: %d entries, a scan finds %d, asked %d", budget, what, len(got), len(want), len(ids))
			}
		}
		symbols(t, e, 0, whole) // builds the index, if the budget has room
		e.digests.builds.Wait()
		check("after a stream", budget == 0)
		if budget == 0 {
			cp := e.digests.parts[0]
			cp.mu.Lock()
			if cp.amb == nil {
				cp.amb = map[uint64]struct{}{}
			}
			cp.amb[ids[3]] = struct{}{}
			cp.mu.Unlock()
			check("an ambiguous ID", false)
			// Writes replace leaves; the index follows them.
			for i := 0; i < 3000; i += 7 {
				if err := e.Delete(ctx, fmt.Appendf(nil, "k%05d", i), nil); err != nil {
					t.Fatal(err)
				}
			}
			symbols(t, e, 0, whole)
			e.digests.builds.Wait()
			ids = slices.DeleteFunc(ids, func(id uint64) bool { return id == ids[3] })
			var kept []uint64
			err := e.scanRanges(ctx, 0, whole, func(se merkle.ScanEntry) error {
				id := reconcile.SketchID(se.Digest.Short())
				if slices.Contains(ids, id) {
					kept = append(kept, id)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			ids = kept
			check("after deletes", true)
			cp.mu.Lock()
			n := len(cp.ids)
			cp.mu.Unlock()
			if n != 3000 { // a delete leaves a tombstone record
				t.Errorf("index holds %d IDs, the partition 3000 records", n)
			}
		}
		e.Close()
	}
}

// symbols returns the first 600 symbols (beyond the cached prefix) of the stream of ranges.
func symbols(t *testing.T, e *Engine, part uint32, ranges []reconcile.KeyRange) []reconcile.SymbolChunk {
	t.Helper()
	s, err := e.OpenSymbols(context.Background(), reconcile.SymbolsRequest{Partition: part, Ranges: ranges, Max: 600})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out []reconcile.SymbolChunk
	for n := 0; n < 600; {
		c, err := s.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
		n += len(c.Symbols)
	}
	return out
}

// TestDigestCacheConcurrent runs symbol streams and fetches of every
// partition in parallel with writers, under a budget that evicts (run with
// -race in CI), then checks that the quiesced cache answers like a scan.
func TestDigestCacheConcurrent(t *testing.T) {
	seed := testSeed(t)
	// An evicting budget, and one with room for the ID indexes.
	t.Run("evicting", func(t *testing.T) { testDigestCacheConcurrent(t, seed, 24<<10) })
	t.Run("indexed", func(t *testing.T) { testDigestCacheConcurrent(t, seed, 0) })
}

func testDigestCacheConcurrent(t *testing.T, seed uint64, budget int) {
	pn, err := merkle.SplitPoints([][]byte{[]byte("k3"), []byte("k6")})
	if err != nil {
		t.Fatal(err)
	}
	e := openMem(t, vfs.NewMem(), Options{Partitioner: pn, DigestCacheBytes: budget, Tree: merkle.Params{LeafSize: 16}})
	defer e.Close()
	e.digests.minIndexed = 0
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for i := range 1500 {
				k := fmt.Appendf(nil, "k%04d", rng.IntN(1000))
				var err error
				if i%5 == 4 {
					err = e.Delete(ctx, k, nil)
				} else {
					err = e.Put(ctx, k, fmt.Appendf(nil, "v%d", i), nil)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 60 {
				part := uint32((r + i) % 3)
				s, err := e.OpenSymbols(ctx, reconcile.SymbolsRequest{Partition: part, Ranges: wholePartition(e, part), Max: 300})
				if err != nil {
					errs <- err
					return
				}
				for range 3 {
					if _, err := s.Next(ctx); err != nil {
						errs <- err
						return
					}
				}
				s.Close()
				if _, err := e.FetchByHash(ctx, reconcile.FetchByHashRequest{Partition: part, Ranges: wholePartition(e, part), IDs: []uint64{uint64(i)}}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for part := range uint32(3) {
		mid := []byte{"k1k5k8"[2*part], "k1k5k8"[2*part+1]}
		whole := wholePartition(e, part)
		split := []reconcile.KeyRange{{Start: whole[0].Start, End: mid}, {Start: mid, End: whole[0].End}}
		if !reflect.DeepEqual(symbols(t, e, part, whole), symbols(t, e, part, split)) {
			t.Fatalf("partition %d: cached symbols differ from scanned ones after concurrent use", part)
		}
	}
	e.digests.mu.Lock()
	defer e.digests.mu.Unlock()
	sum := 0
	for _, p := range e.digests.parts {
		sum += p.accounted
	}
	limit := budget
	if limit == 0 {
		limit = DefaultDigestCacheBytes
	}
	if sum != e.digests.bytes || e.digests.bytes > limit {
		t.Fatalf("cache accounts %d bytes, its partitions %d (budget %d)", e.digests.bytes, sum, limit)
	}
	if budget == 0 && e.digests.indexed.Load() == 0 {
		t.Fatal("no fetch was answered through an ID index")
	}
}

func wholePartition(e *Engine, part uint32) []reconcile.KeyRange {
	for _, p := range e.Tree().Partitions() {
		if p.ID == int(part) {
			return []reconcile.KeyRange{{Start: p.Start, End: p.End}}
		}
	}
	return nil
}

func TestDigestDiff(t *testing.T) {
	for _, tc := range []struct{ old, new, gone, came []uint64 }{
		{nil, nil, nil, nil},
		{[]uint64{3, 1, 2}, []uint64{2, 3, 1}, nil, nil},
		{[]uint64{1, 2, 3}, []uint64{1, 4, 3}, []uint64{2}, []uint64{4}},
		{[]uint64{5, 5, 1}, []uint64{5, 1}, []uint64{5}, nil},
		{nil, []uint64{9, 7}, nil, []uint64{7, 9}},
		{[]uint64{9, 7}, nil, []uint64{7, 9}, nil},
	} {
		gone, came := digestDiff(tc.old, tc.new)
		if !slices.Equal(gone, tc.gone) || !slices.Equal(came, tc.came) {
			t.Errorf("digestDiff(%v, %v) = %v, %v; want %v, %v", tc.old, tc.new, gone, came, tc.gone, tc.came)
		}
	}
}
