package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/reconcile"
)

// TestSyncPace checks that a symbol-stream session charges its own work to
// SyncOptions.Pace piece by piece (at least once a round, and once a chunk
// while streams decode), that a pace which blocks slows the session by what
// it blocks, and that the paced session still converges.
func TestSyncPace(t *testing.T) {
	ctx := context.Background()
	a := openMem(t, vfs.NewMem(), Options{ReplicaID: "a"})
	defer a.Close()
	b := openMem(t, vfs.NewMem(), Options{ReplicaID: "b"})
	defer b.Close()
	put := func(from, step int) {
		t.Helper()
		for i := from; i < 3000; i += step {
			if err := a.Put(ctx, fmt.Appendf(nil, "k%05d", i), []byte("v"), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	put(1, 10) // b gets these through an unpaced session first
	put(2, 10)
	if _, err := reconcile.SyncPartition(ctx, a, b, 0, reconcile.SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	put(0, 10) // 300 keys missing on b
	var calls int
	var charged time.Duration
	const rest = 2 * time.Millisecond
	opts := reconcile.SyncOptions{Pace: func(ctx context.Context, d time.Duration) error {
		calls++
		charged += d
		time.Sleep(rest)
		return ctx.Err()
	}}
	st, err := reconcile.SyncPartition(ctx, a, b, 0, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%v; pace called %d times, %v charged", st, calls, charged)
	if !st.Converged || st.KeysRepaired() != 300 {
		t.Fatalf("paced session: converged %t, %d keys repaired", st.Converged, st.KeysRepaired())
	}
	// Plans and answers of 4 rounds, and more than one symbol chunk.
	if calls < 2*st.Rounds+1 || charged <= 0 {
		t.Fatalf("pace called %d times for %d rounds, %v charged", calls, st.Rounds, charged)
	}
	if st.Duration < time.Duration(calls)*rest {
		t.Fatalf("session took %v, less than the %v its pace rested", st.Duration, time.Duration(calls)*rest)
	}
}
