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
	w := newHookWriter(b, h)
	defer w.close()
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([][16]byte, 1_000_000)
	for i := range keys {
		randomKey(keys[i][:], rng)
	}
	i := 0
	for i < len(keys) {
		w.write(func() []byte { i++; return keys[i-1][:] })
	}
	leaves := 0
	for _, p := range h.tree.Partitions() {
		leaves += p.Leaves
	}
	for b.Loop() {
		w.write(func() []byte { return keys[rng.IntN(len(keys))][:] })
	}
	b.ReportMetric(float64(leaves), "leaves")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*hookBatch), "ns/key")
}

// BenchmarkWriteHookGrowth measures the write hook as a partition grows:
// 16M new random 16-byte keys in batches of 100, the leaves splitting as
// they come, and reports the hook's cost a key over the 1st, 4th and 16th
// million (ns/key@1M, @4M, @16M) and the leaves at the end. One iteration is
// the whole load; run it with -benchtime 1x.
func BenchmarkWriteHookGrowth(b *testing.B) {
	for b.Loop() {
		h := openHarness(b, vfs.NewMem(), Options{})
		w := newHookWriter(b, h)
		rng := rand.New(rand.NewPCG(1, 2))
		key := make([]byte, 16)
		for m := 1; m <= 16; m++ {
			start := time.Now()
			for i := 0; i < 1_000_000; i += hookBatch {
				w.write(func() []byte { return randomKey(key, rng) })
			}
			if m == 1 || m == 4 || m == 16 {
				b.ReportMetric(float64(time.Since(start).Nanoseconds())/1e6, fmt.Sprintf("ns/key@%dM", m))
			}
		}
		b.ReportMetric(float64(h.tree.Partitions()[0].Leaves), "leaves")
		w.close()
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
			newLeaf := func() *leaf { return &leaf{start: randomKey(make([]byte, 16), rng)} }
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

// hookBatch is the writes a benchmark batch holds.
const hookBatch = 100

// hookValue is every benchmark write's value.
var hookValue = []byte("v")

// hookWriter runs the tree's write hook on batches that are never applied
// to Pebble: the hook's own cost.
type hookWriter struct {
	b     *testing.B
	hook  hooks.Hook
	batch *hooks.Batch
}

func newHookWriter(b *testing.B, h *harness) *hookWriter {
	return &hookWriter{b: b, hook: h.tree.Hook(), batch: hooks.NewBatch(h.db.NewBatch())}
}

// write runs the hook on one batch of hookBatch writes of the keys next
// returns.
func (w *hookWriter) write(next func() []byte) {
	for range hookBatch {
		if err := w.batch.Set(next(), hookValue); err != nil {
			w.b.Fatal(err)
		}
	}
	if err := w.hook.PreCommit(w.batch); err != nil {
		w.b.Fatal(err)
	}
	w.hook.PostCommit(w.batch, nil)
	w.batch.Reset()
}

func (w *hookWriter) close() { w.batch.Pebble().Close() }

// randomKey fills key (a multiple of 8 bytes long) from rng and returns it.
func randomKey(key []byte, rng *rand.Rand) []byte {
	for j := 0; j < len(key); j += 8 {
		binary.LittleEndian.PutUint64(key[j:], rng.Uint64())
	}
	return key
}
