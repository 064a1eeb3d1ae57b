package engine

import (
	"bytes"
	"slices"
	"unsafe"

	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile"
)

// The ID index of a cached partition maps the sketch ID of every cached
// digest to the start key of the leaf holding it, so FetchByHash finds the
// leaves of the IDs it is asked for in O(IDs) instead of walking every
// cached digest (1e6 digests: a few milliseconds a call, the last part of a
// warm session that grew with the partition). The view of a symbol stream
// builds it, in the background, if the cache's budget has room for it
// (idEntryBytes an ID: a partition of a million records needs 40 MB of the
// default 64 MiB), and later views move only the IDs of the records that
// changed, as they do with the symbol prefix.
//
// The index answers for one view: the one that last updated it (idsView);
// FetchByHash with any other view walks. An ID held twice (by two leaves,
// or twice by one: 48-bit IDs, about n²/2⁴⁹ such pairs in a partition of n
// records) is ambiguous, and a request for it walks too.

// minIndexedRecords is the smallest partition given an ID index: below it,
// the walk costs less than ~0.1 ms a fetch, and the index's memory and
// build are not worth it.
const minIndexedRecords = 1 << 16

// idEntryBytes is the memory an index entry is counted for (a Go map
// entry with its share of empty slots).
const idEntryBytes = 40

// leafIDs are digests of the records of the leaf starting at start.
type leafIDs struct {
	start   []byte
	digests []uint64
}

// startString returns start as a string sharing its bytes (leaf start
// keys are never modified).
func startString(start []byte) string {
	return unsafe.String(unsafe.SliceData(start), len(start))
}

// updateIDs moves the index (if built) by the digests gone from and come to
// leaves, and makes it the index of the view whose digests are view. Called
// with cp.mu held.
func (cp *cachedPart) updateIDs(gone, came []leafIDs, view [][]uint64) {
	if cp.ids == nil {
		return
	}
	if moved := count2(gone) + count2(came); moved > len(cp.ids)/2 {
		// Most of the partition changed: moving every ID costs more
		// than the background rebuild the next stream starts.
		cp.bytes -= cp.idsBytes
		cp.ids, cp.amb, cp.idsView, cp.idsBytes = nil, nil, nil, 0
		return
	}
	for _, g := range gone {
		start := startString(g.start)
		for _, d := range g.digests {
			id := reconcile.SketchID(d)
			if s, ok := cp.ids[id]; ok && s == start {
				delete(cp.ids, id)
			}
		}
	}
	for _, c := range came {
		cp.addIDs(c)
	}
	cp.idsView = view
	cp.bytes += (len(cp.ids)+len(cp.amb))*idEntryBytes - cp.idsBytes
	cp.idsBytes = (len(cp.ids) + len(cp.amb)) * idEntryBytes
}

// addIDs indexes the digests of l.
func (cp *cachedPart) addIDs(l leafIDs) {
	start := startString(l.start)
	for _, d := range l.digests {
		id := reconcile.SketchID(d)
		if _, ok := cp.ids[id]; ok {
			if cp.amb == nil {
				cp.amb = map[uint64]struct{}{}
			}
			cp.amb[id] = struct{}{}
			continue
		}
		cp.ids[id] = start
	}
}

// buildIDs starts building the ID index of partition part in the
// background if it has none and the cache's budget has room for it. Called
// with cp.mu held, by the views of symbol streams, after cp.viewDigests was
// set: a repair loop's later sessions find the index up to date. The build
// (a map insert a record: ~0.3 s for a million) runs without cp.mu, off the
// session's path (its FetchByHash walks meanwhile), and is installed only
// if no view changed the cached leaves in the meantime.
func (c *digestCache) buildIDs(part uint32, cp *cachedPart, count uint64) {
	if cp.ids != nil || cp.building || c.max <= 0 || count < c.minIndexed {
		return
	}
	c.mu.Lock()
	room := c.parts[part] == cp && c.bytes-cp.accounted+cp.bytes+int(count)*idEntryBytes <= c.max
	c.mu.Unlock()
	if !room {
		return
	}
	cp.building = true
	leaves, view := cp.leaves, cp.viewDigests
	c.builds.Add(1)
	go func() {
		defer c.builds.Done()
		idx := &cachedPart{ids: make(map[uint64]string, count)}
		for _, l := range leaves {
			idx.addIDs(leafIDs{l.start, l.digests})
		}
		cp.mu.Lock()
		defer cp.mu.Unlock()
		cp.building = false
		if cp.ids != nil || len(view) == 0 || len(cp.viewDigests) != len(view) || &cp.viewDigests[0] != &view[0] {
			return // the leaves changed meanwhile: the next stream tries again
		}
		cp.ids, cp.amb, cp.idsView = idx.ids, idx.amb, view
		cp.idsBytes = (len(cp.ids) + len(cp.amb)) * idEntryBytes
		cp.bytes += cp.idsBytes
		c.settle(part, cp)
	}()
}

// indexedHits finds the wanted IDs among v's digests through the ID index
// of v's partition. It reports false if the walk must answer instead: no
// index, an index of another view, or an ambiguous ID.
func (e *Engine) indexedHits(v *partView, want map[uint64]struct{}) ([]leafHits, bool) {
	cp := v.cp
	if cp == nil {
		return nil, false
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.ids == nil || len(v.digests) == 0 || len(cp.idsView) != len(v.digests) || &cp.idsView[0] != &v.digests[0] {
		return nil, false
	}
	byLeaf := map[int][]int{}
	for id := range want {
		if _, ok := cp.amb[id]; ok {
			return nil, false
		}
		start, ok := cp.ids[id]
		if !ok {
			continue // not here
		}
		i, ok := slices.BinarySearchFunc(v.leaves, start, func(ls merkle.LeafState, s string) int {
			return bytes.Compare(ls.Range.Start, unsafe.Slice(unsafe.StringData(s), len(s)))
		})
		if !ok {
			return nil, false // cannot happen: the index is the view's
		}
		n := len(byLeaf[i])
		for j, d := range v.digests[i] {
			if reconcile.SketchID(d) == id {
				byLeaf[i] = append(byLeaf[i], j)
			}
		}
		if len(byLeaf[i]) == n {
			return nil, false // cannot happen either
		}
	}
	out := make([]leafHits, 0, len(byLeaf))
	for i, pos := range byLeaf {
		slices.Sort(pos)
		out = append(out, leafHits{leaf: i, pos: pos})
	}
	slices.SortFunc(out, func(a, b leafHits) int { return a.leaf - b.leaf })
	e.digests.indexed.Add(1)
	return out, true
}

// count2 returns the number of digests of ls.
func count2(ls []leafIDs) int {
	n := 0
	for _, l := range ls {
		n += len(l.digests)
	}
	return n
}
