package plugin_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// stores returns the three ways an application reaches a replica in mode:
// the engine in process, the gRPC client over bufconn, and a real plugin
// subprocess. Each has its own empty database.
func stores(t *testing.T, mode record.Mode) map[string]engine.KV {
	t.Helper()
	e1 := openEngine(t, "e", mode)
	e2 := openEngine(t, "g", mode)
	c, err := plugin.OpenWithOptions(testCtx(t), testPluginPath, []string{"-dir", t.TempDir(), "-id", "p", "-mode", mode.String()}, quietOpen())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Kill() })
	return map[string]engine.KV{"engine": e1, "grpc": inProcess(t, e2, nil), "plugin": c}
}

func key(prefix string, i int) []byte { return fmt.Appendf(nil, "%s%04d", prefix, i) }

// scanAll collects a scan's items (copied) and its pagination token.
func scanAll(t *testing.T, kv engine.KV, req engine.ScanRequest) ([]engine.Item, []byte) {
	t.Helper()
	var out []engine.Item
	next, err := kv.Scan(testCtx(t), req, func(it engine.Item) error {
		c := engine.Item{Key: bytes.Clone(it.Key), Found: it.Found, Value: bytes.Clone(it.Value), Context: bytes.Clone(it.Context)}
		for _, v := range it.Versions {
			c.Versions = append(c.Versions, bytes.Clone(v))
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		t.Fatalf("Scan(%q, %q, limit %d): %v", req.Start, req.End, req.Limit, err)
	}
	return out, next
}

// TestStoreConformance runs the same application code (engine.KV) against
// the engine, the gRPC client and the plugin, in both modes, and expects
// the same answers.
func TestStoreConformance(t *testing.T) {
	for _, mode := range []record.Mode{record.ModeLWW, record.ModeCausal} {
		for name, kv := range stores(t, mode) {
			t.Run(mode.String()+"/"+name, func(t *testing.T) { checkStore(t, kv, mode) })
		}
	}
}

func checkStore(t *testing.T, kv engine.KV, mode record.Mode) {
	ctx := testCtx(t)
	var b engine.WriteBatch
	for i := range 100 {
		b.Put(key("a", i), fmt.Appendf(nil, "v%d", i))
	}
	b.Put(key("b", 0), []byte{}) // an empty value is a value
	if err := kv.Write(ctx, &b, engine.NoSync); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	b.Delete(key("a", 5))
	b.Put(key("a", 6), []byte("six"))
	if err := kv.Write(ctx, &b, nil); err != nil {
		t.Fatal(err)
	}
	if err := kv.Write(ctx, &engine.WriteBatch{}, nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}

	items, err := kv.GetMany(ctx, [][]byte{key("a", 6), key("a", 5), []byte("zz"), key("a", 6), key("b", 0)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		found bool
		value string
	}{{true, "six"}, {false, ""}, {false, ""}, {true, "six"}, {true, ""}}
	for i, w := range want {
		if items[i].Found != w.found || string(items[i].Value) != w.value {
			t.Errorf("GetMany item %d (%q) = %v %q, want %v %q", i, items[i].Key, items[i].Found, items[i].Value, w.found, w.value)
		}
	}
	if items[4].Value == nil {
		t.Errorf("GetMany: an empty value reads as nil")
	}

	all, next := scanAll(t, kv, engine.ScanRequest{})
	if len(all) != 100 || next != nil { // a0000..a0099 without a0005, and b0000
		t.Fatalf("Scan all: %d items, next %q; want 100, nil", len(all), next)
	}
	for i := 1; i < len(all); i++ {
		if bytes.Compare(all[i-1].Key, all[i].Key) >= 0 {
			t.Fatalf("Scan out of order at %d: %q, %q", i, all[i-1].Key, all[i].Key)
		}
	}
	// Pages of 7 give the same keys.
	var paged []engine.Item
	req := engine.ScanRequest{Limit: 7}
	for {
		page, next := scanAll(t, kv, req)
		if len(page) > 7 {
			t.Fatalf("page of %d items with limit 7", len(page))
		}
		paged = append(paged, page...)
		if next == nil {
			break
		}
		req.Start = next
	}
	if len(paged) != len(all) {
		t.Fatalf("paged scan: %d items, want %d", len(paged), len(all))
	}
	for i := range all {
		if !bytes.Equal(paged[i].Key, all[i].Key) || !bytes.Equal(paged[i].Value, all[i].Value) {
			t.Fatalf("paged item %d = %q, want %q", i, paged[i].Key, all[i].Key)
		}
	}
	sub, next := scanAll(t, kv, engine.ScanRequest{Start: key("a", 10), End: key("a", 20)})
	if len(sub) != 10 || next != nil || string(sub[0].Key) != "a0010" {
		t.Fatalf("Scan [a0010, a0020): %d items, next %q", len(sub), next)
	}

	if mode != record.ModeCausal {
		if _, err := kv.GetMany(ctx, [][]byte{key("a", 1)}, &engine.ReadOptions{Versions: true}); !errors.Is(err, engine.ErrWrongMode) {
			t.Errorf("GetMany versions in LWW mode: %v, want ErrWrongMode", err)
		}
		return
	}
	// Causal: two concurrent puts make siblings; a batch with the context
	// read by GetMany supersedes both; versions travel in scans too.
	if err := kv.Put(ctx, []byte("c"), []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	if err := kv.Put(ctx, []byte("c"), []byte("y"), nil); err != nil {
		t.Fatal(err)
	}
	got, err := kv.GetMany(ctx, [][]byte{[]byte("c")}, &engine.ReadOptions{Versions: true})
	if err != nil || len(got[0].Versions) != 2 || len(got[0].Context) == 0 {
		t.Fatalf("GetMany versions = %+v, %v; want 2 siblings and a context", got, err)
	}
	b.Reset()
	b.PutContext([]byte("c"), []byte("z"), got[0].Context)
	b.PutContext([]byte("d"), []byte("new"), nil)
	b.DeleteContext(key("a", 7), nil) // covers nothing: a tombstone sibling
	if err := kv.Write(ctx, &b, nil); err != nil {
		t.Fatal(err)
	}
	vs, err := kv.GetVersions(ctx, []byte("c"))
	if err != nil || len(vs.Values) != 1 || string(vs.Values[0]) != "z" {
		t.Fatalf("after the causal batch: %q, %v; want [z]", vs.Values, err)
	}
	scanned, _ := scanAll(t, kv, engine.ScanRequest{Start: []byte("c"), End: []byte("e"), Versions: true})
	if len(scanned) != 2 || string(scanned[0].Versions[0]) != "z" || len(scanned[0].Context) == 0 || string(scanned[1].Value) != "new" {
		t.Fatalf("Scan with versions = %+v", scanned)
	}
	b.Reset()
	b.Put([]byte("e"), []byte("1"))
	b.Put([]byte("e"), []byte("2"))
	if err := kv.Write(ctx, &b, nil); !errors.Is(err, engine.ErrBadRequest) {
		t.Fatalf("a key twice in a causal batch: %v, want ErrBadRequest", err)
	}
}

// TestStoreBadInput: every refused batch or scan gets a typed error that
// errors.Is recognizes on every transport, and a refused batch applies
// none of its writes.
func TestStoreBadInput(t *testing.T) {
	for _, mode := range []record.Mode{record.ModeLWW, record.ModeCausal} {
		for name, kv := range stores(t, mode) {
			t.Run(mode.String()+"/"+name, func(t *testing.T) { checkBadInput(t, kv, mode) })
		}
	}
}

func checkBadInput(t *testing.T, kv engine.KV, mode record.Mode) {
	ctx := testCtx(t)
	cases := []struct {
		name string
		bad  func(b *engine.WriteBatch)
		want []error
	}{
		{"empty key", func(b *engine.WriteBatch) { b.Put(nil, []byte("v")) }, []error{engine.ErrEmptyKey}},
		{"key too long", func(b *engine.WriteBatch) { b.Put(bytes.Repeat([]byte("k"), 64<<10), []byte("v")) }, []error{engine.ErrKeyTooLarge}},
		{"reserved key", func(b *engine.WriteBatch) { b.Delete([]byte("\xff\xffae\x00x")) }, []error{engine.ErrReservedKey}},
		{"value too large", func(b *engine.WriteBatch) { b.Put([]byte("big"), make([]byte, engine.DefaultMaxValueSize+1)) }, []error{engine.ErrValueTooLarge}},
	}
	if mode == record.ModeCausal {
		cases = append(cases, struct {
			name string
			bad  func(b *engine.WriteBatch)
			want []error
		}{"malformed causal context", func(b *engine.WriteBatch) { b.PutContext([]byte("ctx"), []byte("v"), []byte{0xff, 0x01, 0x02}) }, []error{record.ErrMalformedContext}})
	} else {
		cases = append(cases, struct {
			name string
			bad  func(b *engine.WriteBatch)
			want []error
		}{"causal write in LWW mode", func(b *engine.WriteBatch) { b.PutContext([]byte("ctx"), []byte("v"), nil) }, []error{engine.ErrWrongMode}})
	}
	for ci, c := range cases {
		var b engine.WriteBatch
		var good [][]byte
		for i := range 20 {
			if i == 11 {
				c.bad(&b)
			}
			k := key(fmt.Sprintf("bad%d-", ci), i)
			good = append(good, k)
			b.Put(k, []byte("v"))
		}
		err := kv.Write(ctx, &b, nil)
		for _, w := range c.want {
			if !errors.Is(err, w) {
				t.Errorf("%s: Write = %v, want an error matching %v", c.name, err, w)
			}
		}
		items, gerr := kv.GetMany(ctx, good, nil)
		if gerr != nil {
			t.Fatal(gerr)
		}
		for _, it := range items {
			if it.Found {
				t.Errorf("%s: refused batch applied %q", c.name, it.Key)
			}
		}
	}
	if _, err := kv.Scan(ctx, engine.ScanRequest{Start: []byte("b"), End: []byte("a")}, func(engine.Item) error { return nil }); !errors.Is(err, engine.ErrBadRequest) {
		t.Errorf("inverted scan: %v, want ErrBadRequest", err)
	}
	if _, err := kv.Scan(ctx, engine.ScanRequest{Limit: -1}, func(engine.Item) error { return nil }); !errors.Is(err, engine.ErrBadRequest) {
		t.Errorf("negative limit: %v, want ErrBadRequest", err)
	}
	if _, err := kv.Scan(ctx, engine.ScanRequest{Start: []byte("\xff\xffae\x00m")}, func(engine.Item) error { return nil }); !errors.Is(err, engine.ErrReservedKey) {
		t.Errorf("scan of the reserved space: %v, want ErrReservedKey", err)
	}
	if _, err := kv.GetMany(ctx, [][]byte{[]byte("ok"), nil}, nil); !errors.Is(err, engine.ErrEmptyKey) {
		t.Errorf("GetMany with an empty key: %v, want ErrEmptyKey", err)
	}
	// An error from the callback stops the scan and comes back as is.
	stop := errors.New("stop")
	if _, err := kv.Scan(ctx, engine.ScanRequest{}, func(engine.Item) error { return stop }); err != nil && !errors.Is(err, stop) {
		t.Errorf("scan stopped by its callback: %v", err)
	}
}

// TestStoreOversizedBatch: a batch over the message limit fails with
// ErrLimitExceeded, refused by the client before sending or by the server
// on receipt, and nothing of it is applied.
func TestStoreOversizedBatch(t *testing.T) {
	ctx := testCtx(t)
	e := openEngine(t, "a", record.ModeLWW)
	small := &plugin.ClientOptions{MaxMessageSize: 1 << 20}
	clientSide, err := plugin.InProcess(e, nil, small)
	if err != nil {
		t.Fatal(err)
	}
	defer clientSide.Close()
	serverSide, err := plugin.InProcess(e, &plugin.ServerOptions{MaxMessageSize: 1 << 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer serverSide.Close()
	var b engine.WriteBatch
	for i := range 300 {
		b.Put(key("big", i), make([]byte, 8<<10)) // 2.4 MB
	}
	for name, c := range map[string]*plugin.Client{"client limit": clientSide, "server limit": serverSide} {
		err := c.Write(ctx, &b, nil)
		if !errors.Is(err, plugin.ErrLimitExceeded) {
			t.Errorf("%s: Write = %v, want ErrLimitExceeded", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	n := 0
	if _, err := e.Scan(ctx, engine.ScanRequest{}, func(engine.Item) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("after refused batches: %d keys (%v)", n, err)
	}
	// A Loader carries the same writes in messages under the limit.
	l, err := clientSide.NewLoader(ctx, &plugin.LoaderOptions{MessageBytes: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range b.Ops() {
		if err := l.Add(op); err != nil {
			t.Fatal(err)
		}
	}
	if applied, err := l.Close(); err != nil || applied != 300 {
		t.Fatalf("Loader: %d applied, %v", applied, err)
	}
	if _, err := e.Scan(ctx, engine.ScanRequest{}, func(engine.Item) error { n++; return nil }); err != nil || n != 300 {
		t.Fatalf("after the load: %d keys (%v)", n, err)
	}
}

// TestLoader streams a bulk load through a real plugin in many messages,
// then a load with a bad write in the middle: the messages before it stay
// applied, the refused one and those after it are not.
func TestLoader(t *testing.T) {
	ctx := testCtx(t)
	c := openPlugin(t, t.TempDir(), "p", quietOpen())
	l, err := c.NewLoader(ctx, &plugin.LoaderOptions{MessageBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	for i := range n {
		if err := l.Put(key("load", i), bytes.Repeat([]byte{byte(i)}, 100)); err != nil {
			t.Fatal(err)
		}
	}
	applied, err := l.Close()
	if err != nil || applied != n {
		t.Fatalf("Close = %d, %v; want %d", applied, err, n)
	}
	count := 0
	if _, err := c.Scan(ctx, engine.ScanRequest{}, func(engine.Item) error { count++; return nil }); err != nil || count != n {
		t.Fatalf("scan after load: %d keys, %v", count, err)
	}

	l, err = c.NewLoader(ctx, &plugin.LoaderOptions{MessageBytes: 4 << 10}) // about 300 writes a message
	if err != nil {
		t.Fatal(err)
	}
	var addErr error
	for i := range 2000 {
		k := key("more", i)
		if i == 1000 {
			k = nil
		}
		if addErr = l.Put(k, []byte("v")); addErr != nil {
			break
		}
	}
	_, err = l.Close()
	if err == nil {
		err = addErr
	}
	if !errors.Is(err, engine.ErrEmptyKey) {
		t.Fatalf("load with an empty key: %v, want ErrEmptyKey", err)
	}
	items, err := c.GetMany(ctx, [][]byte{key("more", 0), key("more", 1001), key("more", 1999)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !items[0].Found || items[1].Found || items[2].Found {
		t.Fatalf("after a refused message: found %v %v %v; want true false false", items[0].Found, items[1].Found, items[2].Found)
	}
}

// TestWriteKilledMidBatch: writers commit synced batches through a real
// plugin while it is killed with SIGKILL at a random moment; after a
// restart every batch is there whole or not at all, and every
// acknowledged batch is there.
func TestWriteKilledMidBatch(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	ctx := testCtx(t)
	dir := t.TempDir()
	c := openPlugin(t, dir, "p", quietOpen())
	waitReady(t, c)
	pid := c.PluginPID()

	const writers, perBatch = 4, 200
	var (
		mu    sync.Mutex
		acked []string // batch names acknowledged
		tried []string // batch names sent
		wg    sync.WaitGroup
	)
	value := bytes.Repeat([]byte("x"), 1000)
	for w := range writers {
		wg.Go(func() {
			for i := 0; ; i++ {
				name := fmt.Sprintf("w%d-%05d", w, i)
				var b engine.WriteBatch
				for j := range perBatch {
					b.Put(fmt.Appendf(nil, "%s-%03d", name, j), value)
				}
				mu.Lock()
				tried = append(tried, name)
				mu.Unlock()
				if err := c.Write(ctx, &b, nil); err != nil {
					if !errors.Is(err, plugin.ErrUnavailable) {
						t.Errorf("writer %d: %v, want ErrUnavailable after the kill", w, err)
					}
					return
				}
				mu.Lock()
				acked = append(acked, name)
				mu.Unlock()
			}
		})
	}
	time.Sleep(time.Duration(50+rng.IntN(400)) * time.Millisecond)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	waitDead(t, pid)
	wg.Wait()
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c)
	count := map[string]int{}
	if _, err := c.Scan(ctx, engine.ScanRequest{}, func(it engine.Item) error {
		name, _, _ := strings.Cut(string(it.Key), "-")
		rest := string(it.Key)[len(name)+1:]
		batch, _, _ := strings.Cut(rest, "-")
		count[name+"-"+batch]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	whole := 0
	for name, n := range count {
		if n != perBatch {
			t.Errorf("seed %d: batch %s has %d of its %d writes after the kill", seed, name, n, perBatch)
		}
		whole++
	}
	for _, name := range acked {
		if count[name] != perBatch {
			t.Errorf("seed %d: acknowledged (synced) batch %s lost: %d writes", seed, name, count[name])
		}
	}
	t.Logf("%d batches sent, %d acknowledged, %d present after kill -9 and restart", len(tried), len(acked), whole)
	// Writes go on after the restart (on a new write session).
	if err := c.Put(ctx, []byte("after-restart"), []byte("v"), nil); err != nil {
		t.Fatalf("Put after restart: %v", err)
	}
	if ms, err := rootAfterVerify(ctx, t, c); err != nil || ms {
		t.Fatalf("tree after the kill: mismatch %v, %v", ms, err)
	}
}

// rootAfterVerify compares the plugin's root with a recount of its keys
// (the tree is crash-consistent with the data).
func rootAfterVerify(ctx context.Context, t *testing.T, c *plugin.Client) (bool, error) {
	n := uint64(0)
	if _, err := c.Scan(ctx, engine.ScanRequest{}, func(engine.Item) error { n++; return nil }); err != nil {
		return false, err
	}
	fp := rootOf(t, c)
	return fp.Count != n, nil
}

// TestScanConsistentSnapshot: writes during a scan do not appear in it,
// and a scan bigger than many chunks streams them all.
func TestScanConsistentSnapshot(t *testing.T) {
	ctx := testCtx(t)
	e := openEngine(t, "a", record.ModeLWW)
	c := inProcess(t, e, &plugin.ServerOptions{StoreScanChunkBytes: 4 << 10})
	var b engine.WriteBatch
	for i := range 5000 {
		b.Put(key("s", i), []byte("value"))
	}
	if err := c.Write(ctx, &b, engine.NoSync); err != nil {
		t.Fatal(err)
	}
	n := 0
	_, err := c.Scan(ctx, engine.ScanRequest{}, func(it engine.Item) error {
		if n == 10 {
			// Written mid-scan, above the scan's position: not seen.
			var w engine.WriteBatch
			w.Put([]byte("s9999-late"), []byte("late"))
			w.Delete(key("s", 4000))
			if err := c.Write(ctx, &w, engine.NoSync); err != nil {
				return err
			}
		}
		n++
		return nil
	})
	if err != nil || n != 5000 {
		t.Fatalf("scan during writes: %d keys, %v; want 5000 (one snapshot)", n, err)
	}
}

// TestGroupCommit: concurrent writers through one client (their writes
// grouped into shared calls) each get their own answer: every valid write
// is applied, each bad one is refused with its own typed error, in both
// modes, Sync and NoSync.
func TestGroupCommit(t *testing.T) {
	for _, mode := range []record.Mode{record.ModeLWW, record.ModeCausal} {
		for name, kv := range stores(t, mode) {
			if name == "engine" {
				continue
			}
			t.Run(mode.String()+"/"+name, func(t *testing.T) {
				ctx := testCtx(t)
				const writers, per = 8, 150
				var wg sync.WaitGroup
				errs := make([][]error, writers)
				for w := range writers {
					errs[w] = make([]error, per)
					wg.Go(func() {
						wo := &engine.WriteOptions{Sync: w%2 == 0}
						for i := range per {
							k := key(fmt.Sprintf("g%d-", w), i)
							switch {
							case i%50 == 7:
								k = nil // refused: ErrEmptyKey
							case i%50 == 9:
								k = []byte("hot") // every writer's, concurrently
							}
							if i%3 == 0 {
								var b engine.WriteBatch
								b.Put(k, []byte("v"))
								errs[w][i] = kv.Write(ctx, &b, wo)
							} else {
								errs[w][i] = kv.Put(ctx, k, []byte("v"), wo)
							}
						}
					})
				}
				wg.Wait()
				for w := range writers {
					var keys [][]byte
					for i := range per {
						err := errs[w][i]
						if i%50 == 7 {
							if !errors.Is(err, engine.ErrEmptyKey) {
								t.Errorf("writer %d, write %d (empty key): %v, want ErrEmptyKey", w, i, err)
							}
							continue
						}
						if err != nil {
							t.Errorf("writer %d, write %d: %v", w, i, err)
						}
						if i%50 != 9 {
							keys = append(keys, key(fmt.Sprintf("g%d-", w), i))
						}
					}
					items, err := kv.GetMany(ctx, keys, nil)
					if err != nil {
						t.Fatal(err)
					}
					for _, it := range items {
						if !it.Found {
							t.Errorf("acknowledged write of %q missing", it.Key)
						}
					}
				}
				if _, err := kv.Get(ctx, []byte("hot")); err != nil {
					t.Errorf("hot key: %v", err)
				}
			})
		}
	}
}

// TestWriteSessionCancel: a write whose context ends gets the context's
// error and later writes still work (the write session is reopened).
func TestWriteSessionCancel(t *testing.T) {
	ctx := testCtx(t)
	c := openPlugin(t, t.TempDir(), "p", quietOpen())
	if err := c.Put(ctx, []byte("a"), []byte("1"), nil); err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.Put(canceled, []byte("b"), []byte("2"), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a canceled context: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, time.Microsecond)
	defer cancel()
	time.Sleep(time.Millisecond)
	if err := c.Put(short, []byte("c"), []byte("3"), nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put past its deadline: %v", err)
	}
	var b engine.WriteBatch
	b.Put([]byte("d"), []byte("4"))
	b.Put(nil, []byte("bad"))
	if err := c.Write(ctx, &b, nil); !errors.Is(err, engine.ErrEmptyKey) {
		t.Fatalf("refused batch on the session: %v", err)
	}
	for i := range 50 {
		if err := c.Put(ctx, key("e", i), []byte("5"), engine.NoSync); err != nil {
			t.Fatalf("Put %d after the cancellations: %v", i, err)
		}
	}
	items, err := c.GetMany(ctx, [][]byte{[]byte("a"), []byte("d"), key("e", 49)}, nil)
	if err != nil || !items[0].Found || items[1].Found || !items[2].Found {
		t.Fatalf("after the cancellations: %+v, %v", items, err)
	}
}
