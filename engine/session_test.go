package engine_test

import (
	"testing"

	"github.com/pebble-ae/pebble-ae/internal/reconciletest"
	"github.com/pebble-ae/pebble-ae/reconcile"
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
