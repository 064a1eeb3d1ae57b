package merkle

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/hooks"
	"github.com/pebble-ae/pebble-ae/internal/keyspace"
)

var seedFlag = flag.Uint64("seed", 0, "seed for randomized tests (0: time-based)")

func testSeed(t testing.TB) uint64 {
	s := *seedFlag
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("seed=%d (rerun with -seed=%d)", s, s)
	return s
}

// harness is a Pebble DB on a crashable in-memory FS with a tree attached
// and an in-memory model of its user data.
type harness struct {
	t     testing.TB
	fs    *vfs.MemFS
	db    *pebble.DB
	tree  *Tree
	opts  Options
	model map[string][]byte
}

func openHarness(t testing.TB, fs *vfs.MemFS, opts Options) *harness {
	t.Helper()
	h := &harness{t: t, fs: fs, opts: opts, model: map[string][]byte{}}
	h.open()
	return h
}

func (h *harness) open() {
	h.t.Helper()
	db, err := pebble.Open("db", &pebble.Options{FS: h.fs, FormatMajorVersion: pebble.FormatValueSeparation, Logger: quietLogger{}})
	if err != nil {
		h.t.Fatalf("pebble open: %v", err)
	}
	o := h.opts
	tree, err := Open(db, &o)
	if err != nil {
		h.t.Fatalf("tree open: %v", err)
	}
	h.db, h.tree = db, tree
	if err := tree.Rebuild(context.Background(), nil); err != nil {
		h.t.Fatalf("rebuild: %v", err)
	}
}

func (h *harness) close() {
	h.tree.Close()
	if err := h.db.Close(); err != nil {
		h.t.Fatalf("close: %v", err)
	}
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...interface{})  {}
func (quietLogger) Errorf(string, ...interface{}) {}
func (quietLogger) Fatalf(format string, args ...interface{}) {
	panic(fmt.Sprintf(format, args...))
}

func (h *harness) commit(fn func(b *hooks.Batch) error, sync bool) {
	h.t.Helper()
	b := hooks.NewBatch(h.db.NewBatch())
	if err := fn(b); err != nil {
		h.t.Fatal(err)
	}
	opts := pebble.NoSync
	if sync {
		opts = pebble.Sync
	}
	if err := hooks.Commit(h.db, h.tree.Hook(), b, opts); err != nil {
		h.t.Fatal(err)
	}
	b.Pebble().Close()
}

// modelFingerprint computes the fingerprint of [lo, hi) from the model.
func (h *harness) modelFingerprint(lo, hi []byte) Fingerprint {
	var fp Fingerprint
	var scratch []byte
	var d Digest
	for k, v := range h.model {
		if bytes.Compare([]byte(k), lo) < 0 || (hi != nil && bytes.Compare([]byte(k), hi) >= 0) {
			continue
		}
		d, scratch = LeafDigest(scratch, []byte(k), v)
		fp.Sum = fp.Sum.Add(d)
		fp.Count++
	}
	return fp
}

func (h *harness) verifyClean() {
	h.t.Helper()
	ms, err := h.tree.Verify(context.Background())
	if err != nil {
		h.t.Fatalf("verify: %v", err)
	}
	for _, m := range ms {
		h.t.Errorf("mismatch: %s", m)
	}
	if len(ms) > 0 {
		h.t.FailNow()
	}
}

func randKey(rng *rand.Rand, space int) []byte {
	return []byte(fmt.Sprintf("k%05d", rng.IntN(space)))
}

// highKeys are the prefixes randHighKey puts before some keys: keys that
// sort above the reserved internal range (its end itself, and beyond), so
// that the last partition spans the internal range with user keys on both
// sides of it.
var highKeys = []string{"\xff\xffae\x01", "\xff\xff\xff"}

// randHighKey is randKey with, for a quarter of the keys, a prefix that
// sorts them above the reserved internal range.
func randHighKey(rng *rand.Rand, space int) []byte {
	k := randKey(rng, space)
	if rng.IntN(4) == 0 {
		return append([]byte(highKeys[rng.IntN(len(highKeys))]), k...)
	}
	return k
}

// TestModel runs random batches of sets, deletes and range deletions,
// recomputes, checkpoints and reopens against a model, checking range
// fingerprints and Verify.
func TestModel(t *testing.T) {
	// The random seed, and seeds that once found a bug (1796281762343249128:
	// markers that did not cover a merged leaf, see
	// TestMarkerCoversMergedLeaf).
	seed := testSeed(t)
	// high runs also write keys above the reserved internal range.
	runs := []struct {
		leafSize uint32
		seed     uint64
		high     bool
	}{{4, seed, false}, {16, seed, false}, {4, 1796281762343249128, false}, {4, seed, true}, {16, seed, true}}
	// Small chunks, so that the leaf set's chunk splits, removals and
	// cross-chunk splices run (checkTotals checks its structure).
	defer func(n int) { leafChunkMax = n }(leafChunkMax)
	leafChunkMax = 4
	for _, run := range runs {
		leafSize, seed := run.leafSize, run.seed
		t.Run(fmt.Sprintf("leaf=%d/seed=%d/high=%v", leafSize, seed, run.high), func(t *testing.T) {
			randKey := randKey
			if run.high {
				randKey = randHighKey
			}
			rng := rand.New(rand.NewPCG(seed, uint64(leafSize)))
			pn, _ := SplitPoints([][]byte{[]byte("k01000"), []byte("k03000")})
			var h *harness
			observed := 0
			// Every leaf a recompute shows its observer must hold the
			// model's records of its range, in key order, and a span's
			// leaves must tile the span.
			observer := func(part int, spans []ObservedSpan, reset bool) error {
				for _, sp := range spans {
					if len(sp.Leaves) == 0 || !bytes.Equal(sp.Leaves[0].Start, sp.Start) {
						t.Fatalf("observed span [%q, %q): leaves do not start at the span", sp.Start, sp.End)
					}
					for i, l := range sp.Leaves {
						observed++
						end := sp.End
						if i+1 < len(sp.Leaves) {
							end = sp.Leaves[i+1].Start
						}
						keys := make([]string, 0, len(h.model))
						for k := range h.model {
							if k >= string(l.Start) && (end == nil || k < string(end)) {
								keys = append(keys, k)
							}
						}
						slices.Sort(keys)
						if len(keys) != len(l.Digests) {
							t.Fatalf("observed leaf [%q, %q): %d digests, the model has %d records", l.Start, end, len(l.Digests), len(keys))
						}
						for i, d := range l.Digests {
							md, _ := LeafDigest(nil, []byte(keys[i]), h.model[keys[i]])
							if md.Short() != d {
								t.Fatalf("observed leaf %q: digest %d is not the model's record %q", l.Start, i, keys[i])
							}
						}
					}
				}
				return nil
			}
			h = openHarness(t, vfs.NewCrashableMem(), Options{Params: Params{LeafSize: leafSize, Seed: 7}, Partitioner: pn, SpanObserver: observer})
			defer func() { h.close() }()
			defer func() {
				if observed == 0 {
					t.Error("no recompute reported a leaf")
				}
			}()
			ctx := context.Background()
			const space = 5000
			for step := 0; step < 400; step++ {
				if step%5 == 0 {
					h.checkCleanLeaves(step)
				}
				x := rng.IntN(100)
				switch {
				case x < 70:
					n := 1 + rng.IntN(20)
					h.commit(func(b *hooks.Batch) error {
						for i := 0; i < n; i++ {
							k := randKey(rng, space)
							if rng.IntN(5) == 0 {
								delete(h.model, string(k))
								if err := b.Delete(k); err != nil {
									return err
								}
								continue
							}
							v := []byte(fmt.Sprintf("v%d", rng.Int()))
							h.model[string(k)] = v
							if err := b.Set(k, v); err != nil {
								return err
							}
						}
						return nil
					}, false)
				case x < 73:
					a, c := randKey(rng, space), randKey(rng, space)
					if bytes.Compare(a, c) > 0 {
						a, c = c, a
					}
					if bytes.Equal(a, c) {
						continue
					}
					for k := range h.model {
						if k >= string(a) && k < string(c) {
							delete(h.model, k)
						}
					}
					// As the engine does: a range across the reserved
					// space deletes the user keys on either side of it.
					h.commit(func(b *hooks.Batch) error {
						for _, sp := range keyspace.UserSpans(a, c) {
							if err := b.DeleteRange(sp[0], sp[1]); err != nil {
								return err
							}
						}
						return nil
					}, false)
				case x < 85:
					// Check a random range of a random partition.
					pi := rng.IntN(pn.NumPartitions())
					ps, pe := pn.Bounds(pi)
					checkTotals(t, h.tree)
					lo, hi := randKey(rng, space), randKey(rng, space)
					if bytes.Compare(lo, hi) > 0 {
						lo, hi = hi, lo
					}
					if rng.IntN(4) == 0 {
						// The whole partition (the running total when
						// every leaf is clean).
						lo, hi = ps, pe
						if lo == nil {
							lo = []byte{}
						}
					}
					if bytes.Compare(lo, ps) < 0 {
						lo = ps
					}
					if pe != nil && bytes.Compare(hi, pe) > 0 {
						hi = pe
					}
					if bytes.Compare(lo, hi) >= 0 {
						continue
					}
					got, err := h.tree.RangeFingerprint(ctx, pi, Range{Start: lo, End: hi})
					if err != nil {
						t.Fatal(err)
					}
					if want := h.modelFingerprint(lo, hi); got != want {
						t.Fatalf("step %d: fingerprint of [%s, %s): got count %d, want %d", step, lo, hi, got.Count, want.Count)
					}
					kids, err := h.tree.Children(ctx, pi, Range{Start: lo, End: hi}, 8)
					if err != nil {
						t.Fatal(err)
					}
					var sum Fingerprint
					for _, c := range kids {
						sum = sum.Add(c.Fingerprint)
						if want := h.modelFingerprint(c.Range.Start, c.Range.End); c.Fingerprint != want {
							t.Fatalf("step %d: child [%s, %s) count %d want %d", step, c.Range.Start, c.Range.End, c.Fingerprint.Count, want.Count)
						}
					}
					if sum != got {
						t.Fatalf("children do not add up to the range")
					}
					// The children again, all at once (sorted and
					// disjoint: one recompute of their span), then
					// reversed (one at a time).
					ranges := make([]Range, len(kids))
					for i, c := range kids {
						ranges[i] = c.Range
					}
					for pass := range 2 {
						rs := slices.Clone(ranges)
						if pass == 1 {
							slices.Reverse(rs)
						}
						fps, err := h.tree.RangeFingerprints(ctx, pi, rs)
						if err != nil {
							t.Fatal(err)
						}
						for i, r := range rs {
							if want := h.modelFingerprint(r.Start, r.End); fps[i] != want {
								t.Fatalf("step %d: RangeFingerprints (pass %d) of [%s, %s): count %d want %d", step, pass, r.Start, r.End, fps[i].Count, want.Count)
							}
						}
					}
				case x < 92:
					if err := h.tree.Checkpoint(ctx); err != nil {
						t.Fatal(err)
					}
				case x < 95:
					h.verifyClean()
				default:
					if rng.IntN(2) == 0 {
						if err := h.tree.Checkpoint(ctx); err != nil {
							t.Fatal(err)
						}
					}
					h.close()
					h.open()
				}
			}
			h.verifyClean()
			checkTotals(t, h.tree)
			// Whole-partition fingerprints equal the model.
			for pi := 0; pi < pn.NumPartitions(); pi++ {
				ps, pe := pn.Bounds(pi)
				got, err := h.tree.RangeFingerprint(ctx, pi, Range{})
				if err != nil {
					t.Fatal(err)
				}
				if ps == nil {
					ps = []byte{}
				}
				if want := h.modelFingerprint(ps, pe); got != want {
					t.Fatalf("partition %d root mismatch", pi)
				}
			}
			keys := make([]string, 0, len(h.model))
			for k := range h.model {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			t.Logf("keys=%d leaves=%v stats=%+v", len(keys), h.tree.Partitions(), h.tree.Stats())
		})
	}
}

// checkCleanLeaves compares every clean leaf with the model, without
// changing the tree.
func (h *harness) checkCleanLeaves(step int) {
	h.t.Helper()
	h.tree.mu.Lock()
	defer h.tree.mu.Unlock()
	for _, p := range h.tree.mu.parts {
		p.leaves.Ascend(func(l *leaf) bool {
			if !l.dirty {
				if want := h.modelFingerprint(l.start, p.leafEnd(l)); want != l.fp {
					h.t.Fatalf("before step %d: clean leaf [%s, %s) count %d want %d", step, l.start, p.leafEnd(l), l.fp.Count, want.Count)
				}
			}
			return true
		})
	}
}

// checkTotals checks every partition's running total and dirty count
// against a walk over its leaves.
func checkTotals(t testing.TB, tr *Tree) {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for pi, p := range tr.mu.parts {
		var sum Fingerprint
		dirty := 0
		checkLeafSet(t, pi, p.leaves)
		p.leaves.Ascend(func(l *leaf) bool {
			sum = sum.Add(l.fp)
			if l.dirty {
				dirty++
			}
			return true
		})
		if sum != p.leaves.total || dirty != p.leaves.dirty {
			t.Fatalf("partition %d: running total %d records, %d dirty; leaves add up to %d records, %d dirty", pi, p.leaves.total.Count, p.leaves.dirty, sum.Count, dirty)
		}
	}
}

// checkLeafSet checks a leaf set's structure: no empty or overfull chunk,
// prefixes, first prefixes and offsets that match the leaves, and leaves
// in strictly increasing key order.
func checkLeafSet(t testing.TB, pi int, s *leafSet) {
	t.Helper()
	if len(s.first) != len(s.chunks) {
		t.Fatalf("partition %d: %d chunks, %d first prefixes", pi, len(s.chunks), len(s.first))
	}
	n := 0
	var prev []byte
	for c, ch := range s.chunks {
		if len(ch.ls) == 0 || len(ch.ls) > leafChunkMax || len(ch.pfx) != len(ch.ls) {
			t.Fatalf("partition %d: chunk %d has %d leaves, %d prefixes (max %d)", pi, c, len(ch.ls), len(ch.pfx), leafChunkMax)
		}
		if s.first[c] != ch.pfx[0] {
			t.Fatalf("partition %d: chunk %d first %x, want %x", pi, c, s.first[c], ch.pfx[0])
		}
		for k, l := range ch.ls {
			if ch.pfx[k] != keyPrefix(l.start) {
				t.Fatalf("partition %d: chunk %d leaf %d: prefix %x of %q", pi, c, k, ch.pfx[k], l.start)
			}
			if n > 0 && bytes.Compare(prev, l.start) >= 0 {
				t.Fatalf("partition %d: leaf %d %q after %q", pi, n, l.start, prev)
			}
			prev = l.start
			n++
		}
	}
	if n != s.n {
		t.Fatalf("partition %d: %d leaves, n = %d", pi, n, s.n)
	}
	// Every leaf the next checkpoint must act on (write it, raise or
	// lower its pd) is in its set, and the set holds members only.
	for _, ch := range s.chunks {
		for _, l := range ch.ls {
			if _, ok := s.attn[l]; (l.changed || l.dirty != l.pd) && !ok {
				t.Fatalf("partition %d: leaf %q (changed %t, dirty %t, pd %t) is not in the checkpoint's set", pi, l.start, l.changed, l.dirty, l.pd)
			}
		}
	}
	for l := range s.attn {
		if !s.isMember(l) {
			t.Fatalf("partition %d: the checkpoint's set holds a removed leaf %q", pi, l.start)
		}
	}
}

// TestMarkerCoversMergedLeaf is the case TestModel found with seed
// 1796281762343249128: a leaf merged in memory (its boundary key deleted,
// then recomputed) spans two persisted leaves until the next checkpoint. A
// write to one half used to write a marker at its key (a DeleteRange: from
// its start), covering that persisted leaf only, and raise the merged
// leaf's persisted-dirty flag, so a later write to the other half wrote
// none; after a crash the other half loaded clean with a stale sum.
// Markers now cover the whole leaf.
func TestMarkerCoversMergedLeaf(t *testing.T) {
	params := Params{LeafSize: 4, Seed: 7}.EnsureDefaults()
	// In key order: boundary, plain, boundary, plain, boundary.
	var seq [][]byte
	for i := 0; len(seq) < 5 && i < 100000; i++ {
		k := []byte(fmt.Sprintf("k%05d", i))
		if params.IsBoundary(k) == (len(seq)%2 == 0) {
			seq = append(seq, k)
		}
	}
	if len(seq) < 5 {
		t.Fatalf("no keys for the scenario: %q", seq)
	}
	b1, a1, b2, a2, b3 := seq[0], seq[1], seq[2], seq[3], seq[4]
	for _, mark := range []string{"set", "delete range"} {
		t.Run(mark, func(t *testing.T) {
			h := openHarness(t, vfs.NewCrashableMem(), Options{Params: params})
			defer func() { h.close() }()
			ctx := context.Background()
			set := func(k []byte, v string) {
				h.model[string(k)] = []byte(v)
				h.commit(func(b *hooks.Batch) error { return b.Set(k, []byte(v)) }, false)
			}
			for _, k := range [][]byte{b1, a1, b2, a2, b3} {
				set(k, "v1")
			}
			// Recompute (both leaves clean), then persist [b1, b2) and
			// [b2, b3) clean.
			h.verifyClean()
			if err := h.tree.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			// Delete the boundary b2; the recompute merges [b1, b3) in
			// memory.
			delete(h.model, string(b2))
			h.commit(func(b *hooks.Batch) error { return b.Delete(b2) }, false)
			h.verifyClean()
			h.tree.mu.Lock()
			p := h.tree.mu.parts[0]
			merged := p.leafEnd(p.floor(b1))
			h.tree.mu.Unlock()
			if !bytes.Equal(merged, b3) {
				t.Fatalf("scenario not reached: the leaf at %s ends at %s, want %s", b1, merged, b3)
			}
			// A write to the second half marks the merged leaf; the next
			// write, to the first half, finds it covered and writes no
			// marker.
			if mark == "set" {
				set(a2, "v2")
			} else {
				delete(h.model, string(a2))
				h.commit(func(b *hooks.Batch) error { return b.DeleteRange(a2, b3) }, false)
			}
			set(a1, "v2")
			// No checkpoint: recovery from [b1, b2), [b2, b3) and the
			// marker.
			h.close()
			h.open()
			h.checkCleanLeaves(0)
			h.verifyClean()
			got, err := h.tree.RangeFingerprint(ctx, 0, Range{})
			if err != nil {
				t.Fatal(err)
			}
			if want := h.modelFingerprint([]byte{}, nil); got != want {
				t.Fatalf("root after recovery: %d records, want %d (sums differ: %v)", got.Count, want.Count, got.Sum != want.Sum)
			}
		})
	}
}
