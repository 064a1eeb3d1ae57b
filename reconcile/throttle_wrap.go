package reconcile

import (
	"context"
)

// Throttled returns r throttled as ThrottledReplica does, keeping the
// optional interfaces (Sketcher, SymbolStreamer with Sketcher,
// ApplyConfirmer) that r implements, so that wrapping a replica never makes
// a session fall back to a costlier path.
func (r ThrottledReplica) Throttled() Replica {
	s, isSketcher := r.Replica.(Sketcher)
	c, isConfirmer := r.Replica.(ApplyConfirmer)
	y, isStreamer := r.Replica.(SymbolStreamer)
	isStreamer = isStreamer && isSketcher
	switch {
	case isStreamer && isConfirmer:
		return throttledBothStreamer{throttledBoth{throttledSketcher{r, s}, c}, throttledStreams{r.Scan, y}}
	case isStreamer:
		return throttledSketcherStreamer{throttledSketcher{r, s}, throttledStreams{r.Scan, y}}
	case isSketcher && isConfirmer:
		return throttledBoth{throttledSketcher{r, s}, c}
	case isSketcher:
		return throttledSketcher{r, s}
	case isConfirmer:
		return throttledConfirmer{r, c}
	}
	return r
}

// throttledStreams throttles the busy time of symbol streams (the symbols
// themselves are few bytes; encoding them is the replica's work).
type throttledStreams struct {
	scan *Throttle
	y    SymbolStreamer
}

// OpenSymbols implements SymbolStreamer.
func (t throttledStreams) OpenSymbols(ctx context.Context, req SymbolsRequest) (SymbolStream, error) {
	cctx, end := t.scan.Start(ctx)
	st, err := t.y.OpenSymbols(cctx, req)
	busy := end()
	if err != nil {
		return st, err
	}
	if err := t.scan.Busy(ctx, busy); err != nil {
		st.Close()
		return nil, err
	}
	return throttledStream{t.scan, st}, nil
}

type throttledStream struct {
	scan *Throttle
	SymbolStream
}

// Next implements SymbolStream.
func (t throttledStream) Next(ctx context.Context) (SymbolChunk, error) {
	cctx, end := t.scan.Start(ctx)
	c, err := t.SymbolStream.Next(cctx)
	busy := end()
	if err != nil {
		return c, err
	}
	return c, t.scan.Busy(ctx, busy)
}

type throttledSketcherStreamer struct {
	throttledSketcher
	throttledStreams
}

type throttledBothStreamer struct {
	throttledBoth
	throttledStreams
}

type throttledSketcher struct {
	ThrottledReplica
	s Sketcher
}

// RangeSketch implements Sketcher: the sketch itself is small and its scan
// is the replica's own; only its busy time is throttled.
func (t throttledSketcher) RangeSketch(ctx context.Context, req RangeSketchRequest) (RangeSketchResult, error) {
	cctx, end := t.Scan.Start(ctx)
	res, err := t.s.RangeSketch(cctx, req)
	busy := end()
	if err != nil {
		return res, err
	}
	return res, t.Scan.Busy(ctx, busy)
}

// FetchByHash implements Sketcher, throttled like Fetch.
func (t throttledSketcher) FetchByHash(ctx context.Context, req FetchByHashRequest) ([]Entry, error) {
	cctx, end := t.Scan.Start(ctx)
	es, err := t.s.FetchByHash(cctx, req)
	busy := end()
	if err != nil {
		return es, err
	}
	k, b := entriesSize(es)
	return es, charge(ctx, t.Scan, busy, k, b)
}

type throttledConfirmer struct {
	ThrottledReplica
	c ApplyConfirmer
}

// ApplyAndHash implements ApplyConfirmer, throttled like Apply: all but the
// last ApplyChunk entries go through Apply (chunked, so that a large repair
// never commits one large batch in front of foreground writes; Apply merges,
// so this is the same as applying them with the rest), the last chunk
// through the replica's ApplyAndHash.
func (t throttledConfirmer) ApplyAndHash(ctx context.Context, partition uint32, entries []Entry, ranges []KeyRange) ([]RangeHash, error) {
	chunk := t.ApplyChunk
	if chunk <= 0 {
		chunk = DefaultApplyChunk
	}
	if len(entries) > chunk {
		head := len(entries) - chunk
		if err := t.ThrottledReplica.Apply(ctx, partition, entries[:head]); err != nil {
			return nil, err
		}
		entries = entries[head:]
	}
	k, b := entriesSize(entries)
	if err := t.Write.Wait(ctx, k, b); err != nil {
		return nil, err
	}
	cctx, end := t.Write.Start(ctx)
	hs, err := t.c.ApplyAndHash(cctx, partition, entries, ranges)
	busy := end()
	if err != nil {
		return hs, err
	}
	return hs, t.Write.Busy(ctx, busy)
}

type throttledBoth struct {
	throttledSketcher
	c ApplyConfirmer
}

// ApplyAndHash implements ApplyConfirmer, throttled like Apply.
func (t throttledBoth) ApplyAndHash(ctx context.Context, partition uint32, entries []Entry, ranges []KeyRange) ([]RangeHash, error) {
	return throttledConfirmer{t.ThrottledReplica, t.c}.ApplyAndHash(ctx, partition, entries, ranges)
}
