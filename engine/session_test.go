package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/internal/reconciletest"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// newEngineReplica opens a real engine (Pebble on an in-memory FS) for the
// shared anti-entropy suites.
func newEngineReplica(t testing.TB, cfg reconciletest.Config) reconcile.Replica {
	return reconciletest.OpenEngine(t, cfg, nil)
}

// TestSessionScenarios runs the randomized anti-entropy scenarios (500 seeds
// per mode by default) between two real engines.
func TestSessionScenarios(t *testing.T) {
	opts := reconciletest.Options{}
	if testing.Short() {
		opts.Seeds = 50
	}
	reconciletest.RunScenarios(t, newEngineReplica, opts)
}

// TestSessionRacingWrites writes to both engines while sessions run.
func TestSessionRacingWrites(t *testing.T) {
	reconciletest.RunRacing(t, newEngineReplica, reconciletest.Options{})
}

// TestSessionLyingPeers puts a lying wrapper in front of one engine.
func TestSessionLyingPeers(t *testing.T) {
	reconciletest.RunLyingPeers(t, newEngineReplica, reconciletest.Options{})
}

// TestSessionLargeSymbolDifference: between two real engines sessions use
// symbol streams; a difference of more keys than MaxPendingBytes lets a
// session hold in a round is fetched in pairs, a chunk a round (A's records
// by ID, B's of the same keys by key; the records fetched by ID would
// otherwise pair up only once all had arrived), with the writes applied as
// the budget fills. The engines converge, the tree of each
// verifies (OpenEngine's cleanup), and a default-budget session on the same
// data takes the symbol path.
func TestSessionLargeSymbolDifference(t *testing.T) {
	ctx := context.Background()
	const n = 6000
	value := bytes.Repeat([]byte("v"), 100)
	for _, maxPending := range []int64{64 << 10, 0} {
		var reps [2]*engine.Engine
		for i, id := range []record.ReplicaID{"a", "b"} {
			reps[i] = reconciletest.OpenEngine(t, reconciletest.Config{ID: id, LeafSize: 64}, nil)
		}
		var ea, eb []reconcile.Entry
		for i := range n {
			k := fmt.Appendf(nil, "k%06d", i)
			ts := int64(2 << 40)
			ea = append(ea, reconcile.Entry{Key: k, Record: record.NewLWW("a", record.Timestamp{WallTime: ts}, value, false).Encode()})
			if i%3 == 0 {
				ts = 1 << 40 // stale on B
			}
			eb = append(eb, reconcile.Entry{Key: k, Record: record.NewLWW("a", record.Timestamp{WallTime: ts}, value, false).Encode()})
		}
		if err := reps[0].Apply(ctx, 0, ea); err != nil {
			t.Fatal(err)
		}
		if err := reps[1].Apply(ctx, 0, eb); err != nil {
			t.Fatal(err)
		}
		st, err := reconcile.SyncPartition(ctx, reps[0], reps[1], 0, reconcile.SyncOptions{
			Session: reconcile.SessionConfig{Strict: true, MaxPendingBytes: maxPending},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("MaxPendingBytes %d: %d rounds, %d drains, %d large differences, peak %d bytes of writes, %s",
			maxPending, st.Rounds, st.Drains, st.LargeDifferences, st.PeakPendingBytes, st)
		if !st.Converged || st.B.KeysRepaired != n/3 || st.Bytes().Sketches == 0 {
			t.Fatalf("MaxPendingBytes %d: %s; want convergence, %d keys repaired on B, symbols streamed", maxPending, st, n/3)
		}
		if maxPending > 0 && (st.LargeDifferences != 1 || st.Drains == 0) {
			t.Fatalf("MaxPendingBytes %d: %d large differences, %d drains; want 1 and some", maxPending, st.LargeDifferences, st.Drains)
		}
		if maxPending == 0 && (st.LargeDifferences != 0 || st.SketchFallbacks != 0 || st.Drains != 0) {
			t.Fatalf("default budget: %d large differences, %d fallbacks, %d drains; want none", st.LargeDifferences, st.SketchFallbacks, st.Drains)
		}
	}
}
