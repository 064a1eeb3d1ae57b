package plugin_test

import (
	"flag"
	"testing"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/internal/reconciletest"
	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

var seedsFlag = flag.Int("seeds", 0, "seeds per mode for the session suites through gRPC (0: a quick default)")

// newWireReplica opens a real engine (in-memory FS, for speed: the disk
// path is covered by the other tests) and returns a gRPC client for it over
// bufconn, with small stream chunks so that scans span several messages.
func newWireReplica(t testing.TB, cfg reconciletest.Config) reconcile.Replica {
	var c *plugin.Client
	e := reconciletest.OpenEngine(t, cfg, func() {
		if c != nil {
			_ = c.Close()
		}
	})
	c, err := plugin.InProcess(e, &plugin.ServerOptions{ScanChunkBytes: 256, CompressAbove: 2 << 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func suiteSeeds(quick int) int {
	if *seedsFlag > 0 {
		return *seedsFlag
	}
	return quick
}

// TestSessionScenariosThroughGRPC runs the randomized session suite with
// both replicas behind the gRPC service.
func TestSessionScenariosThroughGRPC(t *testing.T) {
	reconciletest.RunScenarios(t, newWireReplica, reconciletest.Options{Seeds: suiteSeeds(40)})
}

// TestSessionRacingThroughGRPC writes to both replicas while sessions run.
func TestSessionRacingThroughGRPC(t *testing.T) {
	reconciletest.RunRacing(t, newWireReplica, reconciletest.Options{Seeds: suiteSeeds(8)})
}

// TestSessionLyingPeersThroughGRPC puts a lying wrapper in front of one
// client.
func TestSessionLyingPeersThroughGRPC(t *testing.T) {
	reconciletest.RunLyingPeers(t, newWireReplica, reconciletest.Options{Seeds: suiteSeeds(5)})
}

// TestWireBytesMatchSessionAccounting compares the bytes the clients
// counted on the wire with the session's own (modelled) accounting.
func TestWireBytesMatchSessionAccounting(t *testing.T) {
	ctx := testCtx(t)
	ea, eb := openEngine(t, "a", record.ModeLWW), openEngine(t, "b", record.ModeLWW)
	fill(t, ea, "k", 2000, 100)
	fill(t, eb, "k", 2000, 100)
	for i := 0; i < 2000; i += 97 {
		if err := eb.Put(ctx, []byte{'k', byte('0' + i%10), 'x', byte(i)}, []byte("diverged"), engine.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	noCompress := &plugin.ServerOptions{CompressAbove: -1}
	ca, cb := inProcess(t, ea, noCompress), inProcess(t, eb, noCompress)
	ca.ResetWireStats()
	cb.ResetWireStats()
	st, err := reconcile.SyncPartition(ctx, ca, cb, 0, reconcile.SyncOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wa, wb := ca.WireStats(), cb.WireStats()
	measured := wa.Payload() + wb.Payload()
	modelled := st.BytesTotal()
	t.Logf("session: %v", st)
	t.Logf("wire: a %+v b %+v; measured %d bytes, modelled %d (%.2f%%)", wa, wb, measured, modelled, 100*(float64(measured)/float64(modelled)-1))
	if diff := float64(measured)/float64(modelled) - 1; diff > 0.10 || diff < -0.10 {
		t.Fatalf("wire bytes %d differ from the session's accounting %d by more than 10%%", measured, modelled)
	}
	if st.KeysRepaired() == 0 {
		t.Fatal("nothing repaired")
	}
}
