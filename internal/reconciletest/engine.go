package reconciletest

import (
	"context"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/merkle"
)

// OpenEngine opens a real engine for cfg (Pebble on an in-memory FS, for
// speed), ready for the suites. When the test ends the engine's tree is
// verified against its data and the engine closed; close, if not nil, runs
// first (to close a transport in front of the engine).
func OpenEngine(t testing.TB, cfg Config, close func()) *engine.Engine {
	t.Helper()
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
		if close != nil {
			close()
		}
		ms, err := e.Verify(context.Background())
		if err != nil || len(ms) > 0 {
			t.Errorf("tree verify after the session: %v %v", ms, err)
		}
		_ = e.Close()
	})
	return e
}
