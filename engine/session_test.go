package engine_test

import (
	"context"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/internal/reconciletest"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile"
)

// newEngineReplica opens a real engine (Pebble on an in-memory FS) for the
// shared anti-entropy suites.
func newEngineReplica(t testing.TB, cfg reconciletest.Config) reconcile.Replica {
	pn := merkle.SinglePartition()
	if len(cfg.SplitPoints) > 0 {
		var err error
		if pn, err = merkle.SplitPoints(cfg.SplitPoints); err != nil {
			t.Fatal(err)
		}
	}
	e, err := engine.Open("db", &engine.Options{
		ReplicaID:          cfg.ID,
		Mode:               cfg.Mode,
		Partitioner:        pn,
		Tree:               merkle.Params{LeafSize: cfg.LeafSize},
		FS:                 vfs.NewMem(),
		CheckpointInterval: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ms, err := e.Verify(context.Background())
		if err != nil || len(ms) > 0 {
			t.Errorf("tree verify after the session: %v %v", ms, err)
		}
		_ = e.Close()
	})
	return e
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
