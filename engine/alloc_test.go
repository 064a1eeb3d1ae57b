package engine

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestLWWBatchAllocations checks that the blind LWW batch path allocates
// nothing per write: stamping, encoding into the Pebble batch and the tree
// hook reuse memory, so a batch of 100 overwrites costs at most the Batch
// handle itself (leaf splits, which allocate, cannot happen on keys already
// written).
func TestLWWBatchAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	e := openMem(t, vfs.NewMem(), Options{})
	defer e.Close()
	ctx := context.Background()
	key, value := make([]byte, 16), make([]byte, 100)
	var round uint64
	writeBatch := func() {
		b := e.NewBatch()
		for i := range uint64(100) {
			binary.BigEndian.PutUint64(key, (round*100+i)%1000*0x9e3779b97f4a7c15>>1)
			if err := b.Put(key, value); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(ctx, NoSync); err != nil {
			t.Fatal(err)
		}
		round++
	}
	for range 20 { // write every key once: the leaves exist
		writeBatch()
	}
	allocs := testing.AllocsPerRun(200, writeBatch)
	t.Logf("%.2f allocations per batch of 100", allocs)
	if allocs > 1 {
		t.Fatalf("a batch of 100 LWW puts allocates %.1f times, want at most 1 (the Batch)", allocs)
	}
}
