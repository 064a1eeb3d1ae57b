package merkle

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pebble-ae/pebble-ae/hooks"
	"github.com/pebble-ae/pebble-ae/internal/keyspace"
)

// Options configure a Tree.
type Options struct {
	// Params are the tree parameters; zero fields take defaults.
	Params Params
	// Partitioner maps keys to partitions; nil means SinglePartition().
	Partitioner Partitioner
	// RebuildOnParamsChange makes Open start a rebuild when the persisted
	// parameters differ from Params, instead of failing with
	// ErrParamsChanged.
	RebuildOnParamsChange bool
	// Throttle, if set, is called during background scans (recompute,
	// rebuild, verify) with the keys and bytes read since the last call; it
	// blocks to slow the scan down and returns ctx's error to abort it.
	Throttle func(ctx context.Context, keys, bytes int) error
	// Reader, if set, is used for every read the tree makes after Open
	// instead of the DB itself (tests count reads through it).
	Reader Reader
	// SpanObserver, if set, is called by Recompute (and so by Rebuild)
	// with what it scanned, before the scanned leaves are installed and
	// under the tree's recompute lock (so calls never overlap, and no
	// other recompute changes the tree meanwhile): every span's key range
	// and the short digests (Digest.Short) of its records, leaf by leaf in
	// key order. An error aborts the recompute: the spans' leaves stay
	// dirty. Since the leaves become clean only after the observer
	// returned, state the observer persists with the scan's data (the
	// engine's entry index) is on disk before any checkpoint can record
	// those leaves clean. reset is true on the first chunk of a rebuild
	// of the partition: whatever the observer derived from the partition
	// before is void. The observer owns the spans.
	SpanObserver func(part int, spans []ObservedSpan, reset bool) error
	// MaxLoggedKeys bounds the number of concurrent-write keys remembered
	// during one scan; past it, the scanned ranges simply stay dirty.
	// Default 1<<16.
	MaxLoggedKeys int
}

// EnsureDefaults fills zero fields with defaults.
func (o *Options) EnsureDefaults() *Options {
	if o == nil {
		o = &Options{}
	}
	o.Params = o.Params.EnsureDefaults()
	if o.Partitioner == nil {
		o.Partitioner = SinglePartition()
	}
	if o.MaxLoggedKeys == 0 {
		o.MaxLoggedKeys = 1 << 16
	}
	return o
}

// Reader is the read side of a Pebble DB that the tree uses.
type Reader interface {
	NewSnapshot() *pebble.Snapshot
	NewIterWithContext(ctx context.Context, o *pebble.IterOptions) (*pebble.Iterator, error)
}

// Tree maintains one Merkle tree per partition over the user keys of a Pebble
// DB. Its write hook (Hook) must see every batch written to the DB's user key
// space.
//
// A leaf is a contiguous key range [start, next leaf's start) whose start is
// the partition's start or a boundary key (Params.IsBoundary) present in the
// data; its value is the sum of the leaf digests of its records and their
// count. Inner nodes are never stored: any range's fingerprint is a sum of
// leaf values.
//
// Blind maintenance: a write finds its key's leaf in memory, marks it dirty
// and, only if the leaf's range is not already known to be dirty on disk,
// adds one dirty marker to the same batch. Dirty leaves are recomputed
// lazily by scanning their range from a snapshot. Checkpoint persists leaf
// records and removes the markers it made obsolete.
//
// Concurrency: all methods are safe for concurrent use. In-memory state is
// guarded by mu. Recomputes (and the structural changes they make) are
// serialized by recomputeMu; checkpoints by ckptMu.
type Tree struct {
	db     *pebble.DB
	rd     Reader
	opts   Options
	params Params
	pn     Partitioner
	// boundary is params.threshold(), computed once: the write path
	// compares the rank of every key that starts no leaf with it.
	boundary uint64

	recomputeMu sync.Mutex
	ckptMu      sync.Mutex

	// corruption is what Open found wrong in the persisted tree, if
	// anything; the tree was then rebuilt.
	corruption error

	mu struct {
		sync.Mutex
		closed bool
		gen    uint64
		parts  []*partTree
		// inflight holds the batches between PreCommit and PostCommit,
		// with the leaves each wrote a dirty marker for: those leaves
		// become persisted-dirty (pd) only when that batch has committed,
		// since a concurrent batch that relied on the marker could
		// otherwise commit first and survive a crash that the marker's
		// batch does not.
		inflight map[*hooks.Batch][]*leaf
		// scans are the registered scans that need to learn about writes
		// made after their snapshot.
		scans map[*scanLog]struct{}
		stats Stats
	}
}

// Stats are counters of a tree's work since open.
type Stats struct {
	MarkersWritten   uint64 `json:"markers_written"`
	LeavesRecomputed uint64 `json:"leaves_recomputed"`
	KeysScanned      uint64 `json:"keys_scanned"`
	Checkpoints      uint64 `json:"checkpoints"`
	Splits           uint64 `json:"splits"`
}

type partTree struct {
	id         int
	start, end []byte
	leaves     *leafSet
	// removed are leaf starts removed since the last checkpoint.
	removed          map[string]struct{}
	rebuilding       bool
	rebuildPersisted bool
}

// leaf is one leaf of a partition's tree. The fields the write path reads
// and writes (markedBy, dirty, pd, changed) come first, so that a write
// touches one cache line of the leaf.
type leaf struct {
	// markedBy is the in-flight batch that wrote a marker for this leaf
	// (so the batch writes only one).
	markedBy *hooks.Batch
	// dirty: fp is not known to be correct; the leaf must be recomputed.
	dirty bool
	// pd ("persisted dirty"): the on-disk state (checkpoint + markers)
	// already makes recovery recompute a range covering this leaf, so a
	// write to it needs no marker.
	pd bool
	// changed: differs from its persisted record.
	changed bool
	start   []byte
	rank    uint64
	fp      Fingerprint
}

// scanLog records the writes made to one partition while a scan of it runs.
type scanLog struct {
	part     int
	keys     [][]byte
	ranges   [][2][]byte
	overflow bool
}

func (t *Tree) logWrite(p int, key []byte) {
	if len(t.mu.scans) == 0 {
		return
	}
	for s := range t.mu.scans {
		if s.part != p || s.overflow {
			continue
		}
		if len(s.keys) >= t.opts.MaxLoggedKeys {
			s.overflow = true
			continue
		}
		s.keys = append(s.keys, append([]byte(nil), key...))
	}
}

func (t *Tree) logRange(p int, start, end []byte) {
	for s := range t.mu.scans {
		if s.part == p {
			s.ranges = append(s.ranges, [2][]byte{append([]byte(nil), start...), append([]byte(nil), end...)})
		}
	}
}

// Params returns the tree parameters.
func (t *Tree) Params() Params { return t.params }

// Partitioner returns the partitioner.
func (t *Tree) Partitioner() Partitioner { return t.pn }

// Stats returns the tree's counters.
func (t *Tree) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mu.stats
}

func (t *Tree) part(id int) (*partTree, error) {
	if id < 0 || id >= len(t.mu.parts) {
		return nil, fmt.Errorf("%w: %d (have %d)", ErrUnknownPartition, id, len(t.mu.parts))
	}
	return t.mu.parts[id], nil
}

// floor returns the leaf containing key (nil if key is before the
// partition).
func (p *partTree) floor(key []byte) *leaf { return p.leaves.floor(key) }

// next returns the leaf after l, or nil.
func (p *partTree) next(l *leaf) *leaf { return p.leaves.next(l) }

// leafEnd returns the end of l's range: the next leaf's start or the
// partition end.
func (p *partTree) leafEnd(l *leaf) []byte {
	if n := p.next(l); n != nil {
		return n.start
	}
	return p.end
}

func (p *partTree) setLeaf(l *leaf) {
	l.changed = true // (ReplaceOrInsert puts it in the checkpoint's set)
	delete(p.removed, string(l.start))
	p.leaves.ReplaceOrInsert(l)
}

func (p *partTree) removeLeaf(l *leaf) {
	p.leaves.Delete(l)
	p.removed[string(l.start)] = struct{}{}
}

// Hook returns the write hook that keeps the tree current. The engine must
// run it on every batch that writes user keys.
func (t *Tree) Hook() hooks.Hook {
	return hooks.Hook{PreCommit: t.preCommit, PostCommit: t.postCommit}
}

func (t *Tree) preCommit(b *hooks.Batch) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.closed {
		return ErrClosed
	}
	t.mu.inflight[b] = nil
	for _, op := range b.Ops() {
		var err error
		switch op.Kind {
		case hooks.OpDeleteRange:
			err = t.touchRangeLocked(b, op.Key, op.End)
		default:
			if !keyspace.IsUser(op.Key) {
				continue
			}
			err = t.touchKeyLocked(b, op.Key)
		}
		if err != nil {
			t.finishLocked(b, err)
			return err
		}
	}
	return nil
}

func (t *Tree) postCommit(b *hooks.Batch, err error) {
	t.mu.Lock()
	t.finishLocked(b, err)
	t.mu.Unlock()
}

// finishLocked ends b's flight: if it committed, the leaves it wrote
// markers for are now covered on disk.
func (t *Tree) finishLocked(b *hooks.Batch, err error) {
	for _, l := range t.mu.inflight[b] {
		if err == nil {
			l.pd = true
		}
		if l.markedBy == b {
			l.markedBy = nil
		}
	}
	delete(t.mu.inflight, b)
}

// markLocked adds a marker for leaf l to b unless l is already covered on
// disk or b already marks it.
//
// The marker covers l's whole range, not the written key: recovery marks
// dirty the persisted leaves the marker overlaps, and l's boundaries may
// differ from the persisted ones. After a merge not yet checkpointed (a
// recompute or Verify found a boundary key deleted), l spans several
// persisted leaves; a marker at the written key alone would cover only one
// of them, yet pd would spare every later write to l its marker, and after
// a crash the others would load clean with stale sums (TestModel, seed
// 1796281762343249128).
func (t *Tree) markLocked(b *hooks.Batch, l *leaf, pi int) error {
	if l.pd || l.markedBy == b {
		return nil
	}
	if err := t.setMarkerLocked(b, pi, l.start, t.mu.parts[pi].leafEnd(l)); err != nil {
		return err
	}
	l.markedBy = b
	t.mu.inflight[b] = append(t.mu.inflight[b], l)
	t.mu.stats.MarkersWritten++
	return nil
}

// touchKeyLocked is the blind write path for one key: split if the key is a
// new boundary, mark the leaf dirty, add a marker if needed. b is nil when
// re-applying logged writes after a recompute (their markers were handled
// when they were written).
func (t *Tree) touchKeyLocked(b *hooks.Batch, key []byte) error {
	pi := t.pn.Partition(key)
	p := t.mu.parts[pi]
	l, exact := p.leaves.floorExact(key)
	if !exact {
		if r := t.params.rank(key); r < t.boundary {
			// A new boundary: split. Both halves need recomputing.
			p.leaves.markDirty(l)
			p.leaves.markChanged(l)
			nl := &leaf{start: append([]byte(nil), key...), rank: r, dirty: true, pd: l.pd}
			p.setLeaf(nl)
			t.mu.stats.Splits++
			l = nl
		}
	}
	if !l.dirty {
		p.leaves.markDirty(l)
		p.leaves.markChanged(l)
	}
	if b == nil {
		return nil
	}
	t.logWrite(pi, key)
	return t.markLocked(b, l, pi)
}

// touchRangeLocked marks every leaf overlapping [start, end) dirty.
func (t *Tree) touchRangeLocked(b *hooks.Batch, start, end []byte) error {
	if len(end) == 0 {
		end = nil
	}
	spans := keyspace.UserSpans(start, end)
	if len(spans) == 0 {
		return nil // only reserved keys
	}
	// Over-approximate: the leaves between the first and the last user span
	// (there are none inside the reserved range) are marked too.
	start, end = spans[0][0], spans[len(spans)-1][1]
	for pi, p := range t.mu.parts {
		lo, hi := clip(start, end, p.start, p.end)
		if lo == nil {
			continue
		}
		var touched []*leaf
		needMarker := false
		first := p.floor(lo)
		p.leaves.AscendGreaterOrEqual(first, func(l *leaf) bool {
			if hi != nil && bytes.Compare(l.start, hi) >= 0 {
				return false
			}
			p.leaves.markDirty(l)
			p.leaves.markChanged(l)
			touched = append(touched, l)
			needMarker = needMarker || (!l.pd && l.markedBy != b)
			return true
		})
		if b == nil {
			continue
		}
		t.logRange(pi, lo, hi)
		if !needMarker {
			continue
		}
		// One range marker covers every touched leaf, whole (see
		// markLocked): from the first one's start to the last one's end.
		last := touched[len(touched)-1]
		if err := t.setMarkerLocked(b, pi, touched[0].start, p.leafEnd(last)); err != nil {
			return err
		}
		t.mu.stats.MarkersWritten++
		for _, l := range touched {
			if !l.pd && l.markedBy != b {
				l.markedBy = b
				t.mu.inflight[b] = append(t.mu.inflight[b], l)
			}
		}
	}
	return nil
}

// setMarkerLocked adds to b the marker of partition pi's range [start,
// end) (end nil: the partition's end) in the current generation. The range
// is in the marker's key (a span marker), so two markers of one leaf start
// with different ends never overwrite each other: a leaf re-marked after a
// merge or split cannot shrink what an earlier marker of the generation
// covers.
func (t *Tree) setMarkerLocked(b *hooks.Batch, pi int, start, end []byte) error {
	if end == nil {
		end = t.mu.parts[pi].end
	}
	// end nil (the last partition's end, unbounded) is encoded empty.
	return b.Pebble().Set(markerKey(t.mu.gen, pi, encodeSpan(start, end)), markerSpanValue, nil)
}

// clip intersects [start, end) with the partition range [ps, pe) (end, pe
// nil: no upper bound). It returns nil, nil if they do not overlap; hi is nil
// if the intersection has no upper bound.
func clip(start, end, ps, pe []byte) (lo, hi []byte) {
	lo, hi = start, end
	if bytes.Compare(lo, ps) < 0 {
		lo = ps
	}
	if keyspace.CompareEnd(hi, pe) > 0 {
		hi = pe
	}
	if hi != nil && bytes.Compare(lo, hi) >= 0 {
		return nil, nil
	}
	if lo == nil {
		lo = []byte{}
	}
	return lo, hi
}

// Close stops the tree. It does not checkpoint; call Checkpoint first.
func (t *Tree) Close() {
	t.mu.Lock()
	t.mu.closed = true
	t.mu.Unlock()
}
