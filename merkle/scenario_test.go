package merkle

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/hooks"
)

// TestScenarios runs fixed-seed write patterns (batches, range deletions,
// reopen, partitions, queries) and verifies the tree after every step.
func TestScenarios(t *testing.T) {
	for _, mode := range []string{"batch", "range", "reopen", "parts", "query"} {
		t.Run(mode, func(t *testing.T) {
			opts := Options{Params: Params{LeafSize: 4}}
			if mode == "parts" {
				opts.Partitioner, _ = SplitPoints([][]byte{[]byte("k030"), []byte("k060")})
			}
			h := openHarness(t, vfs.NewCrashableMem(), opts)
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(1, 2))
			for i := 0; i < 500; i++ {
				n := 1
				if mode == "batch" {
					n = 5
				}
				h.commit(func(b *hooks.Batch) error {
					for j := 0; j < n; j++ {
						k := []byte(fmt.Sprintf("k%03d", rng.IntN(100)))
						if rng.IntN(3) == 0 {
							delete(h.model, string(k))
							b.Delete(k)
						} else {
							h.model[string(k)] = []byte("v")
							b.Set(k, []byte("v"))
						}
					}
					return nil
				}, false)
				if mode == "range" && rng.IntN(10) == 0 {
					a := []byte(fmt.Sprintf("k%03d", rng.IntN(90)))
					c := append(append([]byte{}, a[:3]...), '9', '9')
					for k := range h.model {
						if k >= string(a) && k < string(c) {
							delete(h.model, k)
						}
					}
					h.commit(func(b *hooks.Batch) error { return b.DeleteRange(a, c) }, false)
				}
				if rng.IntN(3) == 0 {
					h.tree.Checkpoint(ctx)
				}
				if mode == "reopen" && rng.IntN(10) == 0 {
					h.close()
					h.open()
				}
				if mode == "query" {
					h.tree.RangeFingerprint(ctx, 0, Range{Start: []byte("k020"), End: []byte("k050")})
				}
				ms, _ := h.tree.Verify(ctx)
				if len(ms) > 0 {
					t.Fatalf("i=%d: %v", i, ms)
				}
			}
		})
	}
}
