// Package memreplica is an in-memory reconcile.Replica for tests and
// benchmarks: a sorted map from key to encoded record whose fingerprints,
// digests and child ranges are computed exactly as package merkle computes
// them over a Pebble database holding the same records, so a session driven
// against two memreplicas behaves as against two engines, without Pebble.
//
// Fingerprints are exact at every call (there is no lazy recomputation): a
// range's fingerprint is computed from prefix sums of the leaf digests in
// O(log n) once the prefix sums are current; a write invalidates them and the
// next query rebuilds them in O(n). Child ranges are split at the boundary
// keys (merkle's content-defined leaf starts) of lowest rank strictly inside
// the range, as merkle.Tree.Children does.
//
// All methods are safe for concurrent use; each answer reflects one
// consistent state of the replica.
package memreplica

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sort"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// Options configure a Replica.
type Options struct {
	// ID is the replica's ID (reported by Info); default "mem".
	ID record.ReplicaID
	// Mode is the replica's write mode; default record.ModeLWW.
	Mode record.Mode
	// Resolver merges applied records; default record.ResolverFor(Mode).
	Resolver record.Resolver
	// LeafSize and Seed are merkle.Params: a key is a leaf boundary with
	// probability 1/LeafSize (default 64).
	LeafSize uint32
	Seed     uint64
	// SplitPoints split the key space into len(SplitPoints)+1 partitions,
	// as merkle.SplitPoints does; nil means one partition.
	SplitPoints [][]byte
	// PageSize is the number of entries of a RangeScan page when the request
	// has no Limit; default 1024.
	PageSize int
	// HashVersion is reported in Info.Tree; default 1 (merkle.HashVersion).
	HashVersion uint32
}

// Replica is an in-memory reconcile.Replica. The zero value is not usable;
// call New.
type Replica struct {
	opts      Options
	threshold uint64
	parts     []reconcile.PartitionInfo

	mu struct {
		sync.Mutex
		recs     map[string][]byte
		notReady map[uint32]bool
		// index is the sorted view, rebuilt lazily after writes.
		index *index
		calls Calls
	}
}

// Calls counts the calls a Replica has served.
type Calls struct {
	Info, RangeHash, RangeScan, Fetch, Apply, RangeSketch, FetchByHash int
}

// index is an immutable sorted view of the records.
type index struct {
	keys    [][]byte
	digests [][32]byte
	// prefix[i] is the sum of digests[:i] modulo 2^256.
	prefix [][4]uint64
	// boundaries are the indexes of the boundary keys, ascending.
	boundaries []int
	ranks      []uint64 // ranks of boundaries, parallel
}

// New returns an empty replica.
func New(opts Options) (*Replica, error) {
	if opts.ID == "" {
		opts.ID = "mem"
	}
	if err := opts.ID.Validate(); err != nil {
		return nil, err
	}
	if opts.Mode == 0 {
		opts.Mode = record.ModeLWW
	}
	if opts.Resolver == nil {
		opts.Resolver = record.ResolverFor(opts.Mode)
		if opts.Resolver == nil {
			return nil, fmt.Errorf("memreplica: unknown mode %d", opts.Mode)
		}
	}
	if opts.LeafSize == 0 {
		opts.LeafSize = 64
	}
	if opts.LeafSize < 2 {
		return nil, fmt.Errorf("memreplica: leaf size %d < 2", opts.LeafSize)
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 1024
	}
	if opts.HashVersion == 0 {
		opts.HashVersion = 1
	}
	for i, p := range opts.SplitPoints {
		if len(p) == 0 || (i > 0 && bytes.Compare(opts.SplitPoints[i-1], p) >= 0) {
			return nil, fmt.Errorf("memreplica: split points must be non-empty and strictly increasing")
		}
	}
	r := &Replica{opts: opts, threshold: math.MaxUint64 / uint64(opts.LeafSize)}
	for i := 0; i <= len(opts.SplitPoints); i++ {
		var kr reconcile.KeyRange
		if i > 0 {
			kr.Start = opts.SplitPoints[i-1]
		}
		if i < len(opts.SplitPoints) {
			kr.End = opts.SplitPoints[i]
		}
		r.parts = append(r.parts, reconcile.PartitionInfo{ID: uint32(i), Range: kr, Ready: true})
	}
	r.mu.recs = map[string][]byte{}
	r.mu.notReady = map[uint32]bool{}
	return r, nil
}

// Rank is the content-defined rank of a key, merkle.Params.rank: splitmix64
// of xxhash64(key) XOR seed. A key is a leaf boundary when its rank is below
// MaxUint64/LeafSize.
func Rank(seed uint64, key []byte) uint64 { return mix64(xxhash.Sum64(key) ^ seed) }

// IsBoundary reports whether key starts a leaf under r's parameters.
func (r *Replica) IsBoundary(key []byte) bool { return Rank(r.opts.Seed, key) < r.threshold }

func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// partitionOf returns the partition of key.
func (r *Replica) partitionOf(key []byte) uint32 {
	return uint32(sort.Search(len(r.opts.SplitPoints), func(i int) bool {
		return bytes.Compare(r.opts.SplitPoints[i], key) > 0
	}))
}

// SetReady marks a partition ready or not (a tree being rebuilt).
func (r *Replica) SetReady(partition uint32, ready bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.notReady[partition] = !ready
}

// Set stores the encoding of rec under key, replacing any record: a raw
// write that bypasses the resolver (tests use it to build any state).
func (r *Replica) Set(key []byte, rec record.Record) {
	r.SetEncoded(key, rec.Encode())
}

// SetEncoded stores enc under key as it is, even if it does not decode.
func (r *Replica) SetEncoded(key, enc []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.recs[string(key)] = slices.Clone(enc)
	r.mu.index = nil
}

// Merge resolves rec into the record stored under key with the replica's
// resolver, as Apply does for one entry.
func (r *Replica) Merge(key []byte, rec record.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mergeLocked(key, rec)
}

func (r *Replica) mergeLocked(key []byte, rec record.Record) error {
	cur, ok := r.mu.recs[string(key)]
	if ok {
		old, err := record.DecodeRecord(cur)
		if err != nil {
			return fmt.Errorf("memreplica: stored record of %q: %w", key, err)
		}
		rec, err = r.opts.Resolver.Resolve(key, old, rec)
		if err != nil {
			return err
		}
	}
	enc := rec.Encode()
	if ok && bytes.Equal(enc, cur) {
		return nil
	}
	r.mu.recs[string(key)] = enc
	r.mu.index = nil
	return nil
}

// Get returns the decoded record of key.
func (r *Replica) Get(key []byte) (record.Record, bool, error) {
	r.mu.Lock()
	enc, ok := r.mu.recs[string(key)]
	r.mu.Unlock()
	if !ok {
		return record.Record{}, false, nil
	}
	rec, err := record.DecodeRecord(enc)
	return rec, true, err
}

// Len returns the number of records.
func (r *Replica) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.mu.recs)
}

// Calls returns the number of calls served so far.
func (r *Replica) Calls() Calls {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.calls
}

// Dump returns every (key, encoded record) pair in key order, with digests.
func (r *Replica) Dump() []reconcile.Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	ix := r.indexLocked()
	out := make([]reconcile.Entry, len(ix.keys))
	for i, k := range ix.keys {
		out[i] = reconcile.Entry{Key: slices.Clone(k), Digest: reconcile.ShortDigest(ix.digests[i]), Record: slices.Clone(r.mu.recs[string(k)])}
	}
	return out
}

// Root returns the fingerprint of a whole partition.
func (r *Replica) Root(partition uint32) (reconcile.Fingerprint, error) {
	if int(partition) >= len(r.parts) {
		return reconcile.Fingerprint{}, fmt.Errorf("memreplica: unknown partition %d", partition)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ix := r.indexLocked()
	lo, hi := ix.span(r.parts[partition].Range)
	return ix.fingerprint(lo, hi), nil
}

// indexLocked returns the current index, rebuilding it if needed.
func (r *Replica) indexLocked() *index {
	if r.mu.index != nil {
		return r.mu.index
	}
	ix := &index{keys: make([][]byte, 0, len(r.mu.recs))}
	for k := range r.mu.recs {
		ix.keys = append(ix.keys, []byte(k))
	}
	slices.SortFunc(ix.keys, bytes.Compare)
	ix.digests = make([][32]byte, len(ix.keys))
	ix.prefix = make([][4]uint64, len(ix.keys)+1)
	var scratch []byte
	for i, k := range ix.keys {
		ix.digests[i], scratch = reconcile.LeafDigest(scratch, k, r.mu.recs[string(k)])
		ix.prefix[i+1] = add256(ix.prefix[i], limbs(ix.digests[i]))
		if rk := Rank(r.opts.Seed, k); rk < r.threshold {
			ix.boundaries = append(ix.boundaries, i)
			ix.ranks = append(ix.ranks, rk)
		}
	}
	r.mu.index = ix
	return ix
}

func limbs(d [32]byte) [4]uint64 {
	var s [4]uint64
	for i := range s {
		for j := 7; j >= 0; j-- {
			s[i] = s[i]<<8 | uint64(d[8*i+j])
		}
	}
	return s
}

func add256(a, b [4]uint64) [4]uint64 {
	var c uint64
	a[0], c = bits.Add64(a[0], b[0], 0)
	a[1], c = bits.Add64(a[1], b[1], c)
	a[2], c = bits.Add64(a[2], b[2], c)
	a[3], _ = bits.Add64(a[3], b[3], c)
	return a
}

func sub256(a, b [4]uint64) [4]uint64 {
	var c uint64
	a[0], c = bits.Sub64(a[0], b[0], 0)
	a[1], c = bits.Sub64(a[1], b[1], c)
	a[2], c = bits.Sub64(a[2], b[2], c)
	a[3], _ = bits.Sub64(a[3], b[3], c)
	return a
}

// span returns the index interval [lo, hi) of the keys in kr.
func (ix *index) span(kr reconcile.KeyRange) (int, int) {
	lo := sort.Search(len(ix.keys), func(i int) bool { return bytes.Compare(ix.keys[i], kr.Start) >= 0 })
	hi := len(ix.keys)
	if len(kr.End) > 0 {
		hi = sort.Search(len(ix.keys), func(i int) bool { return bytes.Compare(ix.keys[i], kr.End) >= 0 })
	}
	return lo, max(lo, hi)
}

// fingerprint returns the fingerprint of keys[lo:hi].
func (ix *index) fingerprint(lo, hi int) reconcile.Fingerprint {
	s := sub256(ix.prefix[hi], ix.prefix[lo])
	var b [32]byte
	for i, l := range s {
		for j := 0; j < 8; j++ {
			b[8*i+j] = byte(l >> (8 * j))
		}
	}
	count := uint64(hi - lo)
	return reconcile.Fingerprint{Hash: reconcile.FingerprintHash(b, count), Count: count}
}

// checkRange validates kr against the partition and returns it with a nil End
// replaced by the partition end (which may itself be nil).
func (r *Replica) checkRange(partition uint32, kr reconcile.KeyRange) (reconcile.KeyRange, error) {
	if int(partition) >= len(r.parts) {
		return kr, fmt.Errorf("memreplica: unknown partition %d", partition)
	}
	if r.mu.notReady[partition] {
		return kr, fmt.Errorf("memreplica: partition %d not ready", partition)
	}
	p := r.parts[partition].Range
	if len(kr.End) == 0 {
		kr.End = p.End
	}
	if bytes.Compare(kr.Start, p.Start) < 0 || !kr.Valid() ||
		(len(p.End) > 0 && (len(kr.End) == 0 || bytes.Compare(kr.End, p.End) > 0)) {
		return kr, fmt.Errorf("memreplica: range %s outside partition %d %s", kr, partition, p)
	}
	return kr, nil
}

// Info implements reconcile.Replica.
func (r *Replica) Info(ctx context.Context) (reconcile.Info, error) {
	if err := ctx.Err(); err != nil {
		return reconcile.Info{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.calls.Info++
	parts := slices.Clone(r.parts)
	for i := range parts {
		parts[i].Ready = !r.mu.notReady[parts[i].ID]
	}
	name := "single"
	if len(r.opts.SplitPoints) > 0 {
		name = fmt.Sprintf("split:%x", r.opts.SplitPoints)
	}
	return reconcile.Info{
		ID:   r.opts.ID,
		Mode: r.opts.Mode,
		Tree: reconcile.TreeParams{
			HashVersion: r.opts.HashVersion, LeafSize: r.opts.LeafSize, Seed: r.opts.Seed, Partitioner: name,
		},
		Partitions: parts,
		// Sketches only: sessions with it use fixed-size sketches (or the
		// descent), and those paths stay tested.
		Capabilities: reconcile.CapSketch,
	}, nil
}

// RangeHash implements reconcile.Replica.
func (r *Replica) RangeHash(ctx context.Context, req reconcile.RangeHashRequest) ([]reconcile.RangeHash, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if req.Fanout == 1 || req.Fanout < 0 || req.Depth < 0 {
		return nil, fmt.Errorf("memreplica: bad fanout %d / depth %d", req.Fanout, req.Depth)
	}
	depth := req.Depth
	if req.Fanout > 0 && depth == 0 {
		depth = 1
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.calls.RangeHash++
	ix := r.indexLocked()
	out := make([]reconcile.RangeHash, len(req.Ranges))
	for i, kr := range req.Ranges {
		full, err := r.checkRange(req.Partition, kr)
		if err != nil {
			return nil, err
		}
		lo, hi := ix.span(full)
		out[i] = reconcile.RangeHash{Range: cloneRange(kr), Fingerprint: ix.fingerprint(lo, hi)}
		if req.Fanout > 0 {
			out[i].Children = ix.children(full, lo, hi, req.Fanout, depth)
		}
	}
	return out, nil
}

// children splits keys[lo:hi] (the keys of kr) at the fanout-1 boundary keys
// strictly inside kr of lowest rank, depth levels deep. A range that cannot be
// split has one child, itself, which is not split further.
func (ix *index) children(kr reconcile.KeyRange, lo, hi, fanout, depth int) []reconcile.Child {
	b0 := sort.SearchInts(ix.boundaries, lo)
	b1 := sort.SearchInts(ix.boundaries, hi)
	var cands []int // positions in ix.boundaries
	for b := b0; b < b1; b++ {
		if bytes.Compare(ix.keys[ix.boundaries[b]], kr.Start) > 0 {
			cands = append(cands, b)
		}
	}
	if len(cands) > fanout-1 {
		sort.Slice(cands, func(i, j int) bool {
			ri, rj := ix.ranks[cands[i]], ix.ranks[cands[j]]
			if ri != rj {
				return ri < rj
			}
			return cands[i] < cands[j]
		})
		cands = cands[:fanout-1]
		sort.Ints(cands)
	}
	out := make([]reconcile.Child, 0, len(cands)+1)
	start, from := kr.Start, lo
	for i := 0; i <= len(cands); i++ {
		end, to := kr.End, hi
		if i < len(cands) {
			to = ix.boundaries[cands[i]]
			end = ix.keys[to]
		}
		c := reconcile.Child{
			Range:       reconcile.KeyRange{Start: slices.Clone(start), End: slices.Clone(end)},
			Fingerprint: ix.fingerprint(from, to),
		}
		if depth > 1 && len(cands) > 0 {
			c.Children = ix.children(c.Range, from, to, fanout, depth-1)
		}
		out = append(out, c)
		start, from = end, to
	}
	return out
}

func cloneRange(kr reconcile.KeyRange) reconcile.KeyRange {
	return reconcile.KeyRange{Start: slices.Clone(kr.Start), End: slices.Clone(kr.End)}
}

// RangeScan implements reconcile.Replica.
func (r *Replica) RangeScan(ctx context.Context, req reconcile.RangeScanRequest) (reconcile.RangeScanResult, error) {
	if err := ctx.Err(); err != nil {
		return reconcile.RangeScanResult{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.calls.RangeScan++
	full, err := r.checkRange(req.Partition, req.Range)
	if err != nil {
		return reconcile.RangeScanResult{}, err
	}
	ix := r.indexLocked()
	lo, hi := ix.span(full)
	limit := req.Limit
	if limit <= 0 {
		limit = r.opts.PageSize
	}
	var res reconcile.RangeScanResult
	for i := lo; i < hi; i++ {
		if len(res.Entries) == limit {
			res.More, res.Next = true, slices.Clone(ix.keys[i])
			break
		}
		e := reconcile.Entry{Key: slices.Clone(ix.keys[i]), Digest: reconcile.ShortDigest(ix.digests[i])}
		if req.WithRecords {
			e.Record = slices.Clone(r.mu.recs[string(ix.keys[i])])
		}
		res.Entries = append(res.Entries, e)
	}
	return res, nil
}

// Fetch implements reconcile.Replica.
func (r *Replica) Fetch(ctx context.Context, partition uint32, keys [][]byte) ([]reconcile.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.calls.Fetch++
	if int(partition) >= len(r.parts) {
		return nil, fmt.Errorf("memreplica: unknown partition %d", partition)
	}
	if r.mu.notReady[partition] {
		return nil, fmt.Errorf("memreplica: partition %d not ready", partition)
	}
	sorted := slices.Clone(keys)
	slices.SortFunc(sorted, bytes.Compare)
	sorted = slices.CompactFunc(sorted, bytes.Equal)
	var out []reconcile.Entry
	for _, k := range sorted {
		if r.partitionOf(k) != partition {
			continue
		}
		enc, ok := r.mu.recs[string(k)]
		if !ok {
			continue
		}
		out = append(out, reconcile.Entry{Key: slices.Clone(k), Digest: reconcile.EntryDigest(k, enc), Record: slices.Clone(enc)})
	}
	return out, nil
}

// Apply implements reconcile.Replica: every entry is decoded, checked and
// resolved first, so a bad entry changes nothing.
func (r *Replica) Apply(ctx context.Context, partition uint32, entries []reconcile.Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	recs := make([]record.Record, len(entries))
	for i, e := range entries {
		if int(partition) >= len(r.parts) || r.partitionOf(e.Key) != partition {
			return fmt.Errorf("memreplica: apply key %q outside partition %d", e.Key, partition)
		}
		rec, err := record.DecodeRecord(slices.Clone(e.Record))
		if err != nil {
			return fmt.Errorf("memreplica: apply key %q: %w", e.Key, err)
		}
		recs[i] = rec
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.calls.Apply++
	// Resolve everything before storing anything: Apply is all or nothing.
	merged := make([][]byte, len(entries))
	for i, e := range entries {
		rec := recs[i]
		if cur, ok := r.mu.recs[string(e.Key)]; ok {
			old, err := record.DecodeRecord(cur)
			if err != nil {
				return fmt.Errorf("memreplica: stored record of %q: %w", e.Key, err)
			}
			if rec, err = r.opts.Resolver.Resolve(e.Key, old, rec); err != nil {
				return fmt.Errorf("memreplica: apply key %q: %w", e.Key, err)
			}
		}
		merged[i] = rec.Encode()
	}
	for i, e := range entries {
		if !bytes.Equal(r.mu.recs[string(e.Key)], merged[i]) {
			r.mu.recs[string(e.Key)] = merged[i]
			r.mu.index = nil
		}
	}
	return nil
}

// RangeSketch implements reconcile.Replica (CapSketch).
func (r *Replica) RangeSketch(ctx context.Context, req reconcile.RangeSketchRequest) (reconcile.RangeSketchResult, error) {
	if err := ctx.Err(); err != nil {
		return reconcile.RangeSketchResult{}, err
	}
	if err := reconcile.ValidateSketchRequest(req); err != nil {
		return reconcile.RangeSketchResult{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.calls.RangeSketch++
	ix := r.indexLocked()
	b := reconcile.NewSketchBuilder(req)
	err := r.eachLocked(ix, req.Partition, req.Ranges, func(i int) {
		b.Add(reconcile.ShortDigest(ix.digests[i]))
	})
	return b.Result(), err
}

// FetchByHash implements reconcile.Replica (CapSketch).
func (r *Replica) FetchByHash(ctx context.Context, req reconcile.FetchByHashRequest) ([]reconcile.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(req.IDs) > reconcile.MaxSketchIDs {
		return nil, reconcile.ErrBadSketchRequest
	}
	want := make(map[uint64]bool, len(req.IDs))
	for _, id := range req.IDs {
		want[id] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.calls.FetchByHash++
	ix := r.indexLocked()
	var out []reconcile.Entry
	err := r.eachLocked(ix, req.Partition, req.Ranges, func(i int) {
		d := reconcile.ShortDigest(ix.digests[i])
		if want[reconcile.SketchID(d)] {
			out = append(out, reconcile.Entry{Key: slices.Clone(ix.keys[i]), Record: slices.Clone(r.mu.recs[string(ix.keys[i])])})
		}
	})
	return out, err
}

// eachLocked calls fn with the index of every key of the sorted, disjoint
// ranges.
func (r *Replica) eachLocked(ix *index, partition uint32, ranges []reconcile.KeyRange, fn func(int)) error {
	for i, kr := range ranges {
		full, err := r.checkRange(partition, kr)
		if err != nil {
			return err
		}
		if i > 0 && (len(ranges[i-1].End) == 0 || bytes.Compare(ranges[i-1].End, kr.Start) > 0) {
			return fmt.Errorf("memreplica: ranges not sorted and disjoint at %s", kr)
		}
		lo, hi := ix.span(full)
		for j := lo; j < hi; j++ {
			fn(j)
		}
	}
	return nil
}

// OpenSymbols implements reconcile.Replica: not served (no CapSymbols).
func (r *Replica) OpenSymbols(context.Context, reconcile.SymbolsRequest) (reconcile.SymbolStream, error) {
	return nil, fmt.Errorf("%w: memreplica %q streams no symbols", reconcile.ErrUnsupported, r.opts.ID)
}

// ApplyAndHash implements reconcile.Replica: not served (no
// CapApplyAndHash; sessions apply, then hash).
func (r *Replica) ApplyAndHash(context.Context, uint32, []reconcile.Entry, []reconcile.KeyRange) ([]reconcile.RangeHash, error) {
	return nil, fmt.Errorf("%w: memreplica %q has no apply-and-hash", reconcile.ErrUnsupported, r.opts.ID)
}

var _ reconcile.Replica = (*Replica)(nil)
