package engine

import (
	"bytes"
	"context"
	"fmt"

	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile"
)

// The engine's set-reconciliation sketches (reconcile.CapSketch), symbol
// streams (CapSymbols) and its combined apply-and-confirm
// (CapApplyAndHash): it declares reconcile.CapAll. Sketches are
// computed by scanning the requested ranges with merkle.Tree.Scan: the cost
// is a sequential scan of the ranges, the answer's size is proportional to
// the requested cells, not to the records.

var _ reconcile.Replica = (*Engine)(nil)

// scanRanges calls fn with every entry of the sorted, disjoint ranges of
// partition part.
func (e *Engine) scanRanges(ctx context.Context, part uint32, ranges []reconcile.KeyRange, fn func(merkle.ScanEntry) error) error {
	if err := e.checkPartition(part); err != nil {
		return err
	}
	if len(ranges) > MaxRanges {
		return fmt.Errorf("%w: %d ranges > %d", ErrBadRequest, len(ranges), MaxRanges)
	}
	for i, r := range ranges {
		if !r.Valid() {
			return fmt.Errorf("%w: %w: inverted %s", ErrBadRequest, merkle.ErrInvalidRange, r)
		}
		if i > 0 && (len(ranges[i-1].End) == 0 || string(ranges[i-1].End) > string(r.Start)) {
			return fmt.Errorf("%w: ranges not sorted and disjoint at %s", ErrBadRequest, r)
		}
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	for _, r := range ranges {
		if _, err := e.tree.Scan(ctx, int(part), merkle.Range{Start: r.Start, End: nilIfEmpty(r.End)}, 0, fn); err != nil {
			return wrapTreeErr(err)
		}
	}
	return nil
}

// RangeSketch returns the sketch of the entries of the requested ranges
// (reconcile.CapSketch).
func (e *Engine) RangeSketch(ctx context.Context, req reconcile.RangeSketchRequest) (reconcile.RangeSketchResult, error) {
	if err := reconcile.ValidateSketchRequest(req); err != nil {
		return reconcile.RangeSketchResult{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	b := reconcile.NewSketchBuilder(req)
	err := e.scanRanges(ctx, req.Partition, req.Ranges, func(se merkle.ScanEntry) error {
		b.Add(se.Digest.Short())
		return nil
	})
	if err != nil {
		return reconcile.RangeSketchResult{}, err
	}
	return b.Result(), nil
}

// OpenSymbols returns the stream of coded symbols of the entries of the
// requested ranges (reconcile.CapSymbols). For a whole partition it
// serves the partition's persisted symbol prefix (entries.go): no scan,
// whatever the partition's size. For other ranges it scans them and
// encodes the symbols chunk by chunk as the stream is read.
func (e *Engine) OpenSymbols(ctx context.Context, req reconcile.SymbolsRequest) (reconcile.SymbolStream, error) {
	if err := reconcile.ValidateSymbolsRequest(req); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if err := e.checkPartition(req.Partition); err != nil {
		return nil, err
	}
	if e.wholePartition(req.Partition, req.Ranges) {
		if err := e.enter(); err != nil {
			return nil, err
		}
		defer e.exit()
		return e.openSymbols(ctx, req.Partition, req.Max)
	}
	var digests []uint64
	err := e.scanRanges(ctx, req.Partition, req.Ranges, func(se merkle.ScanEntry) error {
		digests = append(digests, se.Digest.Short())
		return nil
	})
	if err != nil {
		return nil, err
	}
	return reconcile.NewEncoderStream(digests, req.Max), nil
}

// FetchByHash returns the entries of the requested ranges whose sketch IDs
// were asked for, in key order (reconcile.CapSketch). For a whole partition
// it finds them through the entry index's ID index (entries.go), reading
// only the fragments that hold them; for other ranges it scans.
func (e *Engine) FetchByHash(ctx context.Context, req reconcile.FetchByHashRequest) ([]reconcile.Entry, error) {
	if len(req.IDs) > reconcile.MaxSketchIDs {
		return nil, fmt.Errorf("%w: %w: %d IDs", ErrBadRequest, reconcile.ErrBadSketchRequest, len(req.IDs))
	}
	want := make(map[uint64]struct{}, len(req.IDs))
	for _, id := range req.IDs {
		want[id] = struct{}{}
	}
	if err := e.checkPartition(req.Partition); err != nil {
		return nil, err
	}
	if e.wholePartition(req.Partition, req.Ranges) {
		if err := e.enter(); err != nil {
			return nil, err
		}
		defer e.exit()
		return e.fetchByID(ctx, req.Partition, want)
	}
	var out []reconcile.Entry
	err := e.scanRanges(ctx, req.Partition, req.Ranges, func(se merkle.ScanEntry) error {
		if _, ok := want[reconcile.SketchID(se.Digest.Short())]; ok {
			out = append(out, reconcile.Entry{Key: append([]byte(nil), se.Key...), Record: append([]byte(nil), se.Value...)})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// wholePartition reports whether ranges is exactly partition part's range.
func (e *Engine) wholePartition(part uint32, ranges []reconcile.KeyRange) bool {
	if len(ranges) != 1 {
		return false
	}
	start, end := e.tree.Partitioner().Bounds(int(part))
	return bytes.Equal(start, ranges[0].Start) && bytes.Equal(end, nilIfEmpty(ranges[0].End))
}

// ApplyAndHash applies entries (in requests of at most MaxKeysPerRequest)
// and then returns the fingerprints of ranges (reconcile.CapApplyAndHash).
func (e *Engine) ApplyAndHash(ctx context.Context, part uint32, entries []reconcile.Entry, ranges []reconcile.KeyRange) ([]reconcile.RangeHash, error) {
	for len(entries) > 0 {
		n := min(len(entries), MaxKeysPerRequest)
		if err := e.Apply(ctx, part, entries[:n]); err != nil {
			return nil, err
		}
		entries = entries[n:]
	}
	return e.RangeHash(ctx, reconcile.RangeHashRequest{Partition: part, Ranges: ranges})
}
