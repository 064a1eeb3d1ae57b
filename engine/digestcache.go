package engine

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile"
)

// The digest cache: the short digests of the records of recently reconciled
// partitions, kept per tree leaf and keyed by the leaf's fingerprint.
//
// A symbol stream (OpenSymbols) encodes every record of a partition, and
// FetchByHash looks records up by sketch ID: without the cache both scan the
// whole partition and BLAKE3 every record, so a session's time grows with
// the partition's size even when little differs. With it, a session rescans
// only the leaves whose fingerprints changed since the cache last saw them
// (the tree knows which), OpenSymbols costs a walk over 8 bytes a record in
// memory, and FetchByHash reads only the leaves that hold a requested ID.
// The first session of a partition fills the cache; a repair loop's later
// sessions find it warm.
//
// Correctness does not depend on the cache: a leaf's cached digests are used
// only while the tree reports the leaf clean with the fingerprint (a 256-bit
// sum and a count) of the records they were computed from.

// DefaultDigestCacheBytes is the default of Options.DigestCacheBytes.
const DefaultDigestCacheBytes = 64 << 20

// digestCache's mu guards the partition map, the byte accounting and the
// LRU ticks; each partition's own mu its leaves and prefix, so sessions of
// different partitions scan in parallel and sessions of one partition take
// turns.
type digestCache struct {
	// scanned and handed count the leaves views scanned and those whose
	// digests the tree's recompute handed over (tests, diagnostics).
	scanned, handed atomic.Uint64
	// reused counts the views that were the last one again; indexed the
	// FetchByHash calls answered through an ID index.
	reused, indexed atomic.Uint64
	// builds counts the ID index builds running (Close waits for them).
	builds sync.WaitGroup
	// minIndexed is the smallest partition given an ID index
	// (minIndexedRecords; tests lower it).
	minIndexed uint64

	mu    sync.Mutex
	max   int // bytes; <= 0 disables the cache
	bytes int
	tick  uint64
	parts map[uint32]*cachedPart
}

type cachedPart struct {
	mu sync.Mutex
	// used and accounted (the bytes counted in digestCache.bytes) are
	// guarded by digestCache.mu; the rest by mu.
	used      uint64
	accounted int
	// leaves are the cached leaves in key order (a merge with the tree's
	// leaves, which are in key order too, finds each one).
	leaves []*cachedLeaf
	// prefix is the first symbols of the stream of every cached digest,
	// kept up to date leaf by leaf (reconcile.SymbolPrefix).
	prefix *reconcile.SymbolPrefix
	bytes  int
	// pending (guarded by pendMu, a lock of its own so the tree's
	// recompute never waits for a view's scan) holds the leaves the tree
	// recomputed since the last view, with their digests
	// (merkle.Options.LeafObserver): the next view takes them instead of
	// scanning those leaves a second time.
	pendMu  sync.Mutex
	pending map[string]*cachedLeaf
	// last is the last view built, if all its leaves were clean, without
	// its snapshot; lastBytes its share of bytes. A view asked for while
	// the tree's leaves are still at last.version is last again, with a
	// new snapshot (reuseView): the FetchByHash after a session's
	// OpenSymbols costs no walk over the tree's leaves.
	last      *partView
	lastBytes int
	// ids indexes the cached digests by sketch ID for FetchByHash (nil
	// until the first FetchByHash builds it; see digestindex.go).
	ids      map[uint64]string
	amb      map[uint64]struct{}
	idsView  [][]uint64
	idsBytes int
	building bool // an index is being built (buildIDs)
	// viewDigests are the digests of the last view built: cp.leaves'.
	viewDigests [][]uint64
}

// lastViewLeafBytes is a cached view's memory a leaf (its LeafState and
// digest slice header).
const lastViewLeafBytes = int(unsafe.Sizeof(merkle.LeafState{})) + 24

// reuseView returns partition part's last view, with a new snapshot, if the
// tree's leaves have not changed since it was built (and it has the symbol
// prefix, if withPrefix), else nil.
func (e *Engine) reuseView(cp *cachedPart, part uint32, withPrefix bool) *partView {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	lv := cp.last
	if lv == nil || (withPrefix && cp.prefix == nil) {
		return nil
	}
	snap, ok := e.tree.SnapshotIfUnchanged(int(part), lv.version)
	if !ok {
		return nil
	}
	v := &partView{leaves: lv.leaves, digests: lv.digests, count: lv.count, snap: snap, cp: cp}
	if withPrefix {
		v.prefix = cp.prefix.Symbols()
	}
	c := &e.digests
	c.reused.Add(1)
	c.mu.Lock()
	c.tick++
	cp.used = c.tick
	c.mu.Unlock()
	return v
}

// maxPendingLeaves bounds a partition's pending leaves (64 Ki digests of
// leaves of the default size); past it, the view scans the leaves again.
const maxPendingLeaves = 1024

// observe is the tree's merkle.Options.LeafObserver: it keeps the digests of
// a leaf the tree recomputed, for the next view of its partition, if that
// partition is cached.
func (c *digestCache) observe(part int, start []byte, fp merkle.Fingerprint, digests []uint64) {
	c.mu.Lock()
	cp := c.parts[uint32(part)]
	c.mu.Unlock()
	if cp == nil {
		return
	}
	cp.pendMu.Lock()
	defer cp.pendMu.Unlock()
	if cp.pending == nil {
		cp.pending = map[string]*cachedLeaf{}
	}
	if len(cp.pending) >= maxPendingLeaves {
		return
	}
	cp.pending[string(start)] = &cachedLeaf{start: start, fp: fp, digests: digests}
}

// takePending returns the pending leaves and forgets them.
func (cp *cachedPart) takePending() map[string]*cachedLeaf {
	cp.pendMu.Lock()
	defer cp.pendMu.Unlock()
	p := cp.pending
	cp.pending = nil
	return p
}

type cachedLeaf struct {
	// start is the tree leaf's own start key (the tree never modifies
	// one), so the merge with the tree's leaves mostly compares pointers.
	start   []byte
	fp      merkle.Fingerprint
	digests []uint64 // never modified once cached
}

const (
	cachedLeafOverhead = 120 // map entry, key, struct, slice header
	symbolCellBytes    = 16  // a reconcile.SketchCell in memory
	// The symbol prefix of a partition of n records has
	// clamp(nextPow2(n/8), minPrefixSymbols, maxPrefixSymbols) symbols
	// (at most 2 bytes a record, 512 KiB): a differing key costs ~2.3
	// symbols (1.4–1.6 a differing entry, 1–2 entries a key), so streams
	// of up to ~5% of the records, or ~14 000 differing keys, are served
	// without encoding every record (beyond it, the stream encodes from
	// the cached digests). Keeping it up to date costs ~2·ln(n/16)+1
	// symbol updates a changed record.
	minPrefixSymbols = 256
	maxPrefixSymbols = 1 << 15
)

func prefixLen(n uint64) int {
	l := minPrefixSymbols
	for l < maxPrefixSymbols && uint64(l) < n/8 {
		l *= 2
	}
	return l
}

// partView is one partition's leaves with their digests, the symbol prefix
// of those digests, and the snapshot they agree with.
type partView struct {
	leaves  []merkle.LeafState
	digests [][]uint64
	prefix  []reconcile.SketchCell
	count   uint64
	snap    *pebble.Snapshot
	version uint64 // of the tree's leaves (cachedPart.last only)
	cp      *cachedPart
}

func (v *partView) close() { v.snap.Close() }

// flat returns all the view's digests in one new slice.
func (v *partView) flat() []uint64 {
	out := make([]uint64, 0, v.count)
	for _, ds := range v.digests {
		out = append(out, ds...)
	}
	return out
}

// partitionView returns the leaves of partition part with their digests,
// from the cache where the tree says a leaf is unchanged, from a scan of the
// snapshot otherwise (and then caches them), and, when withPrefix, the
// symbol prefix of the partition. With the cache disabled it scans
// everything.
func (e *Engine) partitionView(ctx context.Context, part uint32, withPrefix bool) (*partView, error) {
	c := &e.digests
	c.mu.Lock()
	cp := c.parts[part]
	if cp == nil || c.max <= 0 {
		cp = &cachedPart{}
		if c.max > 0 {
			if c.parts == nil {
				c.parts = map[uint32]*cachedPart{}
			}
			c.parts[part] = cp
		}
	}
	c.mu.Unlock()
	if v := e.reuseView(cp, part, withPrefix); v != nil {
		return v, nil
	}
	leaves, snap, version, err := e.tree.Leaves(ctx, int(part))
	if err != nil {
		return nil, wrapTreeErr(err)
	}
	v := &partView{leaves: leaves, digests: make([][]uint64, len(leaves)), snap: snap}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.last = nil
	cp.bytes -= cp.lastBytes
	cp.lastBytes = 0
	allClean := true
	pending := cp.takePending()
	var sc leafScanner
	defer sc.close()
	var added, removed [][]uint64
	var idsGone, idsCame []leafIDs // for the ID index
	next := make([]*cachedLeaf, len(leaves))
	j := 0 // the first cached leaf not before leaves[i]
	for i, l := range leaves {
		var cl *cachedLeaf
		for ; j < len(cp.leaves); j++ {
			if sameSlice(cp.leaves[j].start, l.Range.Start) {
				// The tree's own start key (cached leaves keep it):
				// no comparison.
				cl = cp.leaves[j]
				j++
				break
			}
			c := bytes.Compare(cp.leaves[j].start, l.Range.Start)
			if c > 0 {
				break
			}
			if c == 0 {
				cl = cp.leaves[j]
				j++
				break
			}
			// A leaf gone (merged or moved): drop it.
			idsGone = append(idsGone, leafIDs{cp.leaves[j].start, cp.leaves[j].digests})
			removed = append(removed, cp.leaves[j].digests)
			cp.bytes -= cachedLeafOverhead + 8*len(cp.leaves[j].digests)
		}
		if cl == nil || !l.Clean || cl.fp != l.Fingerprint {
			// The tree's recompute may have handed over the leaf's
			// digests; else scan the leaf. Its digests are kept under
			// the fingerprint of what was scanned (the tree's, for a
			// clean leaf; for a leaf written to since the recompute,
			// the one the tree will report if nothing else changes).
			var ds []uint64
			var fp merkle.Fingerprint
			var err error
			if pl := pending[string(l.Range.Start)]; pl != nil && l.Clean && pl.fp == l.Fingerprint {
				ds, fp = pl.digests, pl.fp
				c.handed.Add(1)
			} else {
				ds, fp, err = sc.scan(ctx, snap, l.Range)
				c.scanned.Add(1)
			}
			if err != nil {
				snap.Close()
				// Keep the cache consistent: forget the partition.
				cp.leaves, cp.prefix, cp.ids, cp.amb, cp.idsView, cp.viewDigests, cp.bytes = nil, nil, nil, nil, nil, nil, 0
				c.mu.Lock()
				if c.parts[part] == cp {
					c.bytes -= cp.accounted
					delete(c.parts, part)
				}
				c.mu.Unlock()
				return nil, err
			}
			if cl != nil {
				// Only the records that changed move the prefix
				// and the ID index (a write changes 1 of the leaf's
				// ~64).
				gone, came := digestDiff(cl.digests, ds)
				removed, added = append(removed, gone), append(added, came)
				idsGone = append(idsGone, leafIDs{l.Range.Start, gone})
				idsCame = append(idsCame, leafIDs{l.Range.Start, came})
				cp.bytes -= cachedLeafOverhead + 8*len(cl.digests)
			} else {
				added = append(added, ds)
				idsCame = append(idsCame, leafIDs{l.Range.Start, ds})
			}
			cl = &cachedLeaf{start: l.Range.Start, fp: fp, digests: ds}
			cp.bytes += cachedLeafOverhead + 8*len(ds)
		}
		allClean = allClean && l.Clean
		next[i] = cl
		v.digests[i] = cl.digests
		v.count += uint64(len(cl.digests))
	}
	for ; j < len(cp.leaves); j++ {
		idsGone = append(idsGone, leafIDs{cp.leaves[j].start, cp.leaves[j].digests})
		removed = append(removed, cp.leaves[j].digests)
		cp.bytes -= cachedLeafOverhead + 8*len(cp.leaves[j].digests)
	}
	cp.leaves = next
	cp.updateIDs(idsGone, idsCame, v.digests)
	if withPrefix || cp.prefix != nil {
		if cp.prefix != nil && cp.prefix.Count()+uint64(count(added)) != v.count+uint64(count(removed)) {
			// Cannot happen (the prefix holds every cached digest);
			// rebuild it rather than serve a wrong one.
			e.opts.Logger.Error("digest cache: symbol prefix out of step, rebuilding it", "partition", part)
			cp.bytes -= symbolCellBytes * cp.prefix.Len()
			cp.prefix = nil
		}
		if cp.prefix == nil || cp.prefix.Len() < prefixLen(v.count) {
			if cp.prefix != nil {
				cp.bytes -= symbolCellBytes * cp.prefix.Len()
			}
			cp.prefix = reconcile.NewSymbolPrefix(prefixLen(v.count))
			cp.bytes += symbolCellBytes * cp.prefix.Len()
			removed, added = nil, v.digests
		}
		for _, ds := range removed {
			for _, d := range ds {
				cp.prefix.Remove(d)
			}
		}
		for _, ds := range added {
			for _, d := range ds {
				cp.prefix.Add(d)
			}
		}
		v.prefix = cp.prefix.Symbols()
	}
	if allClean {
		// Until a leaf changes, the next view is this one.
		cp.last = &partView{leaves: v.leaves, digests: v.digests, count: v.count, version: version}
		cp.lastBytes = len(v.leaves) * lastViewLeafBytes
		cp.bytes += cp.lastBytes
	}
	cp.viewDigests = v.digests
	if withPrefix {
		c.buildIDs(part, cp, v.count)
	}
	v.cp = cp
	c.settle(part, cp)
	return v, nil
}

// settle counts cp's bytes (which cp.mu guards, held by the caller) in the
// cache's, marks partition part used, puts it back if it was evicted
// meanwhile, and evicts others to fit the budget.
func (c *digestCache) settle(part uint32, cp *cachedPart) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tick++
	cp.used = c.tick
	if old := c.parts[part]; old != cp {
		// Evicted (or replaced) while we worked: put it back.
		if old != nil {
			c.bytes -= old.accounted
		}
		c.parts[part] = cp
		cp.accounted = 0
	}
	c.bytes += cp.bytes - cp.accounted
	cp.accounted = cp.bytes
	c.evictLocked(part)
}

// sameSlice reports whether a and b are the same non-empty bytes in memory.
func sameSlice(a, b []byte) bool {
	return len(a) == len(b) && len(a) > 0 && unsafe.SliceData(a) == unsafe.SliceData(b)
}

// drop forgets partition part.
func (c *digestCache) drop(part uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.parts[part]; p != nil {
		c.bytes -= p.accounted
		delete(c.parts, part)
	}
}

// digestDiff returns the digests of old missing from new and those of new
// missing from old (as multisets).
func digestDiff(old, new []uint64) (gone, came []uint64) {
	a, b := slices.Clone(old), slices.Clone(new)
	slices.Sort(a)
	slices.Sort(b)
	for len(a) > 0 && len(b) > 0 {
		switch {
		case a[0] == b[0]:
			a, b = a[1:], b[1:]
		case a[0] < b[0]:
			gone, a = append(gone, a[0]), a[1:]
		default:
			came, b = append(came, b[0]), b[1:]
		}
	}
	return append(gone, a...), append(came, b...)
}

func count(dss [][]uint64) int {
	n := 0
	for _, ds := range dss {
		n += len(ds)
	}
	return n
}

// evictLocked drops least recently used partitions (never keep) until the
// cache fits its budget.
func (c *digestCache) evictLocked(keep uint32) {
	for c.bytes > c.max {
		var victim uint32
		var found bool
		var oldest uint64
		for id, p := range c.parts {
			if id != keep && (!found || p.used < oldest) {
				victim, oldest, found = id, p.used, true
			}
		}
		if !found {
			if c.bytes > c.max {
				// One partition alone exceeds the budget: do not
				// keep it.
				c.bytes -= c.parts[keep].accounted
				delete(c.parts, keep)
			}
			return
		}
		c.bytes -= c.parts[victim].accounted
		delete(c.parts, victim)
	}
}

// leafScanner scans leaves in key order with one iterator, seeking only
// over the leaves it skips.
type leafScanner struct {
	it      *merkle.UserIter
	valid   bool
	scratch []byte
}

func (s *leafScanner) close() {
	if s.it != nil {
		s.it.Close()
	}
}

// scan returns the short digests of the records of r (which follows every
// range scanned before) in snap, in key order, and their fingerprint.
func (s *leafScanner) scan(ctx context.Context, snap *pebble.Snapshot, r merkle.Range) ([]uint64, merkle.Fingerprint, error) {
	var fp merkle.Fingerprint
	if s.it == nil {
		it, err := merkle.NewUserIter(ctx, snap, nil, nil)
		if err != nil {
			return nil, fp, err
		}
		s.it = it
		if len(r.Start) == 0 {
			s.valid = it.First() // Pebble's invariants builds refuse SeekGE(nil)
		} else {
			s.valid = it.SeekGE(r.Start)
		}
	} else if s.valid && bytes.Compare(s.it.Key(), r.Start) < 0 {
		s.valid = s.it.SeekGE(r.Start)
	}
	var ds []uint64
	var d merkle.Digest
	for ; s.valid; s.valid = s.it.Next() {
		k := s.it.Key()
		if r.End != nil && bytes.Compare(k, r.End) >= 0 {
			break
		}
		v, err := s.it.ValueAndErr()
		if err != nil {
			return nil, fp, err
		}
		d, s.scratch = merkle.LeafDigest(s.scratch, k, v)
		fp.Sum = fp.Sum.Add(d)
		fp.Count++
		ds = append(ds, d.Short())
	}
	return ds, fp, s.it.Error()
}

// useDigestCache reports whether a request for ranges of partition part is
// answered from the digest cache: the cache is on and ranges is exactly the
// partition's range.
func (e *Engine) useDigestCache(part uint32, ranges []reconcile.KeyRange) bool {
	if e.digests.max <= 0 || len(ranges) != 1 {
		return false
	}
	start, end := e.tree.Partitioner().Bounds(int(part))
	return bytes.Equal(start, ranges[0].Start) && bytes.Equal(end, nilIfEmpty(ranges[0].End))
}

// fetchByHashCached answers FetchByHash over a whole partition from the
// cache: only the leaves holding a requested ID are read, found through the
// partition's ID index (digestindex.go) or, without one, a walk over every
// cached digest.
func (e *Engine) fetchByHashCached(ctx context.Context, part uint32, want map[uint64]struct{}) ([]reconcile.Entry, error) {
	v, err := e.partitionView(ctx, part, false)
	if err != nil {
		return nil, err
	}
	defer v.close()
	found, ok := e.indexedHits(v, want)
	if !ok {
		found = walkHits(v, want)
	}
	it, err := merkle.NewUserIter(ctx, v.snap, nil, nil)
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []reconcile.Entry
	var scratch []byte
	for _, lh := range found {
		i, hits := lh.leaf, lh.pos
		ds := v.digests[i]
		// The snapshot's records of the leaf are the cached digests'
		// records, in key order: step to the wanted positions, read and
		// hash only those (and check them).
		r := v.leaves[i].Range
		seek := func() bool {
			if len(r.Start) == 0 {
				return it.First() // Pebble's invariants builds refuse SeekGE(nil)
			}
			return it.SeekGE(r.Start)
		}
		pos, h, ok := 0, 0, true
		for valid := seek(); valid && h < len(hits); valid = it.Next() {
			if r.End != nil && bytes.Compare(it.Key(), r.End) >= 0 {
				break
			}
			if pos == hits[h] {
				val, err := it.ValueAndErr()
				if err != nil {
					return nil, err
				}
				var d merkle.Digest
				d, scratch = merkle.LeafDigest(scratch, it.Key(), val)
				if d.Short() != ds[pos] {
					ok = false
					break
				}
				out = append(out, reconcile.Entry{Key: append([]byte(nil), it.Key()...), Record: append([]byte(nil), val...)})
				h++
			}
			pos++
		}
		if err := it.Error(); err != nil {
			return nil, err
		}
		if !ok || h < len(hits) {
			// Cannot happen (the view's digests are the snapshot's).
			// Refuse rather than answer from a wrong cache, and forget
			// the partition so the next call rescans it.
			e.digests.drop(part)
			e.opts.Logger.Error("digest cache out of step with the data, dropped", "partition", part, "leaf_start", fmt.Sprintf("%q", r.Start))
			return nil, fmt.Errorf("engine: digest cache out of step with leaf %s of partition %d", r, part)
		}
	}
	return out, nil
}

// leafHits are the positions of wanted IDs among the digests of leaf
// number leaf of a view.
type leafHits struct {
	leaf int
	pos  []int
}

// walkHits finds the wanted IDs by a walk over every digest of v.
func walkHits(v *partView, want map[uint64]struct{}) []leafHits {
	// A 64 Ki-bit filter of the wanted IDs' low bits: the walk over every
	// cached digest then costs a bit test, the map lookup only on a hit.
	var filter [1 << 10]uint64
	for id := range want {
		filter[id>>6&(1<<10-1)] |= 1 << (id & 63)
	}
	var out []leafHits
	for i, ds := range v.digests {
		var hits []int
		for j, d := range ds {
			id := reconcile.SketchID(d)
			if filter[id>>6&(1<<10-1)]&(1<<(id&63)) == 0 {
				continue
			}
			if _, ok := want[id]; ok {
				hits = append(hits, j)
			}
		}
		if len(hits) > 0 {
			out = append(out, leafHits{leaf: i, pos: hits})
		}
	}
	return out
}
