package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// TestWriteBatchScanModel applies random batches (puts, deletes, now and
// then one bad write that must refuse its whole batch) and checks Get,
// GetMany and paged Scans against a model map after each, and the tree
// at the end. The seed is printed.
func TestWriteBatchScanModel(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0))
	ctx := context.Background()
	e := openMem(t, vfs.NewMem(), Options{})
	defer e.Close()
	model := map[string]string{}
	keyOf := func() []byte { return fmt.Appendf(nil, "k%03d", rng.IntN(300)) }
	for round := range 200 {
		var b WriteBatch
		next := cloneModel(model)
		bad := rng.IntN(10) == 0
		n := 1 + rng.IntN(40)
		for i := range n {
			if bad && i == n/2 {
				b.Put(nil, []byte("x"))
				continue
			}
			k := keyOf()
			if rng.IntN(4) == 0 {
				b.Delete(k)
				delete(next, string(k))
			} else {
				v := fmt.Sprintf("v%d-%d", round, i)
				b.Put(k, []byte(v))
				next[string(k)] = v
			}
		}
		err := e.Write(ctx, &b, NoSync)
		if bad {
			if !errors.Is(err, ErrEmptyKey) {
				t.Fatalf("seed %d round %d: batch with an empty key: %v", seed, round, err)
			}
		} else {
			if err != nil {
				t.Fatalf("seed %d round %d: %v", seed, round, err)
			}
			model = next
		}
		checkModel(t, e, model, rng, seed, round)
	}
	mustVerify(t, e)
}

func cloneModel(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func checkModel(t *testing.T, e *Engine, model map[string]string, rng *rand.Rand, seed uint64, round int) {
	t.Helper()
	ctx := context.Background()
	var keys [][]byte
	for range 20 {
		keys = append(keys, fmt.Appendf(nil, "k%03d", rng.IntN(300)))
	}
	items, err := e.GetMany(ctx, keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range items {
		v, ok := model[string(keys[i])]
		if it.Found != ok || string(it.Value) != v || !bytes.Equal(it.Key, keys[i]) {
			t.Fatalf("seed %d round %d: GetMany %q = %v %q, want %v %q", seed, round, keys[i], it.Found, it.Value, ok, v)
		}
	}
	want := make([]string, 0, len(model))
	for k := range model {
		want = append(want, k)
	}
	slices.Sort(want)
	limit := 1 + rng.IntN(50)
	var got []string
	req := ScanRequest{Limit: limit}
	for {
		next, err := e.Scan(ctx, req, func(it Item) error {
			if string(it.Value) != model[string(it.Key)] {
				t.Fatalf("seed %d round %d: Scan %q = %q, want %q", seed, round, it.Key, it.Value, model[string(it.Key)])
			}
			got = append(got, string(it.Key))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if next == nil {
			break
		}
		req.Start = next
	}
	if !slices.Equal(got, want) {
		t.Fatalf("seed %d round %d: paged scan (limit %d) = %d keys, want %d", seed, round, limit, len(got), len(want))
	}
}

// TestWriteBatchCausal: a causal batch reads each key's record under its
// stripe lock and supersedes what each context covers, atomically; a
// malformed context refuses the whole batch.
func TestWriteBatchCausal(t *testing.T) {
	ctx := context.Background()
	e := openMem(t, vfs.NewMem(), Options{Mode: record.ModeCausal})
	defer e.Close()
	for _, v := range []string{"x", "y"} {
		if err := e.Put(ctx, []byte("a"), []byte(v), nil); err != nil {
			t.Fatal(err)
		}
	}
	vs, err := e.GetVersions(ctx, []byte("a"))
	if err != nil || len(vs.Values) != 2 {
		t.Fatalf("siblings: %q, %v", vs.Values, err)
	}
	var bad WriteBatch
	bad.PutContext([]byte("a"), []byte("z"), vs.Context)
	bad.PutContext([]byte("b"), []byte("z"), []byte{0xff, 0xff})
	if err := e.Write(ctx, &bad, nil); !errors.Is(err, record.ErrMalformedContext) {
		t.Fatalf("malformed context: %v", err)
	}
	if got, _ := e.GetVersions(ctx, []byte("a")); len(got.Values) != 2 {
		t.Fatalf("a refused batch changed a: %q", got.Values)
	}
	var b WriteBatch
	b.PutContext([]byte("a"), []byte("z"), vs.Context)
	b.Put([]byte("b"), []byte("new"))
	b.Delete([]byte("c"))
	if err := e.Write(ctx, &b, nil); err != nil {
		t.Fatal(err)
	}
	items, err := e.GetMany(ctx, [][]byte{[]byte("a"), []byte("b"), []byte("c")}, &ReadOptions{Versions: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(items[0].Versions) != 1 || string(items[0].Value) != "z" || string(items[1].Value) != "new" || items[2].Found || len(items[2].Versions) != 0 {
		t.Fatalf("after the causal batch: %+v", items)
	}
	var lww WriteBatch
	lww.PutContext([]byte("a"), []byte("v"), nil)
	el := openMem(t, vfs.NewMem(), Options{})
	defer el.Close()
	if err := el.Write(ctx, &lww, nil); !errors.Is(err, ErrWrongMode) {
		t.Fatalf("causal write in LWW mode: %v", err)
	}
	mustVerify(t, e)
}
