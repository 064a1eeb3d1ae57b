package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// TestCrashConsistency crashes the engine at random points (by cloning a
// crashable in-memory FS with a random share of unsynced data) while writes,
// syncs and checkpoints run, reopens every clone and checks that the tree
// verifies and every write acknowledged with Sync is present.
func TestCrashConsistency(t *testing.T) {
	seed := testSeed(t)
	ctx := context.Background()
	crashes := *crashFlag
	const perRound = 10
	var total, duringCheckpoint atomic.Int64
	for round := 0; total.Load() < int64(crashes); round++ {
		rng := rand.New(rand.NewPCG(seed, uint64(round)))
		fs := vfs.NewCrashableMem()
		pn, _ := merkle.SplitPoints([][]byte{[]byte("k2")})
		opts := Options{Tree: merkle.Params{LeafSize: 8}, Partitioner: pn}
		e := openMem(t, fs, opts)

		var mu sync.Mutex
		synced := map[string]record.Timestamp{} // key -> timestamp of its last synced write
		var inCheckpoint atomic.Bool
		stop := make(chan struct{})
		tokens := make(chan struct{}, 1000)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { // writer
			defer wg.Done()
			wrng := rand.New(rand.NewPCG(seed, uint64(round)+1e6))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tokens:
				}
				k := []byte(fmt.Sprintf("k%d%03d", wrng.IntN(4), wrng.IntN(300)))
				sync := wrng.IntN(4) == 0
				wo := NoSync
				if sync {
					wo = nil
				}
				var err error
				switch x := wrng.IntN(20); {
				case x < 14:
					err = e.Put(ctx, k, []byte(fmt.Sprint(i)), wo)
				case x < 19:
					err = e.Delete(ctx, k, wo)
				default:
					b := e.NewBatch()
					for j := 0; j < 5; j++ {
						_ = b.Put([]byte(fmt.Sprintf("k%d%03d", wrng.IntN(4), wrng.IntN(300))), []byte("b"))
					}
					err = b.Commit(ctx, NoSync)
					sync = false
				}
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				if sync {
					rec, err := e.GetRecord(ctx, k)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					synced[string(k)] = rec.Winner().Timestamp
					mu.Unlock()
				}
			}
		}()
		go func() { // checkpointer
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-tokens:
				}
				inCheckpoint.Store(true)
				err := e.Checkpoint(ctx)
				inCheckpoint.Store(false)
				if err != nil && !errors.Is(err, merkle.ErrClosed) {
					t.Error(err)
					return
				}
				if _, err := e.Tree().RangeFingerprint(ctx, 1, merkle.Range{}); err != nil {
					t.Error(err)
					return
				}
			}
		}()

		for c := 0; c < perRound; c++ {
			// Let some work happen: the writer and the checkpointer run
			// while this goroutine writes too, then the crash.
			for j := 0; j < 1+rng.IntN(200); j++ {
				tokens <- struct{}{}
			}
			// Keys of their own: the ledger reads back the writer's synced
			// record, which a concurrent unsynced write of the same key
			// would shadow.
			for j := 0; j < 1+rng.IntN(100); j++ {
				_ = e.Put(ctx, []byte(fmt.Sprintf("k9%03d", rng.IntN(300))), []byte("main"), NoSync)
			}
			mu.Lock()
			want := make(map[string]record.Timestamp, len(synced))
			for k, ts := range synced {
				want[k] = ts
			}
			mu.Unlock()
			during := inCheckpoint.Load()
			clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rand.New(rand.NewPCG(rng.Uint64(), 1))})
			if during || inCheckpoint.Load() {
				duringCheckpoint.Add(1)
			}
			total.Add(1)
			checkClone(t, clone, opts, want)
			if t.Failed() {
				t.Fatalf("round %d crash %d failed", round, c)
			}
		}
		close(stop)
		wg.Wait()
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d crash points, %d during a checkpoint", total.Load(), duringCheckpoint.Load())
	if duringCheckpoint.Load() == 0 {
		t.Errorf("no crash point fell during a checkpoint")
	}
}

func checkClone(t *testing.T, fs vfs.FS, opts Options, want map[string]record.Timestamp) {
	t.Helper()
	ctx := context.Background()
	e := openMem(t, fs, opts)
	if st := e.Tree().Stats(); st.KeysScanned != 0 {
		t.Errorf("open after a crash scanned %d keys", st.KeysScanned)
	}
	// Close (which checkpoints the recovered, still dirty tree) and open
	// again: the dirtiness recovered from markers must survive that.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openMem(t, fs, opts)
	defer e.Close()
	mustVerify(t, e)
	for k, ts := range want {
		rec, err := e.GetRecord(ctx, []byte(k))
		if err != nil {
			t.Errorf("synced key %q: %v", k, err)
			continue
		}
		if got := rec.Winner().Timestamp; got.Compare(ts) < 0 {
			t.Errorf("synced key %q: has timestamp %s, older than the synced write %s", k, got, ts)
		}
	}
}

// TestRecoveryIsIncremental checks that reopening after a crash recomputes
// only the leaves with markers, not the whole data.
func TestRecoveryIsIncremental(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewCrashableMem()
	opts := Options{Tree: merkle.Params{LeafSize: 32}}
	e := openMem(t, fs, opts)
	const n = 20000
	b := e.NewBatch()
	for i := 0; i < n; i++ {
		_ = b.Put([]byte(fmt.Sprintf("k%06d", i)), []byte("v"))
		if b.Len() == 1000 {
			if err := b.Commit(ctx, NoSync); err != nil {
				t.Fatal(err)
			}
			b = e.NewBatch()
		}
	}
	b.Close()
	if err := e.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	// A few synced writes after the checkpoint, then a crash.
	for i := 0; i < 5; i++ {
		if err := e.Put(ctx, []byte(fmt.Sprintf("k%06d", i*3001)), []byte("w"), nil); err != nil {
			t.Fatal(err)
		}
	}
	clone := fs.CrashClone(vfs.CrashCloneCfg{})
	_ = e.Close()
	e2 := openMem(t, clone, opts)
	defer e2.Close()
	dirty := 0
	for _, p := range e2.Tree().Partitions() {
		dirty += p.DirtyLeaves
	}
	if _, err := e2.Tree().RangeFingerprint(ctx, 0, merkle.Range{}); err != nil {
		t.Fatal(err)
	}
	scanned := e2.Tree().Stats().KeysScanned
	t.Logf("after crash: %d dirty leaves, %d of %d keys scanned to answer the root", dirty, scanned, n)
	if dirty == 0 || dirty > 5 {
		t.Fatalf("want 1..5 dirty leaves after the crash, got %d", dirty)
	}
	if scanned > 5*32*8 {
		t.Fatalf("recovery scanned %d keys: not incremental", scanned)
	}
	mustVerify(t, e2)
}
