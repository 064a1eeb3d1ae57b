package bench

import (
	"context"
	"testing"

	"github.com/pebble-ae/pebble-ae/reconcile"
)

// TestSyncSmall runs the anti-entropy benchmark on 2000 keys with 20
// differences and checks that both sessions converged and that the figures
// are plausible (never the time).
func TestSyncSmall(t *testing.T) {
	for _, method := range []reconcile.Method{reconcile.MethodAuto, reconcile.MethodDescent} {
		noSketch := method == reconcile.MethodDescent
		res, err := Sync(context.Background(), SyncConfig{Keys: 2000, Diffs: 20, Seed: 7, Dir: t.TempDir(), Method: method})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%+v", res)
		if !res.Converged || !res.NaiveConverged {
			t.Fatalf("not converged: %+v", res)
		}
		if res.Sketch == noSketch {
			t.Fatalf("sketch = %t with method %q", res.Sketch, method)
		}
		if res.KeysTransferred < 20 || res.TransferredPerDiff > 1.01 {
			t.Fatalf("transferred %d keys for 20 differences", res.KeysTransferred)
		}
		if res.BytesRecords < res.FloorBytes/2 || res.BytesTotal >= res.NaiveBytesTotal || res.Rounds < 3 || res.Rounds > 8 {
			t.Fatalf("implausible: %+v", res)
		}
	}
}

// TestSyncGRPCWireMatchesModel runs the bench session with B behind the
// gRPC service and checks the bytes measured on the wire against the
// session's own accounting.
func TestSyncGRPCWireMatchesModel(t *testing.T) {
	res, err := Sync(context.Background(), SyncConfig{Keys: 2000, Diffs: 20, Transport: "grpc", Dir: t.TempDir(), Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Converged || res.WirePayloadBytes == 0 {
		t.Fatalf("grpc: %+v", res)
	}
	ratio := float64(res.WirePayloadBytes) / float64(res.WireModelBytes)
	t.Logf("wire %d bytes, model %d bytes, ratio %.3f", res.WirePayloadBytes, res.WireModelBytes, ratio)
	if ratio < 0.9 || ratio > 1.1 {
		t.Fatalf("wire bytes %d not within 10%% of the session's accounting %d", res.WirePayloadBytes, res.WireModelBytes)
	}
}

// TestSyncRepeat runs the steady-state repetitions: every repeated session
// repairs its fresh differences (full scans equal after the last), in the
// symbol stream's four rounds, and the bad configurations are refused.
func TestSyncRepeat(t *testing.T) {
	res, err := Sync(context.Background(), SyncConfig{Keys: 3000, Diffs: 30, Seed: 5, Dir: t.TempDir(), Warm: true, Repeat: 5})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if !res.RepeatConverged || res.RepeatSessions != 5 || res.RepeatRoundsMedian != 4 || res.RepeatSecondsMedian <= 0 || res.RepeatMetadataBytesPerDiff <= 0 {
		t.Fatalf("repeat figures: %+v", res)
	}
	for _, bad := range []SyncConfig{{Keys: 100, Repeat: -1}, {Keys: 100, Repeat: 2, Transport: "grpc"}} {
		if _, err := Sync(context.Background(), bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}
