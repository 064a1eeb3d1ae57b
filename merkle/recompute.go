package merkle

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pebble-ae/pebble-ae/hooks"
)

// span is a run of consecutive dirty leaves [start, end) of one partition.
type span struct {
	start, end []byte
}

// segment is one leaf computed by a scan.
type segment struct {
	start []byte
	rank  uint64
	fp    Fingerprint
	// digests are the short digests of the segment's records, collected
	// only for Options.SpanObserver.
	digests []uint64
}

// scanResult is what a scan of a span found.
type scanResult struct {
	segs []segment
	// startPresent: the span's start key exists in the data.
	startPresent bool
	// stop is where the scan stopped early (a boundary key), or nil if it
	// covered the whole span.
	stop []byte
	keys int
}

// register adds a scan log for partition pi, seeded with the keys of every
// batch in flight (their data may or may not be in a snapshot taken now), and
// returns a snapshot. Called with t.mu held.
func (t *Tree) registerLocked(pi int) (*scanLog, *pebble.Snapshot) {
	s := &scanLog{part: pi}
	t.mu.scans[s] = struct{}{}
	for b := range t.mu.inflight {
		t.logBatchLocked(s, b)
	}
	return s, t.rd.NewSnapshot()
}

func (t *Tree) logBatchLocked(s *scanLog, b *hooks.Batch) {
	for _, op := range b.Ops() {
		if op.Kind == hooks.OpDeleteRange {
			s.ranges = append(s.ranges, [2][]byte{append([]byte(nil), op.Key...), append([]byte(nil), op.End...)})
			continue
		}
		if len(s.keys) >= t.opts.MaxLoggedKeys {
			s.overflow = true
			return
		}
		s.keys = append(s.keys, append([]byte(nil), op.Key...))
	}
}

// dirtySpansLocked returns the runs of dirty leaves overlapping [lo, hi) of p
// (hi nil: to the partition end); a run that reaches hi goes on to its
// last dirty leaf. It costs O(d log d) for d dirty leaves, whatever the
// partition's size.
func dirtySpansLocked(p *partTree, lo, hi []byte) []span {
	if p.leaves.dirty == 0 {
		return nil // no walk over a clean partition's leaves
	}
	first := p.floor(lo)
	var dirty []*leaf
	for l := range p.leaves.dirtyLeaves {
		if (first == nil || bytes.Compare(l.start, first.start) >= 0) && (hi == nil || bytes.Compare(l.start, hi) < 0) {
			dirty = append(dirty, l)
		}
	}
	slices.SortFunc(dirty, func(a, b *leaf) int { return bytes.Compare(a.start, b.start) })
	var spans []span
	for i := 0; i < len(dirty); {
		sp := span{start: dirty[i].start}
		l := dirty[i]
		i++
		for {
			n := p.next(l)
			if n == nil {
				sp.end = p.end
				break
			}
			if !n.dirty {
				sp.end = n.start
				break
			}
			l = n
			if i < len(dirty) && dirty[i] == n {
				i++
			}
		}
		spans = append(spans, sp)
	}
	return spans
}

// scanSpan computes the leaves of [sp.start, sp.end) with it (an iterator
// over a snapshot whose bounds hold the span; it seeks to the span's
// start). With maxKeys > 0 it stops at the first boundary key after maxKeys
// keys.
func (t *Tree) scanSpan(ctx context.Context, it *UserIter, sp span, maxKeys int) (scanResult, error) {
	var res scanResult
	cur := segment{start: sp.start, rank: t.params.rank(sp.start)}
	var scratch []byte
	var d Digest
	pendingKeys, pendingBytes := 0, 0
	first := true
	observe := t.opts.SpanObserver != nil
	for valid := it.SeekGE(lowerBound(sp.start)); valid; valid = it.Next() {
		key := it.Key()
		if sp.end != nil && bytes.Compare(key, sp.end) >= 0 {
			break
		}
		if first {
			res.startPresent = bytes.Equal(key, sp.start)
			first = false
		}
		if !bytes.Equal(key, sp.start) {
			if r := t.params.rank(key); r < t.boundary {
				if maxKeys > 0 && res.keys >= maxKeys {
					res.stop = append([]byte(nil), key...)
					break
				}
				res.segs = append(res.segs, cur)
				cur = segment{start: append([]byte(nil), key...), rank: r}
			}
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return res, err
		}
		d, scratch = LeafDigest(scratch, key, v)
		cur.fp.Sum = cur.fp.Sum.Add(d)
		cur.fp.Count++
		if observe {
			cur.digests = append(cur.digests, d.Short())
		}
		res.keys++
		pendingKeys++
		pendingBytes += len(key) + len(v)
		if pendingKeys >= 256 && t.opts.Throttle != nil {
			if err := t.opts.Throttle(ctx, pendingKeys, pendingBytes); err != nil {
				return res, err
			}
			pendingKeys, pendingBytes = 0, 0
		}
	}
	if err := it.Error(); err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.segs = append(res.segs, cur)
	return res, nil
}

// installLocked replaces the leaves of [sp.start, stop) (stop = res.stop or
// sp.end) with the scan's segments, then re-applies the writes logged since
// the snapshot, which leave their leaves dirty.
func (t *Tree) installLocked(p *partTree, sp span, res scanResult, log *scanLog) {
	stop := sp.end
	if res.stop != nil {
		stop = res.stop
	}
	inStop := func(k []byte) bool { return stop == nil || bytes.Compare(k, stop) < 0 }
	// Old leaves in [sp.start, stop): positions [i, j).
	i := p.leaves.searchPos(sp.start)
	j := p.leaves.endPos()
	if stop != nil {
		j = p.leaves.searchPos(stop)
	}
	pdAll := true
	p.leaves.ascendPos(i, j, func(l *leaf) bool {
		pdAll = pdAll && l.pd
		p.removed[string(l.start)] = struct{}{}
		return true
	})
	segs := res.segs
	if !res.startPresent && !bytes.Equal(sp.start, p.start) {
		// The span's start key is gone (a purge or a range deletion): its
		// first segment belongs to the previous leaf.
		prev := p.leaves.prevLeaf(i)
		p.leaves.addFP(prev, segs[0].fp)
		prev.pd = prev.pd && pdAll
		p.leaves.markChanged(prev)
		segs = segs[1:]
	}
	repl := make([]*leaf, 0, len(segs)+1)
	for _, s := range segs {
		repl = append(repl, &leaf{start: s.start, rank: s.rank, fp: s.fp, pd: pdAll, changed: true})
	}
	if res.stop != nil {
		// The rest of the span stays dirty, as one leaf.
		if l, ok := p.leaves.leafAtPos(j); ok && bytes.Equal(l.start, res.stop) {
			j = p.leaves.nextPos(j) // replaced
		}
		repl = append(repl, &leaf{start: res.stop, rank: t.params.rank(res.stop), dirty: true, pd: pdAll, changed: true})
	}
	for _, l := range repl {
		delete(p.removed, string(l.start))
	}
	p.leaves.splicePos(i, j, repl)
	t.mu.stats.LeavesRecomputed += uint64(len(segs))
	t.mu.stats.KeysScanned += uint64(res.keys)
	// Writes made after the snapshot.
	lo, hi := sp.start, stop
	if log.overflow {
		markRangeDirty(p, lo, hi)
		return
	}
	for _, k := range log.keys {
		if bytes.Compare(k, lo) >= 0 && inStop(k) {
			_ = t.touchKeyLocked(nil, k)
		}
	}
	for _, r := range log.ranges {
		if a, b := clip(r[0], r[1], lo, hi); a != nil {
			markRangeDirty(p, a, b)
		}
	}
}

// markRangeDirty marks every leaf overlapping [lo, hi) dirty, without
// changing their persisted-dirty state.
func markRangeDirty(p *partTree, lo, hi []byte) {
	first := p.floor(lo)
	p.leaves.AscendGreaterOrEqual(first, func(l *leaf) bool {
		if l != first && hi != nil && bytes.Compare(l.start, hi) >= 0 {
			return false
		}
		p.leaves.markDirty(l)
		p.leaves.markChanged(l)
		return true
	})
}

// Recompute recomputes the dirty leaves of partition part that overlap
// [lo, hi) (hi nil: to the partition end) from one snapshot. Leaves written
// while it scans stay dirty. With maxKeys > 0 it stops after about maxKeys
// keys (at a leaf boundary) and reports more = true.
func (t *Tree) Recompute(ctx context.Context, part int, lo, hi []byte, maxKeys int) (more bool, err error) {
	t.recomputeMu.Lock()
	defer t.recomputeMu.Unlock()

	t.mu.Lock()
	if t.mu.closed {
		t.mu.Unlock()
		return false, ErrClosed
	}
	p, err := t.part(part)
	if err != nil {
		t.mu.Unlock()
		return false, err
	}
	if lo == nil {
		lo = p.start
	}
	spans := dirtySpansLocked(p, lo, hi)
	if len(spans) == 0 {
		t.mu.Unlock()
		return false, nil
	}
	// The first chunk of a rebuild starts at the partition's start: the
	// observer forgets what it derived from the partition before.
	reset := p.rebuilding && bytes.Equal(spans[0].start, p.start)
	log, snap := t.registerLocked(part)
	t.mu.Unlock()
	defer func() {
		snap.Close()
		t.mu.Lock()
		delete(t.mu.scans, log)
		t.mu.Unlock()
	}()

	// Spans are installed in groups of about observeGroupKeys keys, each
	// group shown to the span observer first (one call, one batch of the
	// engine's entry index, before any of its leaves becomes clean).
	var group []scannedSpan
	groupKeys := 0
	flush := func() error {
		if len(group) == 0 {
			return nil
		}
		if obs := t.opts.SpanObserver; obs != nil {
			if err := obs(part, observedSpans(group), reset); err != nil {
				return fmt.Errorf("merkle: span observer: %w", err)
			}
			reset = false
		}
		t.mu.Lock()
		for _, g := range group {
			t.installLocked(p, g.sp, g.res, log)
		}
		t.mu.Unlock()
		group, groupKeys = group[:0], 0
		return nil
	}
	budget := maxKeys
	// One iterator for every span (they come in key order): a write load
	// that keeps leaves dirty leaves many spans, and an iterator a span
	// cost more than their keys.
	it, err := NewUserIter(ctx, snap, lowerBound(spans[0].start), spans[len(spans)-1].end)
	if err != nil {
		return false, err
	}
	defer it.Close()
	for _, sp := range spans {
		res, err := t.scanSpan(ctx, it, sp, budget)
		if err != nil {
			return false, err
		}
		group = append(group, scannedSpan{sp: sp, res: res})
		groupKeys += res.keys
		stop := false
		if maxKeys > 0 {
			budget -= res.keys
			stop = res.stop != nil || budget <= 0
		}
		if stop || groupKeys >= observeGroupKeys {
			if err := flush(); err != nil {
				return false, err
			}
		}
		if stop {
			return true, nil
		}
	}
	return false, flush()
}

// observeGroupKeys is about the most keys Recompute scans before it
// installs what it scanned (and shows it to the span observer).
const observeGroupKeys = 1 << 16

// scannedSpan is a span and what its scan found, not yet installed.
type scannedSpan struct {
	sp  span
	res scanResult
}

// ObservedSpan is a key range [Start, End) (End nil: the end of the user
// key space) that a recompute scanned, and the leaves it found there.
type ObservedSpan struct {
	Start, End []byte
	// Leaves are the scanned leaves in key order. The first starts at
	// Start, which may not be a key of the data (then the recompute
	// merges it into the leaf before the span).
	Leaves []ObservedLeaf
}

// ObservedLeaf is one leaf of an ObservedSpan: its start and the short
// digests of its records in key order.
type ObservedLeaf struct {
	Start   []byte
	Digests []uint64
}

func observedSpans(group []scannedSpan) []ObservedSpan {
	out := make([]ObservedSpan, len(group))
	for i, g := range group {
		end := g.sp.end
		if g.res.stop != nil {
			end = g.res.stop
		}
		leaves := make([]ObservedLeaf, len(g.res.segs))
		for j, s := range g.res.segs {
			leaves[j] = ObservedLeaf{Start: s.start, Digests: s.digests}
		}
		out[i] = ObservedSpan{Start: g.sp.start, End: end, Leaves: leaves}
	}
	return out
}
