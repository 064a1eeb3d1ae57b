package merkle

import (
	"bytes"
	"encoding/binary"
	"slices"
)

// leafSet is the sorted set of a partition's leaves. Lookups binary-search a
// dense array of 8-byte key prefixes (cache friendly: the write path does one
// lookup per key) and compare full keys only on equal prefixes. Inserts are
// O(n) memmoves of two pointer-sized arrays; bulk changes (recompute) splice
// once.
type leafSet struct {
	pfx []uint64
	ls  []*leaf
	// total is the sum of every leaf's fp (a dirty leaf's possibly stale
	// one) and dirty the number of dirty leaves: with no dirty leaf,
	// total is the partition's fingerprint, without a walk over the
	// leaves. Every change of a member's fp or dirty flag goes through
	// the set (the methods below, addFP, markDirty).
	total Fingerprint
	dirty int
	// version counts the changes of the set: of its members, their
	// fingerprints and dirty flags (Tree.Leaves, Tree.SnapshotIfUnchanged).
	version uint64
}

// account adds (sign 1) or removes (sign -1) l's fp and dirty flag.
func (s *leafSet) account(l *leaf, sign int) {
	s.version++
	if sign > 0 {
		s.total = s.total.Add(l.fp)
		if l.dirty {
			s.dirty++
		}
		return
	}
	s.total = s.total.Sub(l.fp)
	if l.dirty {
		s.dirty--
	}
}

// addFP adds fp to member l's fingerprint.
func (s *leafSet) addFP(l *leaf, fp Fingerprint) {
	l.fp = l.fp.Add(fp)
	s.total = s.total.Add(fp)
	s.version++
}

// markDirty marks member l dirty.
func (s *leafSet) markDirty(l *leaf) {
	if !l.dirty {
		l.dirty = true
		s.dirty++
		s.version++
	}
}

func keyPrefix(k []byte) uint64 {
	if len(k) >= 8 {
		return binary.BigEndian.Uint64(k)
	}
	var b [8]byte
	copy(b[:], k)
	return binary.BigEndian.Uint64(b[:])
}

// search returns the index of the first leaf whose start is >= key.
func (s *leafSet) search(key []byte) int {
	kp := keyPrefix(key)
	lo, hi := 0, len(s.ls)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		p := s.pfx[m]
		less := p < kp || (p == kp && bytes.Compare(s.ls[m].start, key) < 0)
		if less {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// floor returns the leaf with the largest start <= key, or nil.
func (s *leafSet) floor(key []byte) *leaf {
	l, _ := s.floorExact(key)
	return l
}

// floorExact returns the leaf with the largest start <= key (nil if none)
// and whether its start equals key. It reads a leaf's start only when its
// 8-byte prefix equals key's: on the write path, where a key rarely starts
// a leaf, that saves a pointer chase into a cold leaf per write.
func (s *leafSet) floorExact(key []byte) (*leaf, bool) {
	i := s.search(key)
	if i < len(s.ls) && s.pfx[i] == keyPrefix(key) && bytes.Equal(s.ls[i].start, key) {
		return s.ls[i], true
	}
	if i == 0 {
		return nil, false
	}
	return s.ls[i-1], false
}

// Len is the number of leaves.
func (s *leafSet) Len() int { return len(s.ls) }

// Min returns the first leaf.
func (s *leafSet) Min() (*leaf, bool) {
	if len(s.ls) == 0 {
		return nil, false
	}
	return s.ls[0], true
}

// Get returns the leaf starting at l.start.
func (s *leafSet) Get(l *leaf) (*leaf, bool) {
	i := s.search(l.start)
	if i < len(s.ls) && bytes.Equal(s.ls[i].start, l.start) {
		return s.ls[i], true
	}
	return nil, false
}

// ReplaceOrInsert adds l, replacing a leaf with the same start.
func (s *leafSet) ReplaceOrInsert(l *leaf) {
	s.account(l, 1)
	n := len(s.ls)
	if n == 0 || bytes.Compare(s.ls[n-1].start, l.start) < 0 {
		s.ls = append(s.ls, l)
		s.pfx = append(s.pfx, keyPrefix(l.start))
		return
	}
	i := s.search(l.start)
	if i < n && bytes.Equal(s.ls[i].start, l.start) {
		s.account(s.ls[i], -1)
		s.ls[i] = l
		return
	}
	s.ls = slices.Insert(s.ls, i, l)
	s.pfx = slices.Insert(s.pfx, i, keyPrefix(l.start))
}

// Delete removes the leaf starting at l.start.
func (s *leafSet) Delete(l *leaf) {
	i := s.search(l.start)
	if i < len(s.ls) && bytes.Equal(s.ls[i].start, l.start) {
		s.account(s.ls[i], -1)
		s.ls = slices.Delete(s.ls, i, i+1)
		s.pfx = slices.Delete(s.pfx, i, i+1)
	}
}

// splice replaces the leaves at [i, j) with repl (sorted, inside the gap).
func (s *leafSet) splice(i, j int, repl []*leaf) {
	for _, l := range s.ls[i:j] {
		s.account(l, -1)
	}
	for _, l := range repl {
		s.account(l, 1)
	}
	pfx := make([]uint64, len(repl))
	for k, l := range repl {
		pfx[k] = keyPrefix(l.start)
	}
	s.ls = slices.Replace(s.ls, i, j, repl...)
	s.pfx = slices.Replace(s.pfx, i, j, pfx...)
}

// Ascend calls fn on every leaf in order until fn returns false.
func (s *leafSet) Ascend(fn func(*leaf) bool) {
	for _, l := range s.ls {
		if !fn(l) {
			return
		}
	}
}

// AscendGreaterOrEqual calls fn on every leaf whose start is >= pivot's,
// in order, until fn returns false.
func (s *leafSet) AscendGreaterOrEqual(pivot *leaf, fn func(*leaf) bool) {
	for i := s.search(pivot.start); i < len(s.ls); i++ {
		if !fn(s.ls[i]) {
			return
		}
	}
}
