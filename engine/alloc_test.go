package engine

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
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
	allocs := minAllocsPerRun(t, 200, writeBatch)
	if allocs > 1 {
		t.Fatalf("a batch of 100 LWW puts allocates %.1f times, want at most 1 (the Batch)", allocs)
	}
}

// TestCausalPutAllocations checks that causal writes over existing records
// allocate nothing of their own: the current record is decoded into the
// lock stripe's reused memory and the new one encoded on the stack,
// straight into the Pebble batch. Pebble's Get may allocate (iterator state
// when it reads sstables), hence a bound of 1 per write.
func TestCausalPutAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	e := openMem(t, vfs.NewMem(), Options{Mode: record.ModeCausal})
	defer e.Close()
	ctx := context.Background()
	key, value := make([]byte, 16), make([]byte, 100)
	var i uint64
	// A put (a new sibling next to the tombstone, if any) and a delete
	// (one tombstone superseding both): the records stay small.
	putDelete := func() {
		binary.BigEndian.PutUint64(key, i%100*0x9e3779b97f4a7c15>>1)
		i++
		if err := e.Put(ctx, key, value, NoSync); err != nil {
			t.Fatal(err)
		}
		if err := e.Delete(ctx, key, NoSync); err != nil {
			t.Fatal(err)
		}
	}
	for range 200 { // every key exists
		putDelete()
	}
	allocs := minAllocsPerRun(t, 500, putDelete)
	if allocs > 2 {
		t.Fatalf("a causal put and delete allocate %.1f times, want at most 2 (Pebble's Gets)", allocs)
	}
}

// minAllocsPerRun is the least of five testing.AllocsPerRun measurements.
// AllocsPerRun counts every goroutine's allocations, so a memtable flush or
// a compaction that Pebble runs in the background during one measurement
// adds its allocations to the write path's (CI saw 3.0 a batch once, where
// the path itself allocates 1): background work is sporadic and additive,
// while an allocation of the write path shows in every measurement, so the
// minimum is the write path's own figure.
func minAllocsPerRun(t *testing.T, runs int, f func()) float64 {
	t.Helper()
	least := -1.0
	all := make([]float64, 0, 5)
	for range 5 {
		a := testing.AllocsPerRun(runs, f)
		all = append(all, a)
		if least < 0 || a < least {
			least = a
		}
	}
	t.Logf("allocations per call, five measurements of %d calls: %v (least %.2f)", runs, all, least)
	return least
}
