package merkle

import (
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/hooks"
)

// BenchmarkWriteHook measures the tree's write hook alone: PreCommit and
// PostCommit of batches of 100 writes, not applied to Pebble, drawn from
// 10^6 random 16-byte keys that have all been written once before the
// timer starts (so the leaves no longer split: the steady state of
// overwrites). It is the blind write path's own cost per key, without
// Pebble's; ns/key includes building the batch.
func BenchmarkWriteHook(b *testing.B) {
	h := openHarness(b, vfs.NewMem(), Options{})
	defer h.close()
	hook := h.tree.Hook()
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([][16]byte, 1_000_000)
	for i := range keys {
		for j := range keys[i] {
			keys[i][j] = byte(rng.Uint32())
		}
	}
	value := []byte("v")
	batch := hooks.NewBatch(h.db.NewBatch())
	defer batch.Pebble().Close()
	write := func(next func() []byte) {
		for range 100 {
			if err := batch.Set(next(), value); err != nil {
				b.Fatal(err)
			}
		}
		if err := hook.PreCommit(batch); err != nil {
			b.Fatal(err)
		}
		hook.PostCommit(batch, nil)
		batch.Reset()
	}
	i := 0
	for i < len(keys) {
		write(func() []byte { i++; return keys[i-1][:] })
	}
	leaves := 0
	for _, p := range h.tree.Partitions() {
		leaves += p.Leaves
	}
	for b.Loop() {
		write(func() []byte { return keys[rng.IntN(len(keys))][:] })
	}
	b.ReportMetric(float64(leaves), "leaves")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/key")
}
