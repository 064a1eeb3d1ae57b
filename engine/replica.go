package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// Limits on anti-entropy requests; larger requests fail with ErrBadRequest.
const (
	MaxFanout         = 256
	MaxDepth          = 4
	MaxRanges         = 4096
	MaxKeysPerRequest = reconcile.ApplyMessageEntries
	DefaultScanLimit  = 1000
)

var _ reconcile.Replica = (*Engine)(nil)

// Info describes the replica (reconcile.Replica).
func (e *Engine) Info(ctx context.Context) (reconcile.Info, error) {
	if err := e.enter(); err != nil {
		return reconcile.Info{}, err
	}
	defer e.exit()
	info := reconcile.Info{
		ID:   e.opts.ReplicaID,
		Mode: e.opts.Mode,
		Tree: reconcile.TreeParams{
			HashVersion: merkle.HashVersion,
			LeafSize:    e.opts.Tree.LeafSize,
			Seed:        e.opts.Tree.Seed,
			Partitioner: e.opts.Partitioner.Name(),
		},
		Capabilities:   reconcile.CapAll,
		WallTime:       e.opts.Clock.Now().UnixNano(),
		MaxClockOffset: e.MaxClockOffset(),
	}
	for _, p := range e.tree.Partitions() {
		info.Partitions = append(info.Partitions, reconcile.PartitionInfo{
			ID:      uint32(p.ID),
			Range:   reconcile.KeyRange{Start: p.Start, End: p.End},
			Ready:   p.Ready,
			Records: p.Records,
		})
	}
	return info, nil
}

func shortFP(fp merkle.Fingerprint) reconcile.Fingerprint {
	return reconcile.Fingerprint{Hash: fp.Short(), Count: fp.Count}
}

func (e *Engine) checkPartition(part uint32) error {
	if int64(part) >= int64(e.opts.Partitioner.NumPartitions()) {
		return fmt.Errorf("%w: %w: %d", ErrBadRequest, merkle.ErrUnknownPartition, part)
	}
	return nil
}

// RangeHash returns the fingerprints of the requested ranges and, with
// Fanout > 0, of their children, Depth levels deep (reconcile.Replica).
func (e *Engine) RangeHash(ctx context.Context, req reconcile.RangeHashRequest) ([]reconcile.RangeHash, error) {
	if err := e.checkPartition(req.Partition); err != nil {
		return nil, err
	}
	if len(req.Ranges) > MaxRanges {
		return nil, fmt.Errorf("%w: %d ranges > %d", ErrBadRequest, len(req.Ranges), MaxRanges)
	}
	if req.Fanout != 0 && (req.Fanout < 2 || req.Fanout > MaxFanout) {
		return nil, fmt.Errorf("%w: fanout %d out of [2, %d]", ErrBadRequest, req.Fanout, MaxFanout)
	}
	depth := req.Depth
	if depth == 0 && req.Fanout > 0 {
		depth = 1
	}
	if depth < 0 || depth > MaxDepth || (depth > 0 && req.Fanout == 0) {
		return nil, fmt.Errorf("%w: depth %d out of [0, %d] (or without fanout)", ErrBadRequest, req.Depth, MaxDepth)
	}
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.exit()
	part := int(req.Partition)
	out := make([]reconcile.RangeHash, 0, len(req.Ranges))
	for _, r := range req.Ranges {
		if !r.Valid() {
			return nil, fmt.Errorf("%w: %w: inverted %s", ErrBadRequest, merkle.ErrInvalidRange, r)
		}
	}
	if req.Fanout == 0 {
		// All the ranges at once: sorted and disjoint ones (a session's)
		// share one recompute of their span.
		mrs := make([]merkle.Range, len(req.Ranges))
		for i, r := range req.Ranges {
			mrs[i] = merkle.Range{Start: r.Start, End: nilIfEmpty(r.End)}
		}
		fps, err := e.tree.RangeFingerprints(ctx, part, mrs)
		if err != nil {
			return nil, wrapTreeErr(err)
		}
		for i, r := range req.Ranges {
			out = append(out, reconcile.RangeHash{Range: r, Fingerprint: shortFP(fps[i])})
		}
		return out, nil
	}
	for _, r := range req.Ranges {
		kids, fp, err := e.children(ctx, part, merkle.Range{Start: r.Start, End: nilIfEmpty(r.End)}, req.Fanout, depth)
		if err != nil {
			return nil, wrapTreeErr(err)
		}
		out = append(out, reconcile.RangeHash{Range: r, Fingerprint: shortFP(fp), Children: kids})
	}
	return out, nil
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func wrapTreeErr(err error) error {
	if errors.Is(err, merkle.ErrInvalidRange) || errors.Is(err, merkle.ErrUnknownPartition) {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return err
}

// children returns the children of r, depth levels deep, and r's
// fingerprint as the sum of its children. A child's fingerprint is likewise
// the sum of its own children when they are listed, so every level of one
// answer adds up even while writes race the computation.
func (e *Engine) children(ctx context.Context, part int, r merkle.Range, fanout, depth int) ([]reconcile.Child, merkle.Fingerprint, error) {
	kids, err := e.tree.Children(ctx, part, r, fanout)
	if err != nil {
		return nil, merkle.Fingerprint{}, err
	}
	var total merkle.Fingerprint
	out := make([]reconcile.Child, len(kids))
	for i, k := range kids {
		fp := k.Fingerprint
		out[i] = reconcile.Child{Range: reconcile.KeyRange{Start: k.Range.Start, End: k.Range.End}}
		// A single kid is r itself (a leaf): it gets no children, even
		// if a write racing this answer has split it since.
		if depth > 1 && len(kids) > 1 && k.Fingerprint.Count > 1 {
			sub, subFP, err := e.children(ctx, part, k.Range, fanout, depth-1)
			if err != nil {
				return nil, total, err
			}
			if len(sub) > 1 { // a single child is the range itself: a leaf
				out[i].Children = sub
				fp = subFP
			}
		}
		out[i].Fingerprint = shortFP(fp)
		total = total.Add(fp)
	}
	return out, total, nil
}

// RangeScan returns one page of (key, digest[, record]) entries of a range
// (reconcile.Replica).
func (e *Engine) RangeScan(ctx context.Context, req reconcile.RangeScanRequest) (reconcile.RangeScanResult, error) {
	var res reconcile.RangeScanResult
	if err := e.checkPartition(req.Partition); err != nil {
		return res, err
	}
	if !req.Range.Valid() {
		return res, fmt.Errorf("%w: %w: inverted %s", ErrBadRequest, merkle.ErrInvalidRange, req.Range)
	}
	limit := req.Limit
	if limit == 0 {
		limit = DefaultScanLimit
	}
	if limit < 0 || limit > MaxKeysPerRequest {
		return res, fmt.Errorf("%w: limit %d out of [0, %d]", ErrBadRequest, req.Limit, MaxKeysPerRequest)
	}
	if err := e.enter(); err != nil {
		return res, err
	}
	defer e.exit()
	next, err := e.tree.Scan(ctx, int(req.Partition), merkle.Range{Start: req.Range.Start, End: nilIfEmpty(req.Range.End)}, limit, func(se merkle.ScanEntry) error {
		ent := reconcile.Entry{Key: append([]byte(nil), se.Key...), Digest: se.Digest.Short()}
		if req.WithRecords {
			ent.Record = append([]byte(nil), se.Value...)
		}
		res.Entries = append(res.Entries, ent)
		return nil
	})
	if err != nil {
		return res, wrapTreeErr(err)
	}
	res.More, res.Next = next != nil, next
	return res, nil
}

func (e *Engine) checkKeyInPartition(part uint32, key []byte) error {
	if err := e.CheckKey(key); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if p := e.opts.Partitioner.Partition(key); p != int(part) {
		return fmt.Errorf("%w: key %q is in partition %d, not %d", ErrBadRequest, key, p, part)
	}
	return nil
}

// Fetch returns the records of the given keys that exist, in key order
// (reconcile.Replica).
func (e *Engine) Fetch(ctx context.Context, part uint32, keys [][]byte) ([]reconcile.Entry, error) {
	if err := e.checkPartition(part); err != nil {
		return nil, err
	}
	if len(keys) > MaxKeysPerRequest {
		return nil, fmt.Errorf("%w: %d keys > %d", ErrBadRequest, len(keys), MaxKeysPerRequest)
	}
	for _, k := range keys {
		if err := e.checkKeyInPartition(part, k); err != nil {
			return nil, err
		}
	}
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.exit()
	sorted := append([][]byte(nil), keys...)
	sort.Slice(sorted, func(i, j int) bool { return bytes.Compare(sorted[i], sorted[j]) < 0 })
	snap := e.rd.NewSnapshot()
	defer snap.Close()
	var out []reconcile.Entry
	var scratch []byte
	for i, k := range sorted {
		if i > 0 && bytes.Equal(k, sorted[i-1]) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		v, closer, err := snap.Get(k)
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		rec := append([]byte(nil), v...)
		_ = closer.Close()
		var d merkle.Digest
		d, scratch = merkle.LeafDigest(scratch, k, rec)
		out = append(out, reconcile.Entry{Key: append([]byte(nil), k...), Digest: d.Short(), Record: rec})
	}
	return out, nil
}

// Apply merges each entry's record into this replica's record of its key
// with the resolver (reconcile.Replica). It writes merge operands, so it
// reads nothing and never loses a concurrent local write. The entries are
// validated first; a bad one rejects the whole request and nothing is
// written. The entries are committed in Pebble batches of about
// ApplyBatchBytes each. A record stamped further ahead of this replica's clock than
// Options.MaxClockOffset is bad (record.ErrClockOffset, counted in
// ClockOffsetRefusals): it would win over every write acknowledged until
// the clocks catch up.
func (e *Engine) Apply(ctx context.Context, part uint32, entries []reconcile.Entry) error {
	if err := e.checkPartition(part); err != nil {
		return err
	}
	if len(entries) > MaxKeysPerRequest {
		return fmt.Errorf("%w: %d entries > %d", ErrBadRequest, len(entries), MaxKeysPerRequest)
	}
	var maxTS record.Timestamp
	cutoff := e.recordCutoff()
	for _, ent := range entries {
		if err := e.checkKeyInPartition(part, ent.Key); err != nil {
			return err
		}
		rec, err := record.DecodeRecord(ent.Record)
		if err != nil {
			return fmt.Errorf("%w: key %q: %w", ErrBadRequest, ent.Key, err)
		}
		if rec.Mode != e.opts.Mode {
			return fmt.Errorf("%w: key %q: %w: %s record into a %s replica", ErrBadRequest, ent.Key, record.ErrModeMismatch, rec.Mode, e.opts.Mode)
		}
		if err := checkClock(ent.Key, rec, cutoff); err != nil {
			e.clockRefused.Add(1)
			e.opts.Logger.Warn("refused a record stamped in the future", "err", err)
			return err
		}
		for _, s := range rec.Siblings {
			if len(s.Value) > e.opts.MaxValueSize {
				return fmt.Errorf("%w: key %q: %w", ErrBadRequest, ent.Key, ErrValueTooLarge)
			}
			if s.Timestamp.Compare(maxTS) > 0 {
				maxTS = s.Timestamp
			}
		}
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	e.clock.Update(maxTS)
	if e.opts.Mode == record.ModeCausal {
		// Exclude the read-modify-write of causal puts on these keys.
		stripes := make([]int, 0, len(entries))
		for _, ent := range entries {
			stripes = append(stripes, e.stripe(ent.Key))
		}
		sort.Ints(stripes)
		stripes = slices.Compact(stripes)
		for _, s := range stripes {
			e.causalLocks[s].Lock()
		}
		defer func() {
			for _, s := range stripes {
				e.causalLocks[s].Unlock()
			}
		}()
	}
	b := e.getBatch()
	defer e.putBatch(b)
	for i, ent := range entries {
		if err := b.Merge(ent.Key, ent.Record); err != nil {
			return err
		}
		if b.Pebble().Len() >= ApplyBatchBytes && i < len(entries)-1 {
			if err := e.commit(b, NoSync); err != nil {
				return err
			}
			b.Reset()
		}
	}
	return e.commit(b, NoSync)
}

// ApplyBatchBytes bounds the Pebble batches Apply writes: a request's
// entries are committed in batches of about this many bytes, not in one.
// Pebble copies a batch into its WAL holding the commit pipeline's lock,
// and foreground writes queue behind it: a 4 MiB repair batch held them
// for a millisecond and more (measured: 0.7 s of lock waits in 10 s of a
// repair under a 20k writes/s foreground). A crash between two batches
// leaves some of the entries applied and not the rest, which a repair
// tolerates: the merges are idempotent and the next session finds what is
// still missing. Each batch is atomic with its tree update, as every
// write is.
const ApplyBatchBytes = 64 << 10
