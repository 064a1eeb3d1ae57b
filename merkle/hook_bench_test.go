package merkle

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

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

// BenchmarkWriteHookGrowth measures the write hook as a partition grows:
// 16M new random 16-byte keys in batches of 100, the leaves splitting as
// they come, and reports the hook's cost a key over the 1st, 4th and 16th
// million (ns/key@1M, @4M, @16M) and the leaves at the end. One iteration is
// the whole load; run it with -benchtime 1x.
func BenchmarkWriteHookGrowth(b *testing.B) {
	for b.Loop() {
		h := openHarness(b, vfs.NewMem(), Options{})
		hook := h.tree.Hook()
		rng := rand.New(rand.NewPCG(1, 2))
		key, value := make([]byte, 16), []byte("v")
		batch := hooks.NewBatch(h.db.NewBatch())
		for m := 1; m <= 16; m++ {
			start := time.Now()
			for i := 0; i < 1_000_000; i += 100 {
				for range 100 {
					for j := 0; j < len(key); j += 8 {
						binary.LittleEndian.PutUint64(key[j:], rng.Uint64())
					}
					if err := batch.Set(key, value); err != nil {
						b.Fatal(err)
					}
				}
				if err := hook.PreCommit(batch); err != nil {
					b.Fatal(err)
				}
				hook.PostCommit(batch, nil)
				batch.Reset()
			}
			if m == 1 || m == 4 || m == 16 {
				b.ReportMetric(float64(time.Since(start).Nanoseconds())/1e6, fmt.Sprintf("ns/key@%dM", m))
			}
		}
		b.ReportMetric(float64(h.tree.Partitions()[0].Leaves), "leaves")
		batch.Pebble().Close()
		h.close()
	}
}

// BenchmarkLeafSetSplit measures one leaf split of a partition of n leaves
// (insert a new leaf at a random place, then delete it, so the size stays
// n): what a write that starts a new leaf pays to the leaf set.
func BenchmarkLeafSetSplit(b *testing.B) {
	for _, n := range []int{16 << 10, 256 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("leaves=%d", n), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(3, 4))
			s := &leafSet{}
			newLeaf := func() *leaf {
				k := make([]byte, 16)
				binary.BigEndian.PutUint64(k, rng.Uint64())
				binary.BigEndian.PutUint64(k[8:], rng.Uint64())
				return &leaf{start: k}
			}
			for s.Len() < n {
				s.ReplaceOrInsert(newLeaf())
			}
			extra := make([]*leaf, 1024)
			for i := range extra {
				extra[i] = newLeaf()
			}
			i := 0
			for b.Loop() {
				l := extra[i%len(extra)]
				s.ReplaceOrInsert(l)
				s.Delete(l)
				i++
			}
		})
	}
}
