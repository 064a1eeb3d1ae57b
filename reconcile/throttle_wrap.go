package reconcile

import "context"

// Throttled returns r throttled as ThrottledReplica does, keeping the
// optional interfaces (Sketcher, ApplyConfirmer) that r implements, so that
// wrapping a replica never makes a session fall back to a costlier path.
func (r ThrottledReplica) Throttled() Replica {
	s, isSketcher := r.Replica.(Sketcher)
	c, isConfirmer := r.Replica.(ApplyConfirmer)
	switch {
	case isSketcher && isConfirmer:
		return throttledBoth{throttledSketcher{r, s}, c}
	case isSketcher:
		return throttledSketcher{r, s}
	case isConfirmer:
		return throttledConfirmer{r, c}
	}
	return r
}

type throttledSketcher struct {
	ThrottledReplica
	s Sketcher
}

// RangeSketch implements Sketcher: the sketch itself is small; its scan is
// the replica's own.
func (t throttledSketcher) RangeSketch(ctx context.Context, req RangeSketchRequest) (RangeSketchResult, error) {
	return t.s.RangeSketch(ctx, req)
}

// FetchByHash implements Sketcher, throttled like Fetch.
func (t throttledSketcher) FetchByHash(ctx context.Context, req FetchByHashRequest) ([]Entry, error) {
	es, err := t.s.FetchByHash(ctx, req)
	if err != nil {
		return es, err
	}
	k, b := entriesSize(es)
	return es, t.Scan.Wait(ctx, k, b)
}

type throttledConfirmer struct {
	ThrottledReplica
	c ApplyConfirmer
}

// ApplyAndHash implements ApplyConfirmer, throttled like Apply.
func (t throttledConfirmer) ApplyAndHash(ctx context.Context, partition uint32, entries []Entry, ranges []KeyRange) ([]RangeHash, error) {
	k, b := entriesSize(entries)
	if err := t.Write.Wait(ctx, k, b); err != nil {
		return nil, err
	}
	return t.c.ApplyAndHash(ctx, partition, entries, ranges)
}

type throttledBoth struct {
	throttledSketcher
	c ApplyConfirmer
}

// ApplyAndHash implements ApplyConfirmer, throttled like Apply.
func (t throttledBoth) ApplyAndHash(ctx context.Context, partition uint32, entries []Entry, ranges []KeyRange) ([]RangeHash, error) {
	return throttledConfirmer{t.ThrottledReplica, t.c}.ApplyAndHash(ctx, partition, entries, ranges)
}
