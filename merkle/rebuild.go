package merkle

import (
	"bytes"
	"context"
	"fmt"
	"sort"
)

// MarkRebuild discards the tree of partition part (every partition if part
// < 0) and persists that it must be rebuilt. Until Rebuild completes the
// partition is not ready: queries fail with ErrNotReady. Writes go on and are
// not lost: the rebuild scans from snapshots and re-dirties whatever is
// written behind its back.
func (t *Tree) MarkRebuild(ctx context.Context, part int) error {
	t.recomputeMu.Lock()
	t.mu.Lock()
	var parts []*partTree
	if part < 0 {
		parts = t.mu.parts
	} else {
		p, err := t.part(part)
		if err != nil {
			t.mu.Unlock()
			t.recomputeMu.Unlock()
			return err
		}
		parts = []*partTree{p}
	}
	for _, p := range parts {
		var all []*leaf
		p.leaves.Ascend(func(l *leaf) bool { all = append(all, l); return true })
		for _, l := range all {
			p.removeLeaf(l)
		}
		// Empty now; reset the running totals outright (a rebuild also
		// repairs them).
		p.leaves.total, p.leaves.dirty, p.leaves.dirtyLeaves = Fingerprint{}, 0, nil
		// pd stays false until the checkpoint below persists the dirty
		// leaf: writes before that still write markers.
		p.setLeaf(&leaf{start: p.start, rank: t.params.rank(p.start), dirty: true})
		p.rebuilding = true
	}
	t.mu.Unlock()
	t.recomputeMu.Unlock()
	return t.Checkpoint(ctx)
}

// RebuildChunkKeys is the number of keys a rebuild scans from one snapshot
// before it installs what it found and takes the next.
const RebuildChunkKeys = 1 << 16

// Rebuild rebuilds every partition marked for rebuild (see MarkRebuild; Open
// marks them for a DB that had data before the tree existed, or whose tree
// parameters changed), scanning in chunks from snapshots, throttled by
// Options.Throttle, checkpointing as it goes. progress, if not nil, is called
// after each chunk with the partition and the keys scanned so far in it.
func (t *Tree) Rebuild(ctx context.Context, progress func(part int, keys uint64)) error {
	for _, info := range t.Partitions() {
		if info.Ready {
			continue
		}
		var done uint64
		for chunk := 0; ; chunk++ {
			before := t.Stats().KeysScanned
			more, err := t.Recompute(ctx, info.ID, nil, nil, RebuildChunkKeys)
			if err != nil {
				return fmt.Errorf("merkle: rebuild partition %d: %w", info.ID, err)
			}
			done += t.Stats().KeysScanned - before
			if progress != nil {
				progress(info.ID, done)
			}
			if !more {
				break
			}
			if chunk%16 == 15 {
				if err := t.Checkpoint(ctx); err != nil {
					return err
				}
			}
		}
		t.mu.Lock()
		t.mu.parts[info.ID].rebuilding = false
		t.mu.Unlock()
		if err := t.Checkpoint(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Mismatch is one disagreement between the tree and its data.
type Mismatch struct {
	Partition  int
	Start, End []byte
	// Kind is "boundary" (the leaf's range is not a leaf of the data),
	// "fingerprint" (the leaf's sum or count is wrong) or "total" (the
	// partition's running total is not the sum of its leaves).
	Kind   string
	Detail string
}

func (m Mismatch) String() string {
	return fmt.Sprintf("partition %d leaf [%q, %q): %s: %s", m.Partition, m.Start, m.End, m.Kind, m.Detail)
}

// Verify recomputes every partition's leaves from the data and reports every
// clean leaf that disagrees with them. Dirty leaves are recomputed first;
// leaves written during the verification are skipped (they are dirty).
// Partitions being rebuilt are skipped.
func (t *Tree) Verify(ctx context.Context) ([]Mismatch, error) {
	return t.VerifyWithProgress(ctx, nil)
}

// VerifyWithProgress is Verify, calling progress (if not nil) after each
// partition with the number of partitions done and their total.
func (t *Tree) VerifyWithProgress(ctx context.Context, progress func(done, total int)) ([]Mismatch, error) {
	var out []Mismatch
	parts := t.Partitions()
	for i, info := range parts {
		if progress != nil && i > 0 {
			progress(i, len(parts))
		}
		if !info.Ready {
			continue
		}
		if _, err := t.Recompute(ctx, info.ID, nil, nil, 0); err != nil {
			return nil, err
		}
		ms, err := t.verifyPartition(ctx, info.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, ms...)
	}
	if progress != nil {
		progress(len(parts), len(parts))
	}
	return out, nil
}

type leafCopy struct {
	start []byte
	fp    Fingerprint
	skip  bool
}

func (t *Tree) verifyPartition(ctx context.Context, part int) ([]Mismatch, error) {
	t.mu.Lock()
	p := t.mu.parts[part]
	var leaves []leafCopy
	var sum Fingerprint
	dirty := 0
	p.leaves.Ascend(func(l *leaf) bool {
		leaves = append(leaves, leafCopy{start: l.start, fp: l.fp, skip: l.dirty})
		sum = sum.Add(l.fp)
		if l.dirty {
			dirty++
		}
		return true
	})
	var totals []Mismatch
	if sum != p.leaves.total || dirty != p.leaves.dirty {
		// The running total (the whole partition's fingerprint when no
		// leaf is dirty) must be the sum of the leaves.
		totals = append(totals, Mismatch{Partition: part, Start: p.start, End: p.end, Kind: "total",
			Detail: fmt.Sprintf("running total has %d records and %d dirty leaves, the leaves %d and %d", p.leaves.total.Count, p.leaves.dirty, sum.Count, dirty)})
	}
	log, snap := t.registerLocked(part)
	t.mu.Unlock()
	defer func() {
		snap.Close()
		t.mu.Lock()
		delete(t.mu.scans, log)
		t.mu.Unlock()
	}()
	it, err := NewUserIter(ctx, snap, lowerBound(p.start), p.end)
	if err != nil {
		return nil, err
	}
	res, err := t.scanSpan(ctx, it, span{start: p.start, end: p.end}, 0)
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}

	t.mu.Lock()
	find := func(k []byte) int {
		return sort.Search(len(leaves), func(i int) bool { return bytes.Compare(leaves[i].start, k) > 0 }) - 1
	}
	for _, k := range log.keys {
		if i := find(k); i >= 0 {
			leaves[i].skip = true
		}
	}
	for _, r := range log.ranges {
		for i := max(find(r[0]), 0); i < len(leaves) && bytes.Compare(leaves[i].start, r[1]) < 0; i++ {
			leaves[i].skip = true
		}
	}
	overflow := log.overflow
	t.mu.Unlock()
	if overflow {
		return nil, nil
	}

	segs := make(map[string]int, len(res.segs))
	for i, s := range res.segs {
		segs[string(s.start)] = i
	}
	segEnd := func(i int) []byte {
		if i+1 < len(res.segs) {
			return res.segs[i+1].start
		}
		return p.end
	}
	out := totals
	for i, l := range leaves {
		end := p.end
		if i+1 < len(leaves) {
			end = leaves[i+1].start
		}
		if l.skip {
			continue
		}
		j, ok := segs[string(l.start)]
		if !ok || !bytes.Equal(segEnd(j), end) {
			detail := "leaf start is not a boundary of the data"
			if ok {
				detail = fmt.Sprintf("the data's leaf ends at %q", segEnd(j))
			}
			out = append(out, Mismatch{Partition: part, Start: l.start, End: end, Kind: "boundary", Detail: detail})
			continue
		}
		if want := res.segs[j].fp; want != l.fp {
			out = append(out, Mismatch{Partition: part, Start: l.start, End: end, Kind: "fingerprint",
				Detail: fmt.Sprintf("tree has %d records, data has %d (sums differ: %v)", l.fp.Count, want.Count, want.Sum != l.fp.Sum)})
		}
	}
	return out, nil
}
