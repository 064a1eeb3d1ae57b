package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pebble-ae/pebble-ae/internal/keyspace"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile"
)

// The entry index: what a symbol stream and FetchByHash need of a
// partition, kept on disk, current with every recompute of the tree, and
// crash-consistent with it, so that a session costs a function of the
// differences whatever the partition's size and however recently the
// process started.
//
// A symbol stream's first symbols are a partition's symbol prefix
// (reconcile.SymbolPrefix): symbols are linear in the set of entries, so a
// changed entry moves only the ~2·ln(n/2)+1 symbols it maps to, if the
// entry's old ID is known. The tree never reads on the write path, so old
// IDs come from fragments: the sketch IDs of the records of every leaf as
// its last recompute scanned them. And FetchByHash finds the records of
// decoded IDs through an ID index (ID -> fragment) instead of a scan.
//
// Layout (under keyspace.InternalPrefix; p is the partition, 4 bytes):
//
//	f p start         -> uvarint(len(end)) end id(6)...   a fragment: the IDs of the
//	                                                      records of [start, end), key order
//	x p id(6) start   -> ""                               fragment start holds id
//	y p 'm'           -> version(1) uvarint(symbols) uvarint(count)
//	y p 'c' chunk(4)  -> 256 symbols of 9 bytes: count(1) check(2) id(6)
//
// Maintenance: the tree shows every recompute's scan to the index before it
// installs the scanned leaves (merkle.Options.SpanObserver), and the index
// writes, in one Pebble batch: the scanned leaves as fragments, replacing
// every fragment that starts in the scanned spans; the index entries of the
// IDs that came and went; the prefix's symbols that changed; the count.
// Nothing is read or written on the write path.
//
// Invariants:
//
//  1. On disk, after every batch: the prefix is the symbol prefix of the
//     multiset of every fragment's IDs, its count their number, and
//     (p, id, start) is in the ID index iff fragment start holds id.
//  2. For every clean leaf L of the tree, the fragments starting in L hold
//     exactly the IDs of L's records. (A fragment reaches past its leaf
//     only after a boundary key split the leaf holding its start, which
//     leaves that leaf dirty until a recompute replaces the fragment; the
//     tree's markers cover the same ranges after a crash.) So when every
//     leaf of a partition is clean, the prefix is exactly the prefix of
//     the partition's records.
//
// The batch is applied before the tree installs the leaves, hence before a
// checkpoint can record them clean (and the checkpoint's synced batch
// follows it in the WAL). A crash between the two loses nothing: the leaves
// are still dirty on disk and are scanned again, and that scan moves
// nothing that is already right.
//
// Cost: 6 bytes a record in fragments and ~11 bytes plus the key in the ID
// index on disk; 16 bytes a prefix symbol in memory; a recompute writes the
// fragments it scanned, two index entries and ~2·ln(n/2)+1 symbols a
// changed record.

const (
	entryIndexVersion = 1
	// prefixChunkCells is the number of symbols in a persisted chunk.
	prefixChunkCells = 256
	cellBytes        = 9
	idBytes          = 6
	// DefaultPrefixSymbols is the default of Options.PrefixSymbols for a
	// single partition: streams of up to ~20 000 differing entries a
	// partition (1.4–1.6 symbols each) are served from it; larger
	// differences are localized by the tree descent.
	DefaultPrefixSymbols = 1 << 15
	// minPrefixSymbols is the smallest default prefix of a partition.
	minPrefixSymbols = 1 << 10
	// maxEncodeBeyondPrefix is the largest partition whose stream goes on
	// past its prefix, encoded from its fragments (a sequential read of 6
	// bytes a record); a larger one ends the stream there, and the
	// session descends the tree instead.
	maxEncodeBeyondPrefix = 1 << 20
)

// ErrCorruptEntryIndex reports a malformed persisted entry index (Open, a
// symbol stream or a fetch by ID); a rebuild of the partition
// (merkle.Tree.MarkRebuild, `pebble-ae rebuild`) repairs it.
var ErrCorruptEntryIndex = errors.New("engine: corrupt entry index")

// entryIndex is the engine's entry index (see above). Observe calls never
// overlap (the tree's recompute lock); mu guards the in-memory prefixes
// against the streams that copy them.
type entryIndex struct {
	db      *pebble.DB
	symbols int

	mu       sync.Mutex
	prefixes []*reconcile.SymbolPrefix
	// missing are the partitions whose index was absent, corrupt, or of
	// another version or prefix length at open (the engine rebuilds
	// them); corrupt says what was wrong with the corrupt ones.
	missing []int
	corrupt []error

	// Counters (tests, diagnostics): the fragments FetchByHash read and
	// the records it found changed since their fragment was written.
	fragmentsRead, stale atomic.Uint64
}

func fragmentKey(p uint32, start []byte) []byte {
	return keyspace.Key(keyspace.SpaceFragment, keyspace.Uint32(p), start)
}

func entryIDKey(p uint32, id uint64, start []byte) []byte {
	k := keyspace.Key(keyspace.SpaceEntryID, keyspace.Uint32(p))
	k = binary.BigEndian.AppendUint64(k, id)
	k = append(k[:len(k)-8], k[len(k)-idBytes:]...)
	return append(k, start...)
}

func prefixMetaKey(p uint32) []byte {
	return keyspace.Key(keyspace.SpacePrefix, keyspace.Uint32(p), []byte{'m'})
}

func prefixChunkKey(p uint32, chunk int) []byte {
	return keyspace.Key(keyspace.SpacePrefix, keyspace.Uint32(p), []byte{'c'}, keyspace.Uint32(uint32(chunk)))
}

// spaceOf returns the bounds of partition p's keys in space.
func spaceOf(space byte, p uint32) (lo, hi []byte) {
	lo = keyspace.Key(space, keyspace.Uint32(p))
	return lo, keyspace.PrefixEnd(lo)
}

// defaultPrefixSymbols returns the prefix length for parts partitions: the
// default's symbols shared among them (a difference spread over many
// partitions needs fewer symbols in each), at least minPrefixSymbols.
func defaultPrefixSymbols(parts int) int {
	n := DefaultPrefixSymbols
	for n > minPrefixSymbols && n*parts > DefaultPrefixSymbols*4 {
		n /= 2
	}
	return n
}

// openEntryIndex loads the prefixes of parts partitions of symbols symbols
// each. Partitions without an index of this version and length get an
// empty prefix and are listed in missing.
func openEntryIndex(db *pebble.DB, parts, symbols int) (*entryIndex, error) {
	x := &entryIndex{db: db, symbols: symbols, prefixes: make([]*reconcile.SymbolPrefix, parts)}
	for p := range parts {
		pre, ok, err := x.load(uint32(p))
		if errors.Is(err, ErrCorruptEntryIndex) {
			// Like a corrupt tree: rebuilt from the data, not fatal.
			x.corrupt = append(x.corrupt, err)
			ok, err = false, nil
		}
		if err != nil {
			return nil, err
		}
		if !ok {
			pre = reconcile.NewSymbolPrefix(symbols)
			x.missing = append(x.missing, p)
		}
		x.prefixes[p] = pre
	}
	return x, nil
}

// load reads partition p's prefix; ok is false if it has none of this
// version and length.
func (x *entryIndex) load(p uint32) (pre *reconcile.SymbolPrefix, ok bool, err error) {
	v, closer, err := x.db.Get(prefixMetaKey(p))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	meta := slices.Clone(v)
	closer.Close()
	if len(meta) < 1 || meta[0] != entryIndexVersion {
		return nil, false, nil
	}
	symbols, n := binary.Uvarint(meta[1:])
	if n <= 0 {
		return nil, false, fmt.Errorf("%w: partition %d: meta %x", ErrCorruptEntryIndex, p, meta)
	}
	count, m := binary.Uvarint(meta[1+n:])
	if m <= 0 {
		return nil, false, fmt.Errorf("%w: partition %d: meta %x", ErrCorruptEntryIndex, p, meta)
	}
	if symbols != uint64(x.symbols) {
		return nil, false, nil
	}
	cells := make([]reconcile.SketchCell, x.symbols)
	lo, _ := spaceOf(keyspace.SpacePrefix, p)
	chunks := append(lo, 'c')
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: chunks, UpperBound: keyspace.PrefixEnd(chunks)})
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()
		if len(k) != len(lo)+5 {
			return nil, false, fmt.Errorf("%w: partition %d: chunk key %x", ErrCorruptEntryIndex, p, k)
		}
		chunk := int(binary.BigEndian.Uint32(k[len(lo)+1:]))
		v := it.Value()
		if chunk*prefixChunkCells >= len(cells) || len(v) != cellBytes*min(prefixChunkCells, len(cells)-chunk*prefixChunkCells) {
			return nil, false, fmt.Errorf("%w: partition %d: chunk %d of %d bytes", ErrCorruptEntryIndex, p, chunk, len(v))
		}
		for i := range len(v) / cellBytes {
			cells[chunk*prefixChunkCells+i] = decodeCell(v[i*cellBytes:])
		}
	}
	if err := it.Error(); err != nil {
		return nil, false, err
	}
	return reconcile.NewSymbolPrefixOf(cells, count), true, nil
}

func encodeCell(dst []byte, c reconcile.SketchCell) []byte {
	dst = append(dst, byte(c.Count))
	dst = binary.BigEndian.AppendUint16(dst, c.Check)
	var id [8]byte
	binary.BigEndian.PutUint64(id[:], c.ID)
	return append(dst, id[8-idBytes:]...)
}

func decodeCell(b []byte) reconcile.SketchCell {
	var id [8]byte
	copy(id[8-idBytes:], b[3:cellBytes])
	return reconcile.SketchCell{Count: int8(b[0]), Check: binary.BigEndian.Uint16(b[1:3]), ID: binary.BigEndian.Uint64(id[:])}
}

// encodeFragment returns a fragment's value.
func encodeFragment(end []byte, ids []uint64) []byte {
	v := make([]byte, 0, binary.MaxVarintLen32+len(end)+idBytes*len(ids))
	v = binary.AppendUvarint(v, uint64(len(end)))
	v = append(v, end...)
	for _, id := range ids {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], id)
		v = append(v, b[8-idBytes:]...)
	}
	return v
}

// decodeFragment parses a fragment's value.
func decodeFragment(v []byte) (end []byte, ids []uint64, err error) {
	n, k := binary.Uvarint(v)
	if k <= 0 || uint64(len(v)-k) < n || (uint64(len(v)-k)-n)%idBytes != 0 {
		return nil, nil, fmt.Errorf("%w: fragment of %d bytes", ErrCorruptEntryIndex, len(v))
	}
	end = v[k : k+int(n)]
	rest := v[k+int(n):]
	ids = make([]uint64, len(rest)/idBytes)
	for i := range ids {
		var b [8]byte
		copy(b[8-idBytes:], rest[i*idBytes:])
		ids[i] = binary.BigEndian.Uint64(b[:])
	}
	if len(end) == 0 {
		end = nil
	}
	return end, ids, nil
}

// observe is the tree's merkle.Options.SpanObserver: it replaces the
// fragments starting in the scanned spans by the scanned leaves, and moves
// the ID index and the prefix by what changed, in one batch.
func (x *entryIndex) observe(part int, spans []merkle.ObservedSpan, reset bool) error {
	p := uint32(part)
	b := x.db.NewBatch()
	defer b.Close()
	if reset {
		// Before the batch's sets: a later operation of a batch wins.
		for _, space := range []byte{keyspace.SpaceFragment, keyspace.SpaceEntryID, keyspace.SpacePrefix} {
			lo, hi := spaceOf(space, p)
			if err := b.DeleteRange(lo, hi, nil); err != nil {
				return err
			}
		}
	}
	var toggles []idToggle
	// One iterator over the partition's fragments for every span (spans
	// are sorted and disjoint).
	var frags *fragmentReader
	if !reset {
		var err error
		if frags, err = newFragmentReader(x.db, p); err != nil {
			return err
		}
		defer frags.close()
	}
	for _, sp := range spans {
		old := map[string][]uint64{}
		if !reset {
			if err := frags.read(sp.Start, sp.End, func(start, _ []byte, ids []uint64) {
				old[string(start)] = ids
			}); err != nil {
				return err
			}
		}
		for i, l := range sp.Leaves {
			end := sp.End
			if i+1 < len(sp.Leaves) {
				end = sp.Leaves[i+1].Start
			}
			ids := make([]uint64, len(l.Digests))
			for j, d := range l.Digests {
				ids[j] = reconcile.SketchID(d)
			}
			prev, had := old[string(l.Start)]
			delete(old, string(l.Start))
			if len(ids) == 0 {
				if had {
					if err := b.Delete(fragmentKey(p, l.Start), nil); err != nil {
						return err
					}
				}
			} else if err := b.Set(fragmentKey(p, l.Start), encodeFragment(end, ids), nil); err != nil {
				return err
			}
			gone, came := idDiff(prev, ids)
			for _, id := range gone {
				toggles = append(toggles, idToggle{id: id, add: false})
			}
			for _, id := range came {
				toggles = append(toggles, idToggle{id: id, add: true})
			}
			if err := x.moveIDs(b, p, l.Start, prev, ids); err != nil {
				return err
			}
		}
		// Fragments of the span that are no longer leaves' own.
		for start, ids := range old {
			if err := b.Delete(fragmentKey(p, []byte(start)), nil); err != nil {
				return err
			}
			for _, id := range ids {
				toggles = append(toggles, idToggle{id: id, add: false})
			}
			if err := x.moveIDs(b, p, []byte(start), ids, nil); err != nil {
				return err
			}
		}
	}

	x.mu.Lock()
	defer x.mu.Unlock()
	pre := x.prefixes[p]
	if reset {
		pre = reconcile.NewSymbolPrefix(x.symbols)
	}
	touched := map[int]struct{}{}
	mark := func(i int) { touched[i/prefixChunkCells] = struct{}{} }
	undo := func(n int) {
		for _, t := range toggles[:n] {
			if t.add {
				pre.RemoveID(t.id, nil)
			} else {
				pre.AddID(t.id, nil)
			}
		}
	}
	for _, t := range toggles {
		if t.add {
			pre.AddID(t.id, mark)
		} else {
			pre.RemoveID(t.id, mark)
		}
	}
	if reset {
		// Every chunk, so that a prefix read back has them all.
		for c := 0; c*prefixChunkCells < pre.Len(); c++ {
			touched[c] = struct{}{}
		}
	}
	var buf []byte
	for c := range touched {
		buf = buf[:0]
		for i := c * prefixChunkCells; i < min((c+1)*prefixChunkCells, pre.Len()); i++ {
			buf = encodeCell(buf, pre.Cell(i))
		}
		if err := b.Set(prefixChunkKey(p, c), buf, nil); err != nil {
			undo(len(toggles))
			return err
		}
	}
	meta := []byte{entryIndexVersion}
	meta = binary.AppendUvarint(meta, uint64(x.symbols))
	meta = binary.AppendUvarint(meta, pre.Count())
	if err := b.Set(prefixMetaKey(p), meta, nil); err != nil {
		undo(len(toggles))
		return err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		if !reset {
			undo(len(toggles))
		}
		return err
	}
	x.prefixes[p] = pre
	return nil
}

// idToggle is an ID added to or removed from a prefix.
type idToggle struct {
	id  uint64
	add bool
}

// moveIDs writes the ID index entries of fragment start whose IDs go from
// old to new: entries for IDs no longer held are deleted, new ones set.
func (x *entryIndex) moveIDs(b *pebble.Batch, p uint32, start []byte, old, new []uint64) error {
	had := make(map[uint64]struct{}, len(old))
	for _, id := range old {
		had[id] = struct{}{}
	}
	has := make(map[uint64]struct{}, len(new))
	for _, id := range new {
		has[id] = struct{}{}
	}
	for id := range had {
		if _, ok := has[id]; !ok {
			if err := b.Delete(entryIDKey(p, id, start), nil); err != nil {
				return err
			}
		}
	}
	for id := range has {
		if _, ok := had[id]; !ok {
			if err := b.Set(entryIDKey(p, id, start), nil, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// idDiff returns the IDs of old missing from new and those of new missing
// from old, as multisets.
func idDiff(old, new []uint64) (gone, came []uint64) {
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

type iterReader interface {
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

// fragmentReader reads the fragments of one partition, range after range
// in key order, with one iterator.
type fragmentReader struct {
	it   *pebble.Iterator
	p    uint32
	base []byte
}

func newFragmentReader(r iterReader, p uint32) (*fragmentReader, error) {
	lo, hi := spaceOf(keyspace.SpaceFragment, p)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	return &fragmentReader{it: it, p: p, base: lo}, nil
}

func (f *fragmentReader) close() error { return f.it.Close() }

// read calls fn with every fragment starting in [lo, hi) (hi nil: to the
// partition's last).
func (f *fragmentReader) read(lo, hi []byte, fn func(start, end []byte, ids []uint64)) error {
	var upper []byte
	if hi != nil {
		upper = fragmentKey(f.p, hi)
	}
	for valid := f.it.SeekGE(fragmentKey(f.p, lo)); valid; valid = f.it.Next() {
		if upper != nil && bytes.Compare(f.it.Key(), upper) >= 0 {
			break
		}
		fend, ids, err := decodeFragment(f.it.Value())
		if err != nil {
			return fmt.Errorf("partition %d fragment %q: %w", f.p, f.it.Key()[len(f.base):], err)
		}
		fn(slices.Clone(f.it.Key()[len(f.base):]), slices.Clone(fend), ids)
	}
	return f.it.Error()
}

// readFragmentsFrom calls fn with every fragment of partition p starting
// in [lo, hi) (hi nil: to the partition's last) in r.
func readFragmentsFrom(r iterReader, p uint32, lo, hi []byte, fn func(start, end []byte, ids []uint64)) error {
	f, err := newFragmentReader(r, p)
	if err != nil {
		return err
	}
	return errors.Join(f.read(lo, hi, fn), f.close())
}

// prefixOf returns a copy of partition p's first n symbols (at most the
// prefix's length), the partition's count, and a snapshot of the DB whose
// fragments are those symbols' (taken under mu, which observe holds while
// it commits); the caller closes it.
func (x *entryIndex) prefixOf(p uint32, n int) ([]reconcile.SketchCell, uint64, *pebble.Snapshot) {
	x.mu.Lock()
	defer x.mu.Unlock()
	pre := x.prefixes[p]
	return pre.SymbolsN(min(n, pre.Len())), pre.Count(), x.db.NewSnapshot()
}

// allIDs returns every ID of partition p's fragments, from snap, as
// digests (SketchID(d) is the ID) for a symbol encoder.
func allIDs(snap *pebble.Snapshot, p uint32, count uint64) ([]uint64, error) {
	out := make([]uint64, 0, count)
	err := readFragmentsFrom(snap, p, nil, nil, func(_, _ []byte, ids []uint64) {
		for _, id := range ids {
			out = append(out, id<<(64-reconcile.SketchIDBits))
		}
	})
	return out, err
}

// openSymbols serves a stream of partition part's coded symbols from its
// prefix, after recomputing the partition's dirty leaves (which brings the
// prefix up to date). Past the prefix, a partition of at most
// maxEncodeBeyondPrefix records is encoded from its fragments; a larger
// one's stream ends there.
func (e *Engine) openSymbols(ctx context.Context, part uint32, max int) (reconcile.SymbolStream, error) {
	start, end := e.tree.Partitioner().Bounds(int(part))
	if _, err := e.tree.RangeFingerprint(ctx, int(part), merkle.Range{Start: start, End: end}); err != nil {
		return nil, wrapTreeErr(err)
	}
	cells, count, snap := e.entries.prefixOf(part, max)
	if len(cells) == max || count > maxEncodeBeyondPrefix {
		snap.Close()
		return reconcile.NewPrefixStream(cells, count, nil, len(cells)), nil
	}
	var ids []uint64
	var err error
	digests := func() []uint64 {
		ids, err = allIDs(snap, part, count)
		return ids
	}
	return &snapStream{PrefixStream: reconcile.NewPrefixStream(cells, count, digests, max), snap: snap, err: &err}, nil
}

// snapStream is a PrefixStream that encodes past its prefix from a
// snapshot's fragments; Close releases the snapshot.
type snapStream struct {
	*reconcile.PrefixStream
	snap *pebble.Snapshot
	err  *error
	once sync.Once
}

func (s *snapStream) Next(ctx context.Context) (reconcile.SymbolChunk, error) {
	c, err := s.PrefixStream.Next(ctx)
	if *s.err != nil {
		return reconcile.SymbolChunk{}, *s.err
	}
	return c, err
}

func (s *snapStream) Close() { s.once.Do(func() { s.snap.Close() }) }

// fetchByID returns the records of partition part whose sketch IDs are
// wanted, in key order, found through the ID index: a seek a wanted ID, a
// read of the fragments holding them and of their records at the
// fragments' positions. The partition's dirty leaves are recomputed first
// (the session may have applied writes since its stream), so fragments
// are current; a fragment a racing write made stale is read whole and
// every record hashed instead.
func (e *Engine) fetchByID(ctx context.Context, part uint32, want map[uint64]struct{}) ([]reconcile.Entry, error) {
	start, end := e.tree.Partitioner().Bounds(int(part))
	if _, err := e.tree.RangeFingerprint(ctx, int(part), merkle.Range{Start: start, End: end}); err != nil {
		return nil, wrapTreeErr(err)
	}
	snap := e.db.NewSnapshot()
	defer snap.Close()
	// Fragment start -> the wanted IDs it holds.
	byStart := map[string]map[uint64]struct{}{}
	ids := make([]uint64, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	it, err := snap.NewIter(nil)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		lo := entryIDKey(part, id, nil)
		for valid := it.SeekGE(lo); valid && bytes.HasPrefix(it.Key(), lo); valid = it.Next() {
			s := string(it.Key()[len(lo):])
			if byStart[s] == nil {
				byStart[s] = map[uint64]struct{}{}
			}
			byStart[s][id] = struct{}{}
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	starts := make([]string, 0, len(byStart))
	for s := range byStart {
		starts = append(starts, s)
	}
	slices.Sort(starts)
	data, err := merkle.NewUserIter(ctx, snap, nil, nil)
	if err != nil {
		return nil, err
	}
	defer data.Close()
	var out []reconcile.Entry
	var scratch []byte
	for _, s := range starts {
		start := []byte(s)
		v, closer, err := snap.Get(fragmentKey(part, start))
		if errors.Is(err, pebble.ErrNotFound) {
			return nil, fmt.Errorf("%w: partition %d: ID index names fragment %q, which is missing", ErrCorruptEntryIndex, part, start)
		}
		if err != nil {
			return nil, err
		}
		end, fids, err := decodeFragment(v)
		end = slices.Clone(end)
		closer.Close()
		if err != nil {
			return nil, fmt.Errorf("partition %d fragment %q: %w", part, start, err)
		}
		e.entries.fragmentsRead.Add(1)
		wanted := byStart[s]
		last := -1
		for i, id := range fids {
			if _, ok := wanted[id]; ok {
				last = i
			}
		}
		var found []reconcile.Entry
		var err2 error
		found, scratch, err2 = fragmentRecords(data, start, end, fids, wanted, last, scratch)
		if errors.Is(err2, errStaleFragment) {
			e.entries.stale.Add(1)
			found, scratch, err2 = fragmentRecords(data, start, end, nil, wanted, -1, scratch)
		}
		if err2 != nil {
			return nil, err2
		}
		out = append(out, found...)
	}
	return out, nil
}

// errStaleFragment: a record at a fragment's position is not the one the
// fragment names (a write since the fragment was written).
var errStaleFragment = errors.New("engine: stale fragment")

// fragmentRecords returns the records of [start, end) whose IDs are
// wanted. With fids (the fragment's IDs) it reads only positions up to
// last and hashes only those whose fragment ID is wanted, and fails with
// errStaleFragment if one does not match; without, it hashes every record
// of the range.
func fragmentRecords(data *merkle.UserIter, start, end []byte, fids []uint64, wanted map[uint64]struct{}, last int, scratch []byte) ([]reconcile.Entry, []byte, error) {
	var out []reconcile.Entry
	var valid bool
	if len(start) == 0 {
		valid = data.First()
	} else {
		valid = data.SeekGE(start)
	}
	pos := 0
	for ; valid && (fids == nil || pos <= last); valid, pos = data.Next(), pos+1 {
		k := data.Key()
		if end != nil && bytes.Compare(k, end) >= 0 {
			break
		}
		if fids != nil {
			if _, ok := wanted[fids[pos]]; !ok {
				continue
			}
		}
		val, err := data.ValueAndErr()
		if err != nil {
			return nil, scratch, err
		}
		var d merkle.Digest
		d, scratch = merkle.LeafDigest(scratch, k, val)
		id := reconcile.SketchID(d.Short())
		if fids != nil && id != fids[pos] {
			return nil, scratch, errStaleFragment
		}
		if _, ok := wanted[id]; ok {
			out = append(out, reconcile.Entry{Key: slices.Clone(k), Record: slices.Clone(val)})
		}
	}
	if err := data.Error(); err != nil {
		return nil, scratch, err
	}
	if fids != nil && pos <= last {
		// The range ended before the fragment's last wanted position.
		return nil, scratch, errStaleFragment
	}
	return out, scratch, nil
}

// verifyEntries checks partition part's entry index against its data
// (after recomputing its dirty leaves): the fragments' IDs are the
// records' IDs, the ID index names exactly the fragments' IDs, and the
// prefix is the symbol prefix of the records. Writes racing it may show as
// mismatches.
func (e *Engine) verifyEntries(ctx context.Context, part int) ([]merkle.Mismatch, error) {
	p := uint32(part)
	start, end := e.tree.Partitioner().Bounds(part)
	if _, err := e.tree.RangeFingerprint(ctx, part, merkle.Range{Start: start, End: end}); err != nil {
		return nil, wrapTreeErr(err)
	}
	e.entries.mu.Lock()
	pre := reconcile.NewSymbolPrefixOf(e.entries.prefixes[p].Symbols(), e.entries.prefixes[p].Count())
	snap := e.db.NewSnapshot()
	e.entries.mu.Unlock()
	defer snap.Close()
	var out []merkle.Mismatch
	bad := func(format string, args ...any) {
		out = append(out, merkle.Mismatch{Partition: part, Start: start, End: end, Kind: "entry index", Detail: fmt.Sprintf(format, args...)})
	}
	// The records' IDs, from a scan.
	want := reconcile.NewSymbolPrefix(pre.Len())
	data := map[uint64]int{}
	it, err := merkle.NewUserIter(ctx, snap, start, end)
	if err != nil {
		return nil, err
	}
	var scratch []byte
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return nil, err
		}
		var d merkle.Digest
		d, scratch = merkle.LeafDigest(scratch, it.Key(), v)
		id := reconcile.SketchID(d.Short())
		data[id]++
		want.AddID(id, nil)
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, err
	}
	// The fragments' IDs and the index.
	frags := map[uint64]int{}
	indexed := map[string]struct{}{}
	err = readFragmentsFrom(snap, p, nil, nil, func(fstart, _ []byte, ids []uint64) {
		for _, id := range ids {
			frags[id]++
			indexed[string(entryIDKey(p, id, fstart))] = struct{}{}
		}
	})
	if err != nil {
		return nil, err
	}
	for id, n := range data {
		if frags[id] != n {
			bad("ID %012x: %d records, %d in fragments", id, n, frags[id])
		}
	}
	for id, n := range frags {
		if data[id] == 0 {
			bad("ID %012x: %d in fragments, no record", id, n)
		}
	}
	lo, hi := spaceOf(keyspace.SpaceEntryID, p)
	xit, err := snap.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	n := 0
	for valid := xit.First(); valid; valid = xit.Next() {
		n++
		if _, ok := indexed[string(xit.Key())]; !ok {
			bad("ID index entry %x names no fragment's ID", xit.Key()[len(lo):])
		}
	}
	if err := errors.Join(xit.Error(), xit.Close()); err != nil {
		return nil, err
	}
	if n != len(indexed) {
		bad("ID index holds %d entries, the fragments %d distinct (fragment, ID)", n, len(indexed))
	}
	if pre.Count() != want.Count() {
		bad("prefix counts %d records, the data %d", pre.Count(), want.Count())
	}
	for i := range pre.Len() {
		if pre.Cell(i) != want.Cell(i) {
			bad("prefix symbol %d differs from the data's", i)
			break
		}
	}
	return out, nil
}

// PrefixMemoryBytes returns the memory of the engine's symbol prefixes (16
// bytes a symbol, PrefixSymbols a partition).
func (e *Engine) PrefixMemoryBytes() int {
	e.entries.mu.Lock()
	defer e.entries.mu.Unlock()
	n := 0
	for _, p := range e.entries.prefixes {
		n += 16 * p.Len()
	}
	return n
}
