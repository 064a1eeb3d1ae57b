package merkle

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pebble-ae/pebble-ae/hooks"
	"github.com/pebble-ae/pebble-ae/internal/keyspace"
)

// On-disk layout under keyspace.InternalPrefix:
//
//	m "params"            -> paramsRecord
//	m "gen"               -> uint64: the marker generation of the last checkpoint
//	m "rebuild" part(4)   -> present while partition part is being rebuilt
//	l part(4) start       -> leafRecord: flags(1) sum(32) uvarint(count)
//	d gen(8) part(4) pos  -> marker, written as 's' with pos = encodeSpan(start, end)
//	                         (every leaf overlapping [start, end) is dirty; an empty
//	                         end: to the partition's end, which is unbounded in the
//	                         last partition since user keys may sort above the
//	                         internal range; earlier releases wrote the internal
//	                         prefix there, which meant the same); read too,
//	                         as earlier releases wrote them: empty (the leaf
//	                         containing pos is dirty) or 'r' end ([pos, end))

const (
	markerRange = 'r'
	// markerSpan is the value of a span marker, whose key's position
	// holds its range (encodeSpan). Markers are written as span markers;
	// point and range markers (positions that are a key) are still read.
	markerSpan     = 's'
	leafFlagDirty  = 1
	paramsEncoding = 1
)

var (
	paramsKey  = keyspace.Key(keyspace.SpaceMeta, []byte("params"))
	genKey     = keyspace.Key(keyspace.SpaceMeta, []byte("gen"))
	rebuildKey = func(p int) []byte {
		return keyspace.Key(keyspace.SpaceMeta, []byte("rebuild"), keyspace.Uint32(uint32(p)))
	}
	leafPrefix   = keyspace.Key(keyspace.SpaceLeaf)
	markerPrefix = keyspace.Key(keyspace.SpaceMarker)
)

// markerSpanValue is the value of every span marker.
var markerSpanValue = []byte{markerSpan}

// encodeSpan encodes the range [start, end) as a span marker's position:
// start's length as a uvarint, start, end.
func encodeSpan(start, end []byte) []byte {
	b := make([]byte, 0, binary.MaxVarintLen64+len(start)+len(end))
	b = binary.AppendUvarint(b, uint64(len(start)))
	return append(append(b, start...), end...)
}

// decodeSpan is the inverse of encodeSpan.
func decodeSpan(pos []byte) (start, end []byte, ok bool) {
	n, w := binary.Uvarint(pos)
	if w <= 0 || n > uint64(len(pos)-w) {
		return nil, nil, false
	}
	return pos[w : w+int(n)], pos[w+int(n):], true
}

func markerKey(gen uint64, part int, pos []byte) []byte {
	return keyspace.Key(keyspace.SpaceMarker, keyspace.Uint64(gen), keyspace.Uint32(uint32(part)), pos)
}

func leafKey(part int, start []byte) []byte {
	return keyspace.Key(keyspace.SpaceLeaf, keyspace.Uint32(uint32(part)), start)
}

func encodeParams(p Params, pn Partitioner) []byte {
	b := []byte{paramsEncoding}
	b = binary.AppendUvarint(b, HashVersion)
	b = binary.AppendUvarint(b, uint64(p.LeafSize))
	b = binary.AppendUvarint(b, p.Seed)
	b = append(b, pn.Name()...)
	return b
}

func encodeLeaf(l *leaf) []byte {
	b := make([]byte, 0, 1+32+binary.MaxVarintLen64)
	var flags byte
	if l.dirty {
		flags |= leafFlagDirty
	}
	b = append(b, flags)
	sb := l.fp.Sum.Bytes()
	b = append(b, sb[:]...)
	return binary.AppendUvarint(b, l.fp.Count)
}

func decodeLeaf(v []byte) (fp Fingerprint, dirty bool, err error) {
	if len(v) < 34 || v[0]&^leafFlagDirty != 0 {
		return fp, false, fmt.Errorf("%w: leaf record of %d bytes", ErrCorruption, len(v))
	}
	var sb [32]byte
	copy(sb[:], v[1:33])
	count, n := binary.Uvarint(v[33:])
	if n <= 0 || 33+n != len(v) {
		return fp, false, fmt.Errorf("%w: leaf record count", ErrCorruption)
	}
	return Fingerprint{Sum: SumFromBytes(sb), Count: count}, v[0]&leafFlagDirty != 0, nil
}

// Open loads the tree of db, or creates it. A DB without a tree but with user
// data gets a background rebuild (the tree is not ready until Rebuild runs);
// a tree with other persisted parameters fails with ErrParamsChanged unless
// Options.RebuildOnParamsChange is set. After a crash only leaves with dirty
// markers are recomputed, lazily: Open reads O(leaves + markers), never the
// data.
func Open(db *pebble.DB, opts *Options) (*Tree, error) {
	opts = opts.EnsureDefaults()
	if err := opts.Params.Validate(); err != nil {
		return nil, err
	}
	t := &Tree{db: db, rd: opts.Reader, opts: *opts, params: opts.Params, boundary: opts.Params.threshold(), pn: opts.Partitioner}
	if t.rd == nil {
		t.rd = db
	}
	t.mu.inflight = make(map[*hooks.Batch][]*leaf)
	t.mu.scans = make(map[*scanLog]struct{})
	n := t.pn.NumPartitions()
	for i := 0; i < n; i++ {
		start, end := t.pn.Bounds(i)
		if start == nil {
			start = []byte{}
		}
		t.mu.parts = append(t.mu.parts, &partTree{
			id: i, start: start, end: end,
			leaves:  &leafSet{},
			removed: make(map[string]struct{}),
		})
	}

	want := encodeParams(t.params, t.pn)
	got, err := getValue(db, paramsKey)
	if err != nil {
		return nil, err
	}
	switch {
	case got == nil:
		hasData, err := hasUserData(db)
		if err != nil {
			return nil, err
		}
		if err := t.initFresh(want, hasData); err != nil {
			return nil, err
		}
	case !bytes.Equal(got, want):
		if !opts.RebuildOnParamsChange {
			return nil, fmt.Errorf("%w: persisted %x, given %x (open with RebuildOnParamsChange to rebuild)", ErrParamsChanged, got, want)
		}
		if err := t.initFresh(want, true); err != nil {
			return nil, err
		}
	default:
		if err := t.load(); err != nil {
			if !errors.Is(err, ErrCorruption) {
				return nil, err
			}
			// The tree is derived data: a corrupt or truncated tree record
			// is repaired by rebuilding the tree from the data.
			for _, p := range t.mu.parts {
				p.leaves = &leafSet{}
				p.removed = make(map[string]struct{})
			}
			if err2 := t.initFresh(want, true); err2 != nil {
				return nil, errors.Join(err, err2)
			}
			t.corruption = err
		}
	}
	return t, nil
}

// Corruption returns the corruption Open found in the persisted tree (and
// repaired by scheduling a rebuild), or nil.
func (t *Tree) Corruption() error { return t.corruption }

func getValue(db *pebble.DB, key []byte) ([]byte, error) {
	v, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return append([]byte{}, v...), nil
}

func hasUserData(db *pebble.DB) (bool, error) {
	it, err := NewUserIter(context.Background(), db, nil, nil)
	if err != nil {
		return false, err
	}
	has := it.First()
	return has, it.Close()
}

// initFresh discards any persisted tree state and starts partitions either
// empty and clean (no data) or as one dirty leaf each, to be rebuilt.
func (t *Tree) initFresh(params []byte, rebuild bool) error {
	b := t.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(leafPrefix, keyspace.PrefixEnd(leafPrefix), nil); err != nil {
		return err
	}
	if err := b.DeleteRange(markerPrefix, keyspace.PrefixEnd(markerPrefix), nil); err != nil {
		return err
	}
	t.mu.gen = 1
	for _, p := range t.mu.parts {
		l := &leaf{start: p.start, rank: t.params.rank(p.start), dirty: rebuild, pd: rebuild}
		p.leaves.ReplaceOrInsert(l)
		p.rebuilding = rebuild
		p.rebuildPersisted = rebuild
		if err := b.Set(leafKey(p.id, p.start), encodeLeaf(l), nil); err != nil {
			return err
		}
		if rebuild {
			if err := b.Set(rebuildKey(p.id), nil, nil); err != nil {
				return err
			}
		} else if err := b.Delete(rebuildKey(p.id), nil); err != nil {
			return err
		}
	}
	if err := b.Set(genKey, keyspace.Uint64(t.mu.gen), nil); err != nil {
		return err
	}
	if err := b.Set(paramsKey, params, nil); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

// load reads the checkpoint and the markers written since.
func (t *Tree) load() error {
	gv, err := getValue(t.db, genKey)
	if err != nil {
		return err
	}
	if len(gv) != 8 {
		return fmt.Errorf("%w: generation record of %d bytes", ErrCorruption, len(gv))
	}
	gen := binary.BigEndian.Uint64(gv)

	it, err := t.db.NewIter(&pebble.IterOptions{LowerBound: leafPrefix, UpperBound: keyspace.PrefixEnd(leafPrefix)})
	if err != nil {
		return err
	}
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()[len(leafPrefix):]
		if len(k) < 4 {
			it.Close()
			return fmt.Errorf("%w: leaf key %x", ErrCorruption, it.Key())
		}
		pi := int(binary.BigEndian.Uint32(k))
		start := append([]byte{}, k[4:]...)
		fp, dirty, err := decodeLeaf(it.Value())
		if err == nil && pi >= len(t.mu.parts) {
			err = fmt.Errorf("%w: leaf of partition %d", ErrCorruption, pi)
		}
		if err != nil {
			it.Close()
			return fmt.Errorf("%w (key %x)", err, it.Key())
		}
		t.mu.parts[pi].leaves.ReplaceOrInsert(&leaf{start: start, rank: t.params.rank(start), fp: fp, dirty: dirty, pd: dirty})
	}
	if err := it.Close(); err != nil {
		return err
	}
	for _, p := range t.mu.parts {
		first, ok := p.leaves.Min()
		if !ok || !bytes.Equal(first.start, p.start) {
			return fmt.Errorf("%w: partition %d has no leaf at its start", ErrCorruption, p.id)
		}
		if v, err := getValue(t.db, rebuildKey(p.id)); err != nil {
			return err
		} else if v != nil {
			p.rebuilding, p.rebuildPersisted = true, true
		}
	}

	it, err = t.db.NewIter(&pebble.IterOptions{LowerBound: markerPrefix, UpperBound: keyspace.PrefixEnd(markerPrefix)})
	if err != nil {
		return err
	}
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()[len(markerPrefix):]
		if len(k) < 12 {
			it.Close()
			return fmt.Errorf("%w: marker key %x", ErrCorruption, it.Key())
		}
		if g := binary.BigEndian.Uint64(k); g > gen {
			gen = g
		}
		pi := int(binary.BigEndian.Uint32(k[8:]))
		if pi >= len(t.mu.parts) {
			it.Close()
			return fmt.Errorf("%w: marker of partition %d", ErrCorruption, pi)
		}
		p := t.mu.parts[pi]
		pos := k[12:]
		v := it.Value()
		end := []byte(nil)
		switch {
		case len(v) == 0: // a point marker: the leaf holding pos
		case v[0] == markerRange:
			end = v[1:]
		case v[0] == markerSpan && len(v) == 1:
			var ok bool
			if pos, end, ok = decodeSpan(pos); !ok {
				it.Close()
				return fmt.Errorf("%w: span marker %x", ErrCorruption, it.Key())
			}
			if len(end) == 0 { // to the partition's end
				end = openEnd
			}
		default:
			it.Close()
			return fmt.Errorf("%w: marker value %x", ErrCorruption, v)
		}
		markDirty(p, pos, end)
	}
	if err := it.Close(); err != nil {
		return err
	}
	t.mu.gen = gen + 1
	return nil
}

// openEnd is the end markDirty takes for "to the partition's end" (a span
// marker with an empty end); nil means a point marker.
var openEnd = []byte{}

func isOpenEnd(end []byte) bool { return end != nil && len(end) == 0 }

// markDirty marks the leaf containing pos (end nil) or every leaf overlapping
// [pos, end) (end openEnd: to the partition's end) dirty and
// persisted-dirty.
func markDirty(p *partTree, pos, end []byte) {
	first := p.floor(pos)
	if first == nil {
		first, _ = p.leaves.Min()
	}
	p.leaves.AscendGreaterOrEqual(first, func(l *leaf) bool {
		if l != first && (end == nil || (!isOpenEnd(end) && bytes.Compare(l.start, end) >= 0)) {
			return false
		}
		// changed: the persisted record may say clean; the next checkpoint
		// deletes the marker and must persist the leaf as dirty.
		p.leaves.markDirty(l)
		l.pd = true
		p.leaves.markChanged(l)
		return true
	})
}

// Checkpoint persists the tree: leaf records changed since the last
// checkpoint, removed leaves, and the removal of every marker the persisted
// state makes obsolete, in one synced batch. Writes racing the checkpoint are
// safe: a write's PreCommit marks its leaf dirty before the capture (then the
// leaf is persisted dirty) or writes its marker in the new generation (which
// this checkpoint does not delete).
func (t *Tree) Checkpoint(ctx context.Context) error {
	t.ckptMu.Lock()
	defer t.ckptMu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	b := t.db.NewBatch()
	defer b.Close()

	t.mu.Lock()
	if t.mu.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	oldGen := t.mu.gen
	t.mu.gen++
	// What this checkpoint captures, to undo if its batch fails.
	type capture struct {
		p        *partTree
		removed  []string
		written  []*leaf
		raisedPD []*leaf
		// attn are the leaves visited (leafSet.attn): on failure, those
		// still members are visited again by the next checkpoint.
		attn    map[*leaf]struct{}
		flipped bool
	}
	var caps []capture
	var err error
	for _, p := range t.mu.parts {
		c := capture{p: p}
		for start := range p.removed {
			c.removed = append(c.removed, start)
			if err == nil {
				err = b.Delete(leafKey(p.id, []byte(start)), nil)
			}
		}
		clear(p.removed)
		// Only the leaves whose flags changed since the last checkpoint
		// (a changed, dirty or persisted-dirty leaf is in the set), not
		// every leaf: this runs under the tree's lock.
		c.attn = p.leaves.takeAttn()
		for l := range c.attn {
			if l.changed {
				if err == nil {
					err = b.Set(leafKey(p.id, l.start), encodeLeaf(l), nil)
				}
				l.changed = false
				c.written = append(c.written, l)
			}
			// A clean leaf is persisted clean: a write to it needs a marker
			// again. A dirty leaf will be persisted dirty, but only once
			// the batch commits; until then a write to it must still
			// write its marker (if it had none), or a crash before the
			// commit would lose it. pd is raised after the commit.
			if l.dirty {
				if !l.pd {
					c.raisedPD = append(c.raisedPD, l)
				}
			} else {
				l.pd = false
			}
		}
		if p.rebuilding != p.rebuildPersisted && err == nil {
			if p.rebuilding {
				err = b.Set(rebuildKey(p.id), nil, nil)
			} else {
				err = b.Delete(rebuildKey(p.id), nil)
			}
			p.rebuildPersisted = p.rebuilding
			c.flipped = true
		}
		caps = append(caps, c)
	}
	t.mu.Unlock()
	if err == nil {
		err = b.DeleteRange(markerPrefix, markerKey(oldGen+1, 0, nil), nil)
	}
	if err == nil {
		err = b.Set(genKey, keyspace.Uint64(oldGen), nil)
	}
	if err == nil {
		err = b.Commit(pebble.Sync)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		// The leaves persisted dirty now cover their ranges on disk.
		for _, c := range caps {
			for _, l := range c.raisedPD {
				l.pd = true
			}
		}
	}
	if err != nil {
		// Nothing was persisted: everything captured is unpersisted again.
		for _, c := range caps {
			for _, s := range c.removed {
				if _, ok := c.p.leaves.Get(&leaf{start: []byte(s)}); !ok {
					c.p.removed[s] = struct{}{}
				}
			}
			for _, l := range c.written {
				l.changed = true
			}
			for l := range c.attn {
				if c.p.leaves.isMember(l) {
					c.p.leaves.addAttn(l)
				}
			}
			if c.flipped {
				c.p.rebuildPersisted = !c.p.rebuildPersisted
			}
		}
		return fmt.Errorf("merkle: checkpoint: %w", err)
	}
	t.mu.stats.Checkpoints++
	return nil
}
