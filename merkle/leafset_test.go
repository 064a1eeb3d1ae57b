package merkle

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestLeafSetModel runs random inserts, replacements, deletes and splices
// on a leaf set with small chunks against a sorted slice, checking every
// query (floorExact, search, at, next, Get, Min, Len, the ascents) and the
// set's structure after each step. Keys share 8-byte prefixes often, so the
// full-key comparisons behind equal prefixes run too.
func TestLeafSetModel(t *testing.T) {
	seed := testSeed(t)
	defer func(n int) { leafChunkMax = n }(leafChunkMax)
	for _, max := range []int{1, 2, 3, 8} {
		t.Run(fmt.Sprintf("chunk=%d", max), func(t *testing.T) {
			leafChunkMax = max
			rng := rand.New(rand.NewPCG(seed, uint64(max)))
			s := &leafSet{}
			var model []*leaf
			key := func() []byte {
				// "prefix0" + one byte: 8-byte prefixes collide a lot.
				return fmt.Appendf(nil, "prefix%d%c", rng.IntN(3), 'a'+rng.IntN(20))
			}
			find := func(k []byte) int {
				i, _ := slices.BinarySearchFunc(model, k, func(l *leaf, k []byte) int { return bytes.Compare(l.start, k) })
				return i
			}
			for step := 0; step < 3000; step++ {
				switch x := rng.IntN(10); {
				case x < 5:
					l := &leaf{start: key()}
					s.ReplaceOrInsert(l)
					i := find(l.start)
					if i < len(model) && bytes.Equal(model[i].start, l.start) {
						model[i] = l
					} else {
						model = slices.Insert(model, i, l)
					}
				case x < 7:
					k := key()
					s.Delete(&leaf{start: k})
					if i := find(k); i < len(model) && bytes.Equal(model[i].start, k) {
						model = slices.Delete(model, i, i+1)
					}
				default:
					// Replace [i, j) by leaves strictly between the
					// neighbours, as a recompute does.
					i := rng.IntN(len(model) + 1)
					j := i + rng.IntN(min(len(model)-i, 6)+1)
					var lo, hi []byte
					if i > 0 {
						lo = model[i-1].start
					}
					if j < len(model) {
						hi = model[j].start
					}
					var repl []*leaf
					for range rng.IntN(5) {
						k := key()
						if (lo != nil && bytes.Compare(k, lo) <= 0) || (hi != nil && bytes.Compare(k, hi) >= 0) {
							continue
						}
						if n := len(repl); n > 0 && bytes.Compare(k, repl[n-1].start) <= 0 {
							continue
						}
						repl = append(repl, &leaf{start: k})
					}
					s.splice(i, j, repl)
					model = slices.Replace(model, i, j, repl...)
				}
				checkLeafSet(t, 0, s)
				if s.Len() != len(model) {
					t.Fatalf("step %d: Len %d, want %d", step, s.Len(), len(model))
				}
				for i, l := range model {
					if s.at(i) != l {
						t.Fatalf("step %d: at(%d) = %q, want %q", step, i, s.at(i).start, l.start)
					}
				}
				var got []*leaf
				s.Ascend(func(l *leaf) bool { got = append(got, l); return true })
				if !slices.Equal(got, model) {
					t.Fatalf("step %d: Ascend gives %d leaves, model %d", step, len(got), len(model))
				}
				if m, ok := s.Min(); ok != (len(model) > 0) || (ok && m != model[0]) {
					t.Fatalf("step %d: Min wrong", step)
				}
				k := key()
				i := find(k)
				if got := s.search(k); got != i {
					t.Fatalf("step %d: search(%q) = %d, want %d", step, k, got, i)
				}
				exact := i < len(model) && bytes.Equal(model[i].start, k)
				var floor *leaf
				switch {
				case exact:
					floor = model[i]
				case i > 0:
					floor = model[i-1]
				}
				if l, ex := s.floorExact(k); l != floor || ex != exact {
					t.Fatalf("step %d: floorExact(%q) wrong", step, k)
				}
				if l, ok := s.Get(&leaf{start: k}); ok != exact || (ok && l != model[i]) {
					t.Fatalf("step %d: Get(%q) wrong", step, k)
				}
				if exact {
					var next *leaf
					if i+1 < len(model) {
						next = model[i+1]
					}
					if s.next(model[i]) != next {
						t.Fatalf("step %d: next(%q) wrong", step, k)
					}
				}
				var rest []*leaf
				s.AscendGreaterOrEqual(&leaf{start: k}, func(l *leaf) bool { rest = append(rest, l); return len(rest) < 3 })
				if want := model[i:min(len(model), i+3)]; !slices.Equal(rest, want) {
					t.Fatalf("step %d: AscendGreaterOrEqual(%q) gives %d leaves, want %d", step, k, len(rest), len(want))
				}
				a := rng.IntN(len(model) + 1)
				b := a + rng.IntN(len(model)-a+1)
				var span []*leaf
				s.ascendRange(a, b, func(l *leaf) bool { span = append(span, l); return true })
				if !slices.Equal(span, model[a:b]) {
					t.Fatalf("step %d: ascendRange(%d, %d) gives %d leaves, want %d", step, a, b, len(span), b-a)
				}
			}
		})
	}
}

// Index-based views of a leaf set, for the tests (O(leaves) each; the set
// itself addresses leaves by position).

func (s *leafSet) posOf(i int) lpos {
	if i >= s.n {
		return s.endPos()
	}
	for c, ch := range s.chunks {
		if i < len(ch.ls) {
			return lpos{c, i}
		}
		i -= len(ch.ls)
	}
	return s.endPos()
}

func (s *leafSet) search(key []byte) int {
	p := s.searchPos(key)
	n := 0
	for c := 0; c < p.c; c++ {
		n += len(s.chunks[c].ls)
	}
	return n + p.k
}

func (s *leafSet) at(i int) *leaf {
	l, _ := s.leafAtPos(s.posOf(i))
	return l
}

func (s *leafSet) splice(i, j int, repl []*leaf) { s.splicePos(s.posOf(i), s.posOf(j), repl) }

func (s *leafSet) ascendRange(i, j int, fn func(*leaf) bool) {
	s.ascendPos(s.posOf(i), s.posOf(j), fn)
}
