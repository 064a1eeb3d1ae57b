package repair

import (
	"context"
	"errors"

	"github.com/pebble-ae/pebble-ae/reconcile"
)

// The optional calls of the Replica contract, throttled. ThrottledReplica
// defines every method of reconcile.Replica itself (Info excepted, which
// moves nothing), so that none reaches the replica unthrottled through the
// embedded interface; a call the replica does not serve returns its
// ErrUnsupported unchanged, and Info declares the same capabilities.

// RangeSketch implements reconcile.Replica: the sketch itself is small and
// its scan is the replica's own; only its busy time is throttled.
func (r ThrottledReplica) RangeSketch(ctx context.Context, req reconcile.RangeSketchRequest) (reconcile.RangeSketchResult, error) {
	cctx, end := r.Scan.Start(ctx)
	res, err := r.Replica.RangeSketch(cctx, req)
	busy := end()
	if err != nil {
		return res, err
	}
	return res, r.Scan.Busy(ctx, busy)
}

// FetchByHash implements reconcile.Replica, throttled like Fetch.
func (r ThrottledReplica) FetchByHash(ctx context.Context, req reconcile.FetchByHashRequest) ([]reconcile.Entry, error) {
	cctx, end := r.Scan.Start(ctx)
	es, err := r.Replica.FetchByHash(cctx, req)
	busy := end()
	if err != nil {
		return es, err
	}
	k, b := entriesSize(es)
	return es, charge(ctx, r.Scan, busy, k, b)
}

// OpenSymbols implements reconcile.Replica: the symbols themselves are few
// bytes; encoding them is the replica's work, so the busy time of opening
// the stream and of every chunk is throttled.
func (r ThrottledReplica) OpenSymbols(ctx context.Context, req reconcile.SymbolsRequest) (reconcile.SymbolStream, error) {
	cctx, end := r.Scan.Start(ctx)
	st, err := r.Replica.OpenSymbols(cctx, req)
	busy := end()
	if err != nil {
		return st, err
	}
	if err := r.Scan.Busy(ctx, busy); err != nil {
		st.Close()
		return nil, err
	}
	return throttledStream{r.Scan, st}, nil
}

type throttledStream struct {
	scan *Throttle
	reconcile.SymbolStream
}

// Next implements reconcile.SymbolStream.
func (t throttledStream) Next(ctx context.Context) (reconcile.SymbolChunk, error) {
	cctx, end := t.scan.Start(ctx)
	c, err := t.SymbolStream.Next(cctx)
	busy := end()
	if err != nil {
		return c, err
	}
	return c, t.scan.Busy(ctx, busy)
}

// ApplyAndHash implements reconcile.Replica, throttled like Apply: all but
// the last ApplyChunk entries go through Apply (chunked, so that a large
// repair never commits one large batch in front of foreground writes; Apply
// merges, so this is the same as applying them with the rest), the last
// chunk through the replica's ApplyAndHash, or, if the replica does not
// serve it (ErrUnsupported), through Apply and RangeHash.
func (r ThrottledReplica) ApplyAndHash(ctx context.Context, partition uint32, entries []reconcile.Entry, ranges []reconcile.KeyRange) ([]reconcile.RangeHash, error) {
	chunk := r.ApplyChunk
	if chunk <= 0 {
		chunk = DefaultApplyChunk
	}
	if len(entries) > chunk {
		head := len(entries) - chunk
		if err := r.Apply(ctx, partition, entries[:head]); err != nil {
			return nil, err
		}
		entries = entries[head:]
	}
	k, b := entriesSize(entries)
	if err := r.Write.Wait(ctx, k, b); err != nil {
		return nil, err
	}
	cctx, end := r.Write.Start(ctx)
	hs, err := r.Replica.ApplyAndHash(cctx, partition, entries, ranges)
	busy := end()
	if errors.Is(err, reconcile.ErrUnsupported) {
		// The chunk's wait is paid: apply it as it is, then hash.
		cctx, end = r.Write.Start(ctx)
		err = r.Replica.Apply(cctx, partition, entries)
		busy = end()
		if err != nil {
			return nil, err
		}
		if err := r.Write.Busy(ctx, busy); err != nil {
			return nil, err
		}
		return r.RangeHash(ctx, reconcile.RangeHashRequest{Partition: partition, Ranges: ranges})
	}
	if err != nil {
		return hs, err
	}
	return hs, r.Write.Busy(ctx, busy)
}
