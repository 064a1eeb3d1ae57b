package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/hooks"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// TestApplyCommitsInBoundedBatches: a request larger than ApplyBatchBytes
// is committed in several Pebble batches of about that size (so foreground
// writes never queue behind one large repair batch), every entry lands,
// and the tree matches the data; a request whose bad entry lies beyond the
// first batch's worth is still refused whole, with nothing written.
func TestApplyCommitsInBoundedBatches(t *testing.T) {
	ctx := context.Background()
	var (
		mu    sync.Mutex
		sizes []int
	)
	count := hooks.Hook{PreCommit: func(b *hooks.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		sizes = append(sizes, b.Pebble().Len())
		return nil
	}}
	e := openMem(t, vfs.NewMem(), Options{Hooks: []hooks.Hook{count}})
	defer e.Close()
	ts := e.Clock().Now()
	entry := func(i int, v string) reconcile.Entry {
		return reconcile.Entry{Key: fmt.Appendf(nil, "key-%06d", i), Record: record.NewLWW("peer", ts, []byte(v), false).Encode()}
	}
	const n = 3000
	value := string(make([]byte, 100))
	var entries []reconcile.Entry
	total := 0
	for i := range n {
		entries = append(entries, entry(i, value))
		total += len(entries[i].Key) + len(entries[i].Record)
	}
	if err := e.Apply(ctx, 0, entries); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := append([]int(nil), sizes...)
	sizes = sizes[:0]
	mu.Unlock()
	if want := total / ApplyBatchBytes; len(got) < want || len(got) > want+2 {
		t.Fatalf("%d bytes of entries committed in %d batches %v, want about %d", total, len(got), got, want+1)
	}
	for _, s := range got {
		// One entry past the bound, and the tree's markers (written
		// by its hook, which runs before this one).
		if s > ApplyBatchBytes+1024 {
			t.Fatalf("a batch of %d bytes > ApplyBatchBytes %d plus one entry and the tree's markers", s, ApplyBatchBytes)
		}
	}
	for i := range n {
		if _, err := e.Get(ctx, entries[i].Key); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	if ms, err := e.Verify(ctx); err != nil || len(ms) > 0 {
		t.Fatalf("verify: %v %v", err, ms)
	}

	// The bad entry is the last one: refused before anything is written.
	var bad []reconcile.Entry
	for i := range n {
		bad = append(bad, entry(n+i, value))
	}
	bad[n-1].Record = []byte{0xff, 0x01}
	if err := e.Apply(ctx, 0, bad); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("Apply with a malformed record at the end: %v, want ErrBadRequest", err)
	}
	for i := range n - 1 {
		if _, err := e.Get(ctx, bad[i].Key); !errors.Is(err, ErrNotFound) {
			t.Fatalf("entry %d of a refused request is visible: %v", i, err)
		}
	}
}
