package reconciletest_test

import (
	"flag"
	"testing"

	"github.com/pebble-ae/pebble-ae/internal/memreplica"
	"github.com/pebble-ae/pebble-ae/internal/reconciletest"
	"github.com/pebble-ae/pebble-ae/reconcile"
)

var (
	seedsFlag     = flag.Int("seeds", 0, "number of seeds per mode for the scenario suites (0: the suite's default)")
	firstSeedFlag = flag.Uint64("first-seed", 0, "first seed of the scenario suites")
)

func newMem(t testing.TB, cfg reconciletest.Config) reconcile.Replica {
	r, err := memreplica.New(memreplica.Options{ID: cfg.ID, Mode: cfg.Mode, LeafSize: cfg.LeafSize, SplitPoints: cfg.SplitPoints, PageSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func opts() reconciletest.Options {
	return reconciletest.Options{Seeds: *seedsFlag, FirstSeed: *firstSeedFlag}
}

func TestScenariosMemReplica(t *testing.T) { reconciletest.RunScenarios(t, newMem, opts()) }

func TestRacingMemReplica(t *testing.T) { reconciletest.RunRacing(t, newMem, opts()) }

func TestLyingPeersMemReplica(t *testing.T) { reconciletest.RunLyingPeers(t, newMem, opts()) }
