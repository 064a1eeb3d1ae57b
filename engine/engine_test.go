package engine

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

var (
	seedFlag  = flag.Uint64("seed", 0, "seed for randomized tests (0: time-based)")
	crashFlag = flag.Int("crashes", 200, "crash points in TestCrashConsistency")
)

func testSeed(t testing.TB) uint64 {
	s := *seedFlag
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("seed=%d (rerun with -seed=%d)", s, s)
	return s
}

func openMem(t testing.TB, fs vfs.FS, o Options) *Engine {
	t.Helper()
	if o.ReplicaID == "" {
		o.ReplicaID = "r1"
	}
	o.FS = fs
	if o.CheckpointInterval == 0 {
		o.CheckpointInterval = -1
	}
	e, err := Open("db", &o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if err := e.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

func mustVerify(t testing.TB, e *Engine) {
	t.Helper()
	ms, err := e.Verify(context.Background())
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	for _, m := range ms {
		t.Errorf("tree mismatch: %s", m)
	}
	if len(ms) > 0 {
		t.FailNow()
	}
}

func TestPutGetDelete(t *testing.T) {
	ctx := context.Background()
	e := openMem(t, vfs.NewMem(), Options{})
	defer e.Close()
	if _, err := e.Get(ctx, []byte("a")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get absent: %v", err)
	}
	if err := e.Put(ctx, []byte("a"), []byte("1"), nil); err != nil {
		t.Fatal(err)
	}
	if v, err := e.Get(ctx, []byte("a")); err != nil || string(v) != "1" {
		t.Fatalf("get: %q %v", v, err)
	}
	if err := e.Put(ctx, []byte("a"), []byte("2"), NoSync); err != nil {
		t.Fatal(err)
	}
	if v, _ := e.Get(ctx, []byte("a")); string(v) != "2" {
		t.Fatalf("overwrite: got %q", v)
	}
	if err := e.Delete(ctx, []byte("a"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Get(ctx, []byte("a")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	rec, err := e.GetRecord(ctx, []byte("a"))
	if err != nil || !rec.IsTombstone() || rec.Siblings[0].Dot.Replica != "r1" {
		t.Fatalf("tombstone record: %+v %v", rec, err)
	}
	b := e.NewBatch()
	for i := 0; i < 10; i++ {
		if err := b.Put([]byte(fmt.Sprintf("b%d", i)), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if v, _ := e.Get(ctx, []byte("b7")); string(v) != "x" {
		t.Fatalf("batch: got %q", v)
	}
	mustVerify(t, e)
}

func TestCausal(t *testing.T) {
	ctx := context.Background()
	e := openMem(t, vfs.NewMem(), Options{Mode: record.ModeCausal})
	defer e.Close()
	k := []byte("k")
	vs, err := e.GetVersions(ctx, k)
	if err != nil || len(vs.Values) != 0 {
		t.Fatalf("absent: %+v %v", vs, err)
	}
	// Two writers that both saw nothing: siblings.
	if err := e.PutContext(ctx, k, []byte("x"), vs.Context, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.PutContext(ctx, k, []byte("y"), vs.Context, nil); err != nil {
		t.Fatal(err)
	}
	vs, _ = e.GetVersions(ctx, k)
	if len(vs.Values) != 2 {
		t.Fatalf("want 2 siblings, got %q", vs.Values)
	}
	// A write that saw both supersedes them.
	if err := e.PutContext(ctx, k, []byte("z"), vs.Context, nil); err != nil {
		t.Fatal(err)
	}
	vs, _ = e.GetVersions(ctx, k)
	if len(vs.Values) != 1 || string(vs.Values[0]) != "z" {
		t.Fatalf("want [z], got %q", vs.Values)
	}
	if err := e.DeleteContext(ctx, k, vs.Context, nil); err != nil {
		t.Fatal(err)
	}
	if vs, _ = e.GetVersions(ctx, k); len(vs.Values) != 0 {
		t.Fatalf("deleted: got %q", vs.Values)
	}
	if _, err := e.Get(ctx, k); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	mustVerify(t, e)
}

// TestBadInput checks that each bad input gets its typed error and writes
// nothing.
func TestBadInput(t *testing.T) {
	ctx := context.Background()
	lww := openMem(t, vfs.NewMem(), Options{MaxKeySize: 8, MaxValueSize: 16})
	defer lww.Close()
	causal := openMem(t, vfs.NewMem(), Options{Mode: record.ModeCausal})
	defer causal.Close()
	cases := []struct {
		name string
		op   func() error
		want error
	}{
		{"empty key", func() error { return lww.Put(ctx, nil, []byte("v"), nil) }, ErrEmptyKey},
		{"key too large", func() error { return lww.Put(ctx, []byte("123456789"), []byte("v"), nil) }, ErrKeyTooLarge},
		{"value too large", func() error { return lww.Put(ctx, []byte("k"), make([]byte, 17), nil) }, ErrValueTooLarge},
		{"reserved key", func() error { return lww.Put(ctx, []byte("\xff\xffae\x00m"), []byte("v"), nil) }, ErrReservedKey},
		{"reserved prefix itself", func() error { return lww.Put(ctx, []byte("\xff\xffae\x00"), []byte("v"), nil) }, ErrReservedKey},
		{"delete range from a reserved key", func() error { return lww.DeleteRange(ctx, []byte("\xff\xffae\x00"), []byte("\xff\xffb"), nil) }, ErrReservedKey},
		{"delete empty key", func() error { return lww.Delete(ctx, nil, nil) }, ErrEmptyKey},
		{"batch reserved key", func() error { return lww.NewBatch().Put([]byte("\xff\xffae\x00"), nil) }, ErrReservedKey},
		{"context in LWW mode", func() error { return lww.PutContext(ctx, []byte("k"), nil, nil, nil) }, ErrWrongMode},
		{"malformed causal context", func() error { return causal.PutContext(ctx, []byte("k"), []byte("v"), []byte{0x7, 0x1}, nil) }, record.ErrMalformedContext},
		{"truncated causal context", func() error {
			return causal.PutContext(ctx, []byte("k"), []byte("v"), record.EncodeContext(record.VersionVector{"a": 3})[:3], nil)
		}, record.ErrMalformedContext},
		{"inverted delete range", func() error { return lww.DeleteRange(ctx, []byte("b"), []byte("a"), nil) }, ErrBadRequest},
		{"apply garbage record", func() error {
			return lww.Apply(ctx, 0, []reconcile.Entry{{Key: []byte("k"), Record: []byte("\x01garbage")}})
		}, record.ErrMalformedRecord},
		{"apply causal record to LWW", func() error {
			rec := record.CausalPut(record.Record{}, nil, "r2", record.Timestamp{WallTime: 1}, []byte("v"), false)
			return lww.Apply(ctx, 0, []reconcile.Entry{{Key: []byte("k"), Record: rec.Encode()}})
		}, record.ErrModeMismatch},
		{"apply to unknown partition", func() error { return lww.Apply(ctx, 3, nil) }, merkle.ErrUnknownPartition},
		{"range hash fanout out of range", func() error {
			_, err := lww.RangeHash(ctx, reconcile.RangeHashRequest{Ranges: []reconcile.KeyRange{{}}, Fanout: 1})
			return err
		}, ErrBadRequest},
		{"range hash inverted range", func() error {
			_, err := lww.RangeHash(ctx, reconcile.RangeHashRequest{Ranges: []reconcile.KeyRange{{Start: []byte("b"), End: []byte("a")}}})
			return err
		}, merkle.ErrInvalidRange},
		{"fetch too many keys", func() error { _, err := lww.Fetch(ctx, 0, make([][]byte, MaxKeysPerRequest+1)); return err }, ErrBadRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := snapshotAll(t, lww)
			err := c.op()
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if after := snapshotAll(t, lww); after != before {
				t.Fatalf("bad input changed the DB")
			}
		})
	}
}

// snapshotAll returns a digest of every key and value in the DB, internal
// keys included.
func snapshotAll(t testing.TB, e *Engine) string {
	t.Helper()
	it, err := e.db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var s []byte
	for v := it.First(); v; v = it.Next() {
		s = fmt.Appendf(s, "%q=%q;", it.Key(), it.Value())
	}
	return string(s)
}

func TestMergerMismatch(t *testing.T) {
	fs := vfs.NewMem()
	app := &pebble.Merger{Name: "app.merger", Merge: pebble.DefaultMerger.Merge}
	e := openMem(t, fs, Options{Merger: app})
	if err := e.Put(context.Background(), []byte("k"), []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := Open("db", &Options{ReplicaID: "r1", FS: fs})
	if !errors.Is(err, ErrMergerMismatch) {
		t.Fatalf("open with another merger: %v", err)
	}
	// Reopening with the right merger works.
	e = openMem(t, fs, Options{Merger: app})
	defer e.Close()
	if v, err := e.Get(context.Background(), []byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("get after reopen: %q %v", v, err)
	}
}

func TestParamsChanged(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMem()
	e := openMem(t, fs, Options{Tree: merkle.Params{LeafSize: 16}})
	for i := 0; i < 500; i++ {
		if err := e.Put(ctx, []byte(fmt.Sprintf("k%04d", i)), []byte("v"), NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := Open("db", &Options{ReplicaID: "r1", FS: fs, Tree: merkle.Params{LeafSize: 32}})
	if !errors.Is(err, merkle.ErrParamsChanged) {
		t.Fatalf("open with other leaf size: %v", err)
	}
	// The failed open changed nothing: the old parameters still open a
	// verified tree without a rebuild.
	e = openMem(t, fs, Options{Tree: merkle.Params{LeafSize: 16}})
	if st := e.Tree().Stats(); st.KeysScanned != 0 {
		t.Fatalf("reopen with the old parameters scanned %d keys", st.KeysScanned)
	}
	mustVerify(t, e)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// With RebuildOnParamsChange the tree is rebuilt and verifies.
	e = openMem(t, fs, Options{Tree: merkle.Params{LeafSize: 32}, RebuildOnParamsChange: true})
	defer e.Close()
	mustVerify(t, e)
	fp, err := e.Tree().RangeFingerprint(ctx, 0, merkle.Range{})
	if err != nil || fp.Count != 500 {
		t.Fatalf("root after rebuild: %+v %v", fp, err)
	}
}

// TestRebuildExistingData attaches the engine to a DB that already has
// records written without it; the tree is rebuilt in the background while
// writes continue, and nothing is lost.
func TestRebuildExistingData(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMem()
	db, err := pebble.Open("db", &pebble.Options{FS: fs, FormatMajorVersion: FormatMajorVersion, Merger: newMerger(record.LWW{}, nil), Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3*merkle.RebuildChunkKeys/2; i++ {
		rec := record.NewLWW("old", record.Timestamp{WallTime: int64(i + 1)}, []byte("v"), false)
		if err := db.Set([]byte(fmt.Sprintf("k%06d", i)), rec.Encode(), pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	e, err := Open("db", &Options{ReplicaID: "r1", FS: fs, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// Writes during the rebuild.
	for i := 0; i < 2000; i++ {
		if err := e.Put(ctx, []byte(fmt.Sprintf("k%06d", i*37)), []byte("new"), NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, e)
	fp, err := e.Tree().RangeFingerprint(ctx, 0, merkle.Range{})
	if err != nil || fp.Count != 3*merkle.RebuildChunkKeys/2 {
		t.Fatalf("root after rebuild: %+v %v", fp, err)
	}
}

// countingReader counts every read the engine and its tree make.
type countingReader struct {
	reader
	n atomic.Int64
}

func (c *countingReader) Get(key []byte) ([]byte, io.Closer, error) {
	c.n.Add(1)
	return c.reader.Get(key)
}

func (c *countingReader) NewSnapshot() *pebble.Snapshot {
	c.n.Add(1)
	return c.reader.NewSnapshot()
}

func (c *countingReader) NewIterWithContext(ctx context.Context, o *pebble.IterOptions) (*pebble.Iterator, error) {
	c.n.Add(1)
	return c.reader.NewIterWithContext(ctx, o)
}

// TestBlindWritePath proves that LWW writes (puts, deletes, batches) read
// nothing from Pebble: every read of the engine and the tree goes through a
// counting reader. The causal path, which must read, shows the counter works.
func TestBlindWritePath(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []record.Mode{record.ModeLWW, record.ModeCausal} {
		t.Run(mode.String(), func(t *testing.T) {
			var cr *countingReader
			e := openMem(t, vfs.NewMem(), Options{Mode: mode, Tree: merkle.Params{LeafSize: 8}, wrapReader: func(r reader) reader {
				cr = &countingReader{reader: r}
				return cr
			}})
			defer e.Close()
			// Some data and a clean, checkpointed tree first.
			for i := 0; i < 1000; i++ {
				if err := e.Put(ctx, []byte(fmt.Sprintf("k%05d", i)), []byte("v"), NoSync); err != nil {
					t.Fatal(err)
				}
			}
			if err := e.Maintain(ctx); err != nil {
				t.Fatal(err)
			}
			before := cr.n.Load()
			for i := 0; i < 5000; i++ {
				k := []byte(fmt.Sprintf("k%05d", i*7%3000))
				var err error
				switch {
				case i%5 == 0:
					err = e.Delete(ctx, k, NoSync)
				default:
					err = e.Put(ctx, k, []byte("w"), NoSync)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if mode == record.ModeLWW {
				b := e.NewBatch()
				for i := 0; i < 100; i++ {
					_ = b.Put([]byte(fmt.Sprintf("b%03d", i)), []byte("x"))
				}
				if err := b.Commit(ctx, NoSync); err != nil {
					t.Fatal(err)
				}
			}
			reads := cr.n.Load() - before
			t.Logf("%s: %d Pebble reads for 5000 writes", mode, reads)
			if mode == record.ModeLWW && reads != 0 {
				t.Fatalf("LWW write path made %d Pebble reads", reads)
			}
			if mode == record.ModeCausal && reads < 5000 {
				t.Fatalf("causal writes made only %d reads: the counter does not see reads", reads)
			}
			mustVerify(t, e)
		})
	}
}

// TestConcurrentWritersAndQueries runs 8 goroutines writing and deleting
// overlapping keys while checkpoints, recomputes and range-hash queries run;
// afterwards the tree equals one recomputed from the data.
func TestConcurrentWritersAndQueries(t *testing.T) {
	seed := testSeed(t)
	ctx := context.Background()
	pn, _ := merkle.SplitPoints([][]byte{[]byte("k1"), []byte("k2")})
	e := openMem(t, vfs.NewMem(), Options{Partitioner: pn, Tree: merkle.Params{LeafSize: 8}})
	defer e.Close()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	n := 3000
	if testing.Short() {
		n = 500
	}
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for i := 0; i < n; i++ {
				k := []byte(fmt.Sprintf("k%d%03d", rng.IntN(3), rng.IntN(400)))
				var err error
				switch x := rng.IntN(10); {
				case x < 6:
					err = e.Put(ctx, k, []byte(fmt.Sprint(i)), NoSync)
				case x < 8:
					err = e.Delete(ctx, k, NoSync)
				case x < 9:
					b := e.NewBatch()
					for j := 0; j < 10; j++ {
						_ = b.Put([]byte(fmt.Sprintf("k%d%03d", rng.IntN(3), rng.IntN(400))), []byte("b"))
					}
					err = b.Commit(ctx, NoSync)
				default:
					if rng.IntN(20) == 0 {
						lo := []byte(fmt.Sprintf("k%d%03d", rng.IntN(3), rng.IntN(400)))
						err = e.DeleteRange(ctx, lo, append(append([]byte{}, lo...), 'z'), NoSync)
					}
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	var bg sync.WaitGroup
	bg.Add(1)
	go func() {
		defer bg.Done()
		rng := rand.New(rand.NewPCG(seed, 99))
		for {
			select {
			case <-stop:
				return
			default:
			}
			switch rng.IntN(3) {
			case 0:
				if err := e.Checkpoint(ctx); err != nil {
					t.Error(err)
				}
			case 1:
				if _, err := e.RangeHash(ctx, reconcile.RangeHashRequest{Partition: uint32(rng.IntN(3)), Ranges: []reconcile.KeyRange{{}}, Fanout: 8, Depth: 2}); err != nil {
					t.Error(err)
				}
			default:
				if _, err := e.Tree().Verify(ctx); err != nil {
					t.Error(err)
				}
			}
		}
	}()
	wg.Wait()
	close(stop)
	bg.Wait()
	mustVerify(t, e)
	st := e.Tree().Stats()
	t.Logf("stats: %+v", st)
}

// TestBatchReusesCallerBuffers writes a batch from one reused key buffer,
// as a bulk loader does: the tree must see every key, not the last one.
func TestBatchReusesCallerBuffers(t *testing.T) {
	ctx := context.Background()
	e := openMem(t, vfs.NewMem(), Options{Tree: merkle.Params{LeafSize: 4}})
	defer e.Close()
	if err := e.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 6)
	for round := 0; round < 20; round++ {
		b := e.NewBatch()
		for i := 0; i < 50; i++ {
			copy(key, fmt.Sprintf("k%05d", round*50+i))
			if err := b.Put(key, key); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(ctx, NoSync); err != nil {
			t.Fatal(err)
		}
	}
	mustVerify(t, e)
	if fp, err := e.Tree().RangeFingerprint(ctx, 0, merkle.Range{}); err != nil || fp.Count != 1000 {
		t.Fatalf("root: %+v %v", fp, err)
	}
}

// TestPebbleOptionsPassthrough: a file system or merger given only in the
// passed-through Pebble options is used (it used to be replaced silently by
// vfs.Default, so the DB landed on the real disk), and values there that
// contradict the engine's own fields or its pinned format are refused with
// ErrInvalidOptions before anything is created.
func TestPebbleOptionsPassthrough(t *testing.T) {
	mem := vfs.NewMem()
	e, err := Open("db", &Options{ReplicaID: "a", Pebble: &pebble.Options{FS: mem}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Put(context.Background(), []byte("k"), []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if ls, err := mem.List("db"); err != nil || len(ls) == 0 {
		t.Fatalf("Pebble.FS not used: %v %v", ls, err)
	}
	if _, err := os.Stat("db"); !os.IsNotExist(err) {
		t.Fatalf("a DB directory appeared on the real disk (%v)", err)
	}

	// A merger given as Pebble.Merger is the application's: the DB takes
	// its name, so it reopens with Merger set and not without it.
	app := &pebble.Merger{Name: "app.merger", Merge: pebble.DefaultMerger.Merge}
	mfs := vfs.NewMem()
	e, err = Open("m", &Options{ReplicaID: "a", FS: mfs, Pebble: &pebble.Options{Merger: app}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open("m", &Options{ReplicaID: "a", FS: mfs}); !errors.Is(err, ErrMergerMismatch) {
		t.Fatalf("reopen without the merger: %v, want ErrMergerMismatch", err)
	}
	e, err = Open("m", &Options{ReplicaID: "a", FS: mfs, Merger: app})
	if err != nil {
		t.Fatalf("reopen with the merger: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name string
		o    Options
	}{
		{"two file systems", Options{FS: vfs.NewMem(), Pebble: &pebble.Options{FS: vfs.NewMem()}}},
		{"two mergers", Options{Merger: app, Pebble: &pebble.Options{Merger: &pebble.Merger{Name: "other", Merge: pebble.DefaultMerger.Merge}}}},
		{"another format", Options{Pebble: &pebble.Options{FormatMajorVersion: FormatMajorVersion - 1}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs := vfs.NewMem()
			c.o.ReplicaID = "a"
			if c.o.FS == nil && (c.o.Pebble.FS == nil) {
				c.o.FS = fs
			}
			_, err := Open("x", &c.o)
			if !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("err %v, want ErrInvalidOptions", err)
			}
			if ls, _ := fs.List(""); len(ls) != 0 {
				t.Fatalf("files created: %v", ls)
			}
		})
	}
}
