package bench

import (
	"context"
	"testing"
)

// TestScaleSmall runs the scale benchmark at a small size: the bulk load,
// rebuild and checkpoint copy work, every session converges, identical
// replicas take one round trip, a session after a restart finds the entry
// index on disk (opening scans no key), and the keys a warm session
// rescans follow the differences (never the time).
func TestScaleSmall(t *testing.T) {
	const n = 200000 // 3 125 leaves: 100 differences dirty few of them
	res, err := Scale(context.Background(), ScaleConfig{Dir: t.TempDir(), Sizes: []int{n}, Diffs: []int{0, 100}, Repeat: 2, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Setups) != 1 || len(res.Rows) != 4 {
		t.Fatalf("want 1 setup and 4 rows, got %+v", res)
	}
	for _, r := range res.Rows {
		t.Logf("%+v", r)
		if !r.Converged {
			t.Fatalf("not converged: %+v", r)
		}
		if r.Diffs == 0 && (r.RoundsMax != 1 || r.KeysTransferredMedian != 0) {
			t.Fatalf("identical replicas: %+v", r)
		}
		if r.Phase == "restart" && r.KeysScannedAtOpen != 0 {
			t.Fatalf("opening scanned %d keys", r.KeysScannedAtOpen)
		}
		if r.Diffs == 100 && (r.KeysTransferredMedian < 90 || r.RoundsMedian != 4 || r.MetadataBytesPerDiffRemote > 60) {
			t.Fatalf("implausible session: %+v", r)
		}
		// 100 differences dirty at most 100 leaves a side (~64 keys each),
		// rescanned before and after the apply: far fewer than the
		// partition's keys a session.
		if r.Diffs == 100 && r.KeysScanned/uint64(r.Sessions) > n/2 {
			t.Fatalf("a session rescanned %d keys of %d", r.KeysScanned/uint64(r.Sessions), n)
		}
	}
	if s := res.Setups[0]; s.TreeBytes <= 0 || s.PrefixBytes <= 0 || s.DiskBytesA <= 0 {
		t.Fatalf("setup figures missing: %+v", s)
	}
}

// TestSyncRestart runs the anti-entropy benchmark with both engines
// reopened before the session.
func TestSyncRestart(t *testing.T) {
	res, err := Sync(context.Background(), SyncConfig{Keys: 2000, Diffs: 20, Seed: 7, Dir: t.TempDir(), Restart: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Restart || !res.Converged || res.KeysTransferred < 20 || res.Rounds != 4 {
		t.Fatalf("implausible: %+v", res)
	}
}
