package engine_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/hooks"
	"github.com/pebble-ae/pebble-ae/internal/testclock"
)

// TestTombstoneGCAboveReservedRange: tombstones of keys above the reserved
// internal range are purged like any other, and the engine's own state in
// the reserved range is not touched (the tree verifies).
func TestTombstoneGCAboveReservedRange(t *testing.T) {
	clk := testclock.New(time.Unix(1_900_000_000, 0))
	gc, err := engine.NewTombstoneGC(engine.GCOptions{Grace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open("db", &engine.Options{ReplicaID: "a", FS: vfs.NewMem(), Clock: clk, CheckpointInterval: -1, Hooks: []hooks.Hook{gc.Hook()}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := gc.Attach(e); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	keys := []string{"a", "\xff\xffad", "\xff\xffae\x01", "\xff\xffb", "\xff\xff\xff\xff"}
	for _, k := range keys {
		if err := e.Put(ctx, []byte(k), []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
		if err := e.Delete(ctx, []byte(k), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	gc.MarkSafe(0, clk.Now())
	if _, err := gc.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	if st := gc.Stats(); st.Purged != uint64(len(keys)) {
		t.Fatalf("purged %d tombstones, want %d: %+v", st.Purged, len(keys), st)
	}
	for _, k := range keys {
		if _, err := e.GetRecord(ctx, []byte(k)); !errors.Is(err, engine.ErrNotFound) {
			t.Fatalf("%q still has a record: %v", k, err)
		}
	}
	if ms, err := e.Verify(ctx); err != nil || len(ms) > 0 {
		t.Fatalf("verify: %v %v", err, ms)
	}
}
