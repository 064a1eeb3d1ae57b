package engine

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile"
)

// TestEntryIndexMatchesScan checks that symbol streams and FetchByHash
// answered from the entry index equal the answers computed by scanning,
// after random writes, deletes, range deletes, checkpoints and restarts
// (with and without a checkpoint first), and that Verify finds the index
// consistent throughout.
func TestEntryIndexMatchesScan(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 7))
	pn, err := merkle.SplitPoints([][]byte{[]byte("k3"), []byte("k6")})
	if err != nil {
		t.Fatal(err)
	}
	fs := vfs.NewCrashableMem()
	opts := Options{Partitioner: pn, Tree: merkle.Params{LeafSize: 16}, PrefixSymbols: 512}
	e := openMem(t, fs, opts)
	defer func() { e.Close() }()
	ctx := context.Background()
	key := func() []byte { return fmt.Appendf(nil, "k%04d", rng.IntN(1000)) }
	for round := range 40 {
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
		switch rng.IntN(4) {
		case 0:
			if err := e.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		case 1:
			// A restart: the index is read back, not rebuilt.
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			e = openMem(t, fs, opts)
		case 2:
			// A crash, with whatever was not synced lost.
			clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rand.New(rand.NewPCG(rng.Uint64(), 1))})
			e.Close()
			fs = clone
			e = openMem(t, fs, opts)
			if st := e.Tree().Stats(); st.KeysScanned != 0 {
				t.Fatalf("round %d: open after a crash scanned %d keys", round, st.KeysScanned)
			}
		}
		for part := range pn.NumPartitions() {
			checkEntryAnswers(t, e, uint32(part), rng)
		}
		mustVerify(t, e)
	}
	st := e.Tree().Stats()
	t.Logf("last open: %d leaves recomputed, %d keys scanned; %d fragments read by FetchByHash, %d stale", st.LeavesRecomputed, st.KeysScanned, e.entries.fragmentsRead.Load(), e.entries.stale.Load())
}

// checkEntryAnswers compares partition part's symbol stream and a
// FetchByHash of random IDs with the answers of a scan.
func checkEntryAnswers(t *testing.T, e *Engine, part uint32, rng *rand.Rand) {
	t.Helper()
	ctx := context.Background()
	start, end := e.tree.Partitioner().Bounds(int(part))
	whole := []reconcile.KeyRange{{Start: start, End: end}}
	var digests []uint64
	var entries []reconcile.Entry
	if _, err := e.tree.Scan(ctx, int(part), merkle.Range{Start: start, End: end}, 0, func(se merkle.ScanEntry) error {
		digests = append(digests, se.Digest.Short())
		entries = append(entries, reconcile.Entry{Key: slices.Clone(se.Key), Record: slices.Clone(se.Value)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Past the prefix (512) too: the stream goes on from the fragments.
	const max = 700
	s, err := e.OpenSymbols(ctx, reconcile.SymbolsRequest{Partition: part, Ranges: whole, Max: max})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := reconcile.NewEncoderStream(slices.Clone(digests), max)
	for {
		got, gerr := s.Next(ctx)
		exp, werr := want.Next(ctx)
		if (gerr == io.EOF) != (werr == io.EOF) {
			t.Fatalf("partition %d: stream ends differ: %v, %v", part, gerr, werr)
		}
		if werr == io.EOF {
			break
		}
		if gerr != nil {
			t.Fatal(gerr)
		}
		if !reflect.DeepEqual(got, exp) {
			t.Fatalf("partition %d: stream chunk differs from the scan's (count %d vs %d)", part, got.Count, exp.Count)
		}
	}
	// A random subset of IDs, and one ID no record has.
	var ids []uint64
	var wantEntries []reconcile.Entry
	for i, d := range digests {
		if rng.IntN(8) == 0 {
			ids = append(ids, reconcile.SketchID(d))
			wantEntries = append(wantEntries, entries[i])
		}
	}
	ids = append(ids, 1<<40+12345)
	got, err := e.FetchByHash(ctx, reconcile.FetchByHashRequest{Partition: part, Ranges: whole, IDs: ids})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(wantEntries) || (len(got) > 0 && !reflect.DeepEqual(got, wantEntries)) {
		t.Fatalf("partition %d: FetchByHash of %d IDs: %d entries, the scan %d", part, len(ids), len(got), len(wantEntries))
	}
}

// TestEntryIndexNoScanAfterRestart checks that a session's symbol stream
// and FetchByHash after a restart read no record but those fetched: the
// index is on disk, not rebuilt by a scan.
func TestEntryIndexNoScanAfterRestart(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMem()
	opts := Options{Tree: merkle.Params{LeafSize: 32}}
	e := openMem(t, fs, opts)
	const n = 20000
	b := e.NewBatch()
	for i := range n {
		_ = b.Put(fmt.Appendf(nil, "k%06d", i), []byte("v"))
	}
	if err := b.Commit(ctx, NoSync); err != nil {
		t.Fatal(err)
	}
	if err := e.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openMem(t, fs, opts)
	defer e.Close()
	whole := []reconcile.KeyRange{{}}
	s, err := e.OpenSymbols(ctx, reconcile.SymbolsRequest{Partition: 0, Ranges: whole, Max: 1000})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Next(ctx)
	s.Close()
	if err != nil || c.Count != n {
		t.Fatalf("stream after restart: count %d, err %v", c.Count, err)
	}
	var ids []uint64
	for i := range 5 {
		rec, err := e.GetRecord(ctx, fmt.Appendf(nil, "k%06d", i*3001))
		if err != nil {
			t.Fatal(err)
		}
		raw := rec.Encode()
		d, _ := merkle.LeafDigest(nil, fmt.Appendf(nil, "k%06d", i*3001), raw)
		ids = append(ids, reconcile.SketchID(d.Short()))
	}
	got, err := e.FetchByHash(ctx, reconcile.FetchByHashRequest{Partition: 0, Ranges: whole, IDs: ids})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("FetchByHash after restart found %d of 5", len(got))
	}
	if st := e.Tree().Stats(); st.KeysScanned != 0 {
		t.Errorf("stream and fetch after restart scanned %d keys", st.KeysScanned)
	}
	if r := e.entries.fragmentsRead.Load(); r > 5 {
		t.Errorf("FetchByHash of 5 IDs read %d fragments", r)
	}
}

// TestEntryIndexVerifyFindsDamage checks that Verify reports a damaged
// entry index (a fragment deleted behind the engine's back) and that a
// rebuild repairs it.
func TestEntryIndexVerifyFindsDamage(t *testing.T) {
	ctx := context.Background()
	e := openMem(t, vfs.NewMem(), Options{Tree: merkle.Params{LeafSize: 16}})
	defer e.Close()
	for i := range 500 {
		if err := e.Put(ctx, fmt.Appendf(nil, "k%04d", i), []byte("v"), NoSync); err != nil {
			t.Fatal(err)
		}
	}
	mustVerify(t, e)
	lo, hi := spaceOf('f', 0)
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		t.Fatal(err)
	}
	if !it.First() {
		t.Fatal("no fragment")
	}
	victim := slices.Clone(it.Key())
	it.Close()
	if err := e.db.Delete(victim, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	ms, err := e.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("Verify did not see a deleted fragment")
	}
	t.Logf("%d mismatches, first: %s", len(ms), ms[0])
	if err := e.tree.MarkRebuild(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.Maintain(ctx); err != nil { // rebuilds
		t.Fatal(err)
	}
	mustVerify(t, e)
}

// TestEntryIndexConcurrent runs writers, symbol streams with fetches of
// the IDs they stream, checkpoints and recomputes at once, then checks the
// entry index against the data (Verify).
func TestEntryIndexConcurrent(t *testing.T) {
	seed := testSeed(t)
	ctx := context.Background()
	pn, err := merkle.SplitPoints([][]byte{[]byte("k5")})
	if err != nil {
		t.Fatal(err)
	}
	e := openMem(t, vfs.NewMem(), Options{Partitioner: pn, Tree: merkle.Params{LeafSize: 8}, PrefixSymbols: 256})
	defer e.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	writes := 3000
	if testing.Short() {
		writes = 1000
	}
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for i := range writes {
				k := fmt.Appendf(nil, "k%04d", rng.IntN(1000))
				var err error
				if i%5 == 4 {
					err = e.Delete(ctx, k, NoSync)
				} else {
					err = e.Put(ctx, k, fmt.Appendf(nil, "v%d", rng.Uint64()), NoSync)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { // sessions' reads
		defer bg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			part := uint32(i % 2)
			start, end := e.tree.Partitioner().Bounds(int(part))
			whole := []reconcile.KeyRange{{Start: start, End: end}}
			s, err := e.OpenSymbols(ctx, reconcile.SymbolsRequest{Partition: part, Ranges: whole, Max: 64})
			if err != nil {
				errs <- err
				return
			}
			c, err := s.Next(ctx)
			s.Close()
			if err != nil {
				errs <- err
				return
			}
			var ids []uint64
			for _, sym := range c.Symbols {
				if sym.Count == 1 {
					ids = append(ids, sym.ID)
				}
			}
			if _, err := e.FetchByHash(ctx, reconcile.FetchByHashRequest{Partition: part, Ranges: whole, IDs: ids}); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() { // checkpoints
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := e.Checkpoint(ctx); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	bg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := e.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, e)
}

// TestEntryIndexCorruptAtOpen: a malformed persisted prefix is rebuilt
// from the data at Open, like a corrupt tree, not a failed Open.
func TestEntryIndexCorruptAtOpen(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMem()
	opts := Options{Tree: merkle.Params{LeafSize: 16}}
	e := openMem(t, fs, opts)
	for i := range 300 {
		if err := e.Put(ctx, fmt.Appendf(nil, "k%04d", i), []byte("v"), NoSync); err != nil {
			t.Fatal(err)
		}
	}
	mustVerify(t, e)
	if err := e.db.Set(prefixChunkKey(0, 0), []byte("short"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openMem(t, fs, opts) // fails the test if Open fails
	defer e.Close()
	if err := e.Maintain(ctx); err != nil { // waits for the rebuild
		t.Fatal(err)
	}
	v, closer, err := e.db.Get(prefixChunkKey(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	if len(v) != cellBytes*prefixChunkCells {
		t.Fatalf("prefix chunk 0 not rebuilt: %d bytes", len(v))
	}
	mustVerify(t, e)
}
