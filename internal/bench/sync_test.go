package bench

import (
	"context"
	"testing"
)

// TestSyncSmall runs the anti-entropy benchmark on 2000 keys with 20
// differences and checks that both sessions converged and that the figures
// are plausible (never the time).
func TestSyncSmall(t *testing.T) {
	for _, noSketch := range []bool{false, true} {
		res, err := Sync(context.Background(), SyncConfig{Keys: 2000, Diffs: 20, Seed: 7, Dir: t.TempDir(), NoSketch: noSketch})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%+v", res)
		if !res.Converged || !res.NaiveConverged {
			t.Fatalf("not converged: %+v", res)
		}
		if res.Sketch == noSketch {
			t.Fatalf("sketch = %t with NoSketch %t", res.Sketch, noSketch)
		}
		if res.KeysTransferred < 20 || res.TransferredPerDiff > 1.01 {
			t.Fatalf("transferred %d keys for 20 differences", res.KeysTransferred)
		}
		if res.BytesRecords < res.FloorBytes/2 || res.BytesTotal >= res.NaiveBytesTotal || res.Rounds < 3 || res.Rounds > 8 {
			t.Fatalf("implausible: %+v", res)
		}
	}
}
