package bench

import (
	"context"
	"testing"
	"time"
)

// TestKVSmall runs both application-store benchmarks through the grpc
// transport at a tiny size: every cell is measured on both sides and has
// its ratios (no wall-clock figure is asserted).
func TestKVSmall(t *testing.T) {
	ctx := context.Background()
	w, err := KVWrite(ctx, KVConfig{Dir: t.TempDir(), Transport: "grpc", Duration: 20 * time.Millisecond, Rounds: 1, WarmupKeys: 2000,
		BatchSizes: []int{1, 10}, Writers: []int{1, 2}, Syncs: []bool{false}})
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Cells) != 4 {
		t.Fatalf("%d write cells, want 4", len(w.Cells))
	}
	for _, c := range w.Cells {
		if c.InProcessPerSec <= 0 || c.RemotePerSec <= 0 || c.RatioMedian <= 0 || len(c.Runs) != 1 {
			t.Errorf("cell %s: %+v", c.Name, c)
		}
		// Every side's calls were timed.
		if r := c.Runs[0]; c.InProcessLatencyP50 <= 0 || c.RemoteLatencyP50 <= 0 || r.InProcessLatencyP99 < r.InProcessLatencyP50 || r.RemoteLatencyP99 < r.RemoteLatencyP50 {
			t.Errorf("cell %s: latencies %+v", c.Name, c)
		}
	}
	r, err := KVRead(ctx, KVConfig{Dir: t.TempDir(), Transport: "grpc", Keys: 3000, Duration: 20 * time.Millisecond, Rounds: 1, Readers: []int{2}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Cells) != 3 || r.Cells[2].Goal != 0.5 || r.Cells[2].Met == nil {
		t.Fatalf("read cells: %+v", r.Cells)
	}
	if r.Cells[0].RemoteLatencyP50 <= 0 || r.Cells[2].RemoteLatencyP50 != 0 {
		t.Errorf("read latencies: point reads %v µs, scan %v µs (want > 0, and 0: a scan is not timed a call)", r.Cells[0].RemoteLatencyP50, r.Cells[2].RemoteLatencyP50)
	}
}
