package merkle

import (
	"bytes"
	"context"
	"fmt"
	"sort"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pebble-ae/pebble-ae/internal/keyspace"
)

// Range is a key range [Start, End) within one partition; a nil End means
// the partition's end.
type Range struct {
	Start, End []byte
}

// ChildFingerprint is one child range with its fingerprint.
type ChildFingerprint struct {
	Range       Range
	Fingerprint Fingerprint
}

// PartitionInfo describes one partition's tree.
type PartitionInfo struct {
	ID          int
	Start, End  []byte
	Ready       bool
	Leaves      int
	DirtyLeaves int
	// Records is the sum of the leaves' counts as last computed: exact
	// when no leaf is dirty, an estimate otherwise.
	Records uint64
}

// Partitions describes every partition.
func (t *Tree) Partitions() []PartitionInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]PartitionInfo, len(t.mu.parts))
	for i, p := range t.mu.parts {
		out[i] = PartitionInfo{ID: i, Start: p.start, End: p.end, Ready: !p.rebuilding, Leaves: p.leaves.Len(), DirtyLeaves: p.leaves.dirty, Records: p.leaves.total.Count}
	}
	return out
}

// checkRangeLocked validates [r.Start, r.End) against partition p and
// normalizes a nil End to the partition end.
func (t *Tree) checkRangeLocked(part int, r Range) (*partTree, Range, error) {
	p, err := t.part(part)
	if err != nil {
		return nil, r, err
	}
	if p.rebuilding {
		return nil, r, fmt.Errorf("%w: partition %d is being rebuilt", ErrNotReady, part)
	}
	if r.Start == nil {
		r.Start = p.start
	}
	if r.End == nil {
		r.End = p.end
	}
	if bytes.Compare(r.Start, p.start) < 0 || keyspace.CompareEnd(r.End, p.end) > 0 || (r.End != nil && bytes.Compare(r.Start, r.End) >= 0) {
		return nil, r, fmt.Errorf("%w: [%q, %q) in partition %d [%q, %q)", ErrInvalidRange, r.Start, r.End, part, p.start, p.end)
	}
	return p, r, nil
}

// RangeFingerprint returns the fingerprint of [r.Start, r.End) of partition
// part. Dirty leaves in the range are recomputed first; leaves still dirty
// (written meanwhile) and partial leaves at the range's edges are summed from
// a scan, so the answer is exact for some recent state of the data.
func (t *Tree) RangeFingerprint(ctx context.Context, part int, r Range) (Fingerprint, error) {
	fps, err := t.fingerprints(ctx, part, r, []Range{r})
	if err != nil {
		return Fingerprint{}, err
	}
	return fps[0], nil
}

// RangeFingerprints returns the fingerprints of ranges of partition part,
// as RangeFingerprint each. When the ranges are sorted and disjoint (a
// session's ranges are), the dirty leaves of their span are recomputed once,
// from one snapshot, instead of range by range: under writes that keep
// dirtying leaves, each recompute also rescans what the writes dirtied since
// the last.
func (t *Tree) RangeFingerprints(ctx context.Context, part int, ranges []Range) ([]Fingerprint, error) {
	sorted := len(ranges) > 1
	for i := 1; i < len(ranges) && sorted; i++ {
		prev := ranges[i-1]
		sorted = prev.End != nil && bytes.Compare(prev.End, ranges[i].Start) <= 0
	}
	if !sorted {
		out := make([]Fingerprint, len(ranges))
		for i, r := range ranges {
			fp, err := t.RangeFingerprint(ctx, part, r)
			if err != nil {
				return nil, err
			}
			out[i] = fp
		}
		return out, nil
	}
	for _, r := range ranges {
		if r.End != nil && bytes.Compare(r.Start, r.End) >= 0 {
			return nil, fmt.Errorf("%w: [%q, %q) in partition %d", ErrInvalidRange, r.Start, r.End, part)
		}
	}
	return t.fingerprints(ctx, part, Range{Start: ranges[0].Start, End: ranges[len(ranges)-1].End}, ranges)
}

// Children splits [r.Start, r.End) of partition part into at most fanout
// child ranges at content-defined boundaries (the leaf starts of lowest rank
// inside the range, so replicas holding the same keys choose the same
// boundaries) and returns each with its fingerprint.
func (t *Tree) Children(ctx context.Context, part int, r Range, fanout int) ([]ChildFingerprint, error) {
	if fanout < 2 {
		return nil, fmt.Errorf("%w: fanout %d < 2", ErrInvalidRange, fanout)
	}
	t.mu.Lock()
	p, r, err := t.checkRangeLocked(part, r)
	if err != nil {
		t.mu.Unlock()
		return nil, err
	}
	// The fanout-1 leaf starts strictly inside r with the lowest rank.
	var cands []*leaf
	first := p.floor(r.Start)
	p.leaves.AscendGreaterOrEqual(first, func(l *leaf) bool {
		if r.End != nil && bytes.Compare(l.start, r.End) >= 0 {
			return false
		}
		if bytes.Compare(l.start, r.Start) > 0 {
			cands = append(cands, l)
		}
		return true
	})
	if len(cands) > fanout-1 {
		sort.Slice(cands, func(i, j int) bool {
			if cands[i].rank != cands[j].rank {
				return cands[i].rank < cands[j].rank
			}
			return bytes.Compare(cands[i].start, cands[j].start) < 0
		})
		cands = cands[:fanout-1]
		sort.Slice(cands, func(i, j int) bool { return bytes.Compare(cands[i].start, cands[j].start) < 0 })
	}
	ranges := make([]Range, 0, len(cands)+1)
	lo := r.Start
	for _, c := range cands {
		ranges = append(ranges, Range{Start: lo, End: c.start})
		lo = c.start
	}
	ranges = append(ranges, Range{Start: lo, End: r.End})
	t.mu.Unlock()

	fps, err := t.fingerprints(ctx, part, r, ranges)
	if err != nil {
		return nil, err
	}
	out := make([]ChildFingerprint, len(ranges))
	for i := range ranges {
		out[i] = ChildFingerprint{Range: Range{Start: clone(ranges[i].Start), End: clone(ranges[i].End)}, Fingerprint: fps[i]}
	}
	return out, nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// spanRecomputeBudget is the recompute budget (keys) of a fingerprint
// query for outer, a span smaller than p's partition: twice its keys by the
// leaves' last counts, plus a few leaves' worth. A run of dirty leaves that
// starts inside the span goes on to its last dirty leaf
// (dirtySpansLocked), and under a write load that dirties every leaf that
// is the rest of the partition (measured: a session's 23-range chunk cost
// as much as the root under a flat-out writer). Leaves the budget leaves
// dirty inside the ranges are summed from a scan (fingerprints), so the
// answer is as exact; the whole partition's queries (the root, the entry
// index's symbol streams and fetches) recompute every dirty leaf, so that
// the entry index is current for them. Counts are stale for dirty leaves
// (low after a large repair wrote into them), which the scan covers too.
// Called with t.mu held.
func spanRecomputeBudget(p *partTree, outer Range) int {
	var keys uint64
	p.leaves.AscendGreaterOrEqual(p.floor(outer.Start), func(l *leaf) bool {
		if outer.End != nil && bytes.Compare(l.start, outer.End) >= 0 {
			return false
		}
		keys += l.fp.Count
		return true
	})
	return int(min(2*keys, 1<<30)) + recomputeSlackKeys
}

// recomputeSlackKeys is added to a span's recompute budget.
const recomputeSlackKeys = 1024

// fingerprints computes the fingerprints of the sorted, disjoint ranges, all
// inside outer.
func (t *Tree) fingerprints(ctx context.Context, part int, outer Range, ranges []Range) ([]Fingerprint, error) {
	t.mu.Lock()
	p, outer, err := t.checkRangeLocked(part, outer)
	budget := 0 // the whole run
	if err == nil && !(bytes.Equal(outer.Start, p.start) && keyspace.CompareEnd(outer.End, p.end) == 0) {
		budget = spanRecomputeBudget(p, outer)
	}
	t.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if _, err := t.Recompute(ctx, part, outer.Start, outer.End, budget); err != nil {
		return nil, err
	}

	// Plan: for each range, clean leaves fully inside are summed from
	// memory; everything else is scanned.
	type scanPart struct {
		idx int
		r   Range
	}
	var scans []scanPart
	fps := make([]Fingerprint, len(ranges))
	t.mu.Lock()
	p, _, err = t.checkRangeLocked(part, outer)
	if err != nil {
		t.mu.Unlock()
		return nil, err
	}
	for i, r := range ranges {
		if r.Start == nil {
			r.Start = p.start
		}
		if r.End == nil {
			r.End = p.end
		}
		if p.leaves.dirty == 0 && bytes.Equal(r.Start, p.start) && bytes.Equal(r.End, p.end) && (r.End == nil) == (p.end == nil) {
			// The whole partition, every leaf clean: the running total.
			fps[i] = p.leaves.total
			continue
		}
		first := p.floor(r.Start)
		p.leaves.AscendGreaterOrEqual(first, func(l *leaf) bool {
			if r.End != nil && bytes.Compare(l.start, r.End) >= 0 {
				return false
			}
			end := p.leafEnd(l)
			inside := bytes.Compare(l.start, r.Start) >= 0 && (r.End == nil || (end != nil && bytes.Compare(end, r.End) <= 0))
			if inside && !l.dirty {
				fps[i] = fps[i].Add(l.fp)
				return true
			}
			lo, hi := l.start, end
			if bytes.Compare(lo, r.Start) < 0 {
				lo = r.Start
			}
			if r.End != nil && (hi == nil || bytes.Compare(hi, r.End) > 0) {
				hi = r.End
			}
			scans = append(scans, scanPart{idx: i, r: Range{Start: lo, End: hi}})
			return true
		})
	}
	var snap *pebble.Snapshot
	if len(scans) > 0 {
		snap = t.rd.NewSnapshot()
	}
	t.mu.Unlock()
	if snap == nil {
		return fps, nil
	}
	defer snap.Close()
	// One iterator for every part (they come in key order): a write load
	// that keeps leaves dirty leaves many small parts, and an iterator a
	// part cost more than their keys.
	it, err := NewUserIter(ctx, snap, lowerBound(scans[0].r.Start), scans[len(scans)-1].r.End)
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var scratch []byte
	for _, s := range scans {
		var fp Fingerprint
		if fp, scratch, err = scanFingerprint(it, s.r, scratch); err != nil {
			return nil, err
		}
		fps[s.idx] = fps[s.idx].Add(fp)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return fps, nil
}

// scanFingerprint sums the records of r, positioning it at r's start.
func scanFingerprint(it *UserIter, r Range, scratch []byte) (Fingerprint, []byte, error) {
	var fp Fingerprint
	var d Digest
	for valid := it.SeekGE(lowerBound(r.Start)); valid; valid = it.Next() {
		key := it.Key()
		if r.End != nil && bytes.Compare(key, r.End) >= 0 {
			break
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return fp, scratch, err
		}
		d, scratch = LeafDigest(scratch, key, v)
		fp.Sum = fp.Sum.Add(d)
		fp.Count++
	}
	return fp, scratch, it.Error()
}

// ScanEntry is one record of a range scan. Key and Value are only valid
// during the callback.
type ScanEntry struct {
	Key, Value []byte
	Digest     Digest
}

// Scan calls fn for each record of [r.Start, r.End) of partition part, in key
// order, with its leaf digest, from a consistent view of the DB. It stops
// after limit records (limit > 0) and returns the key to resume from, or nil
// when the range is exhausted. fn may return an error to stop the scan.
func (t *Tree) Scan(ctx context.Context, part int, r Range, limit int, fn func(ScanEntry) error) (next []byte, err error) {
	t.mu.Lock()
	_, r, err = t.checkRangeLocked(part, r)
	t.mu.Unlock()
	if err != nil {
		return nil, err
	}
	it, err := NewUserIter(ctx, t.rd, lowerBound(r.Start), r.End)
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var scratch []byte
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		if limit > 0 && n == limit {
			return append([]byte{}, it.Key()...), nil
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		var e ScanEntry
		e.Key, e.Value = it.Key(), v
		e.Digest, scratch = LeafDigest(scratch, e.Key, v)
		if err := fn(e); err != nil {
			return nil, err
		}
		n++
	}
	return nil, it.Error()
}

// MemoryBytes estimates the tree's in-memory size: per leaf, the leaf
// struct, its start key and its index entries.
func (t *Tree) MemoryBytes() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	const perLeaf = 8 /* ls pointer */ + 8 /* pfx */ + 24 /* start header */ + 8 /* rank */ + 40 /* fp */ + 8 /* flags, padded */
	n := 0
	for _, p := range t.mu.parts {
		p.leaves.Ascend(func(l *leaf) bool {
			n += perLeaf + cap(l.start)
			return true
		})
	}
	return n
}
