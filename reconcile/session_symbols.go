package reconcile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// This file is the rateless path of a Session (SessionConfig.Symbols):
//
//	round 1  RangeHash of the root on both sides (as without symbols)
//	round 2  Symbols of the partition on both sides: each streams its coded
//	         symbols (riblt.go) in chunks of SymbolChunkSize; the session
//	         subtracts and peels chunk by chunk and ends both streams as soon
//	         as the difference decodes, whatever its size
//	round 3  FetchByHash: each side's entries whose IDs only it holds
//	round 4  Apply of the resolved records, each returning the root
//	         afterwards (the confirm step)
//
// Four round trips for any number of differences up to a round's key
// budget (SessionConfig.MaxPendingBytes; larger ones are fetched in pairs,
// a chunk a round, in bounded memory), and bytes proportional to
// the differences: ~1.4 symbols of 9 bytes per differing (key, record) per
// side. A stream that reaches its end without decoding (at most
// maxSymbolsFor symbols: garbage, or a difference larger than the
// partition) falls back to the tree descent.

// SymbolsRequest asks for the coded symbols of the entries of Ranges (sorted,
// disjoint) of one partition: at most Max symbols, in chunks of
// SymbolChunkSize.
type SymbolsRequest struct {
	Partition uint32
	Ranges    []KeyRange
	Max       int
}

// SymbolChunk is one chunk of a symbol stream: the number of entries encoded
// (the same in every chunk) and the next SymbolChunkSize(sent) symbols.
type SymbolChunk struct {
	Count   uint64
	Symbols []SketchCell
}

// SymbolStream is an open stream of coded symbols. Next returns the next
// chunk, or io.EOF after Max symbols. Close releases it (the stream may be
// closed before its end).
type SymbolStream interface {
	Next(ctx context.Context) (SymbolChunk, error)
	Close()
}

// ValidateSymbolsRequest checks the limits of a symbols request.
func ValidateSymbolsRequest(req SymbolsRequest) error {
	if req.Max <= 0 || req.Max > MaxSymbols {
		return fmt.Errorf("%w: max %d symbols (1..%d)", ErrBadSketchRequest, req.Max, MaxSymbols)
	}
	return nil
}

// EncoderStream is a SymbolStream over a SymbolEncoder: replicas implement
// OpenSymbols by collecting the digests of the requested ranges and
// returning NewEncoderStream.
type EncoderStream struct {
	enc *SymbolEncoder
	max int
}

// NewEncoderStream returns a stream of the symbols of digests (see
// NewSymbolEncoder), at most max of them.
func NewEncoderStream(digests []uint64, max int) *EncoderStream {
	return &EncoderStream{enc: NewSymbolEncoder(digests), max: max}
}

// Next implements SymbolStream.
func (s *EncoderStream) Next(ctx context.Context) (SymbolChunk, error) {
	if err := ctx.Err(); err != nil {
		return SymbolChunk{}, err
	}
	sent := s.enc.Sent()
	if sent >= s.max {
		return SymbolChunk{}, io.EOF
	}
	n := min(SymbolChunkSize(sent), s.max-sent)
	return SymbolChunk{Count: s.enc.Count(), Symbols: s.enc.Next(n)}, nil
}

// Close implements SymbolStream.
func (s *EncoderStream) Close() {}

// maxSymbolsFor returns the stream length after which a session gives up:
// room for every entry of both sides to differ, twice over.
func maxSymbolsFor(a, b Fingerprint) int {
	n := 2*(a.Count+b.Count) + 64
	return int(min(n, MaxSymbols))
}

// symState is the state of the symbol streams of a session.
type symState struct {
	dec  SymbolDecoder
	max  int
	ids  [2]uint64 // the stream requests
	buf  [2][]SymbolChunk
	cnt  [2]uint64
	got  [2]int // symbols received per side
	end  [2]bool
	done bool // decoded (or failed): the streams are no longer wanted
	// bounded: the streams cover only some ranges of the partition
	// (SessionConfig.MaxSessionKeys); boundRest estimates the
	// differences left outside them.
	bounded   bool
	boundRest uint64
}

// BoundResume is where a bounded session left off (Stats.Resume): the next
// session of the same partition and replicas may resume there
// (SessionConfig.Resume).
type BoundResume struct {
	// Side is the side with more records, whose tree's ranges bound the
	// sessions.
	Side Side
	// After is the end of the last range the session reconciled (nil:
	// the partition's end, so the next one starts from its start).
	After []byte
	// Remaining is the session's estimate of the keys still to repair
	// (its Stats.Remaining).
	Remaining uint64
}

// boundSearch is the search for the ranges of a bounded session
// (finishBound): the larger side's deepest children of the root (leaves,
// with that side's record counts), asked for both sides' fingerprints a
// chunk at a time from start on, wrapping around to the partition's start
// only when nothing from start to the end differs.
type boundSearch struct {
	leaves []KeyRange
	counts []uint64
	start  int // the leaf the search began at
	next   int // the next leaf to ask for
	asked  int // leaves asked so far
	chunk  int // leaves in the chunk in flight (from next-chunk)
	// What the search found: the differences of the ranges that differ
	// (delta), of those chosen (covered), the chosen ranges (contiguous
	// ones merged), their record counts per side, how many were chosen
	// (n) and how many differed (differing).
	delta, covered uint64
	chosen         []KeyRange
	chosenCount    [2]uint64
	n, differing   int
}

// nextChunk returns the next chunk of leaves to ask for: from next on, at
// least one and at most limit, until their counts add up to want or the
// partition ends.
func (b *boundSearch) nextChunk(want uint64, limit int) []KeyRange {
	var sum uint64
	end := b.next
	for end < len(b.leaves) && end-b.next < limit && (end == b.next || sum < want) && b.asked+(end-b.next) < len(b.leaves) {
		sum += b.counts[end]
		end++
	}
	b.chunk = end - b.next
	return b.leaves[b.next:end]
}

// startSymbols plans the symbol round of a partition whose roots differ.
func (s *Session) startSymbols(fa, fb Fingerprint) {
	s.phase = phaseSymbols
	s.sym = symState{max: maxSymbolsFor(fa, fb)}
	s.sk = sketchState{ranges: []KeyRange{s.part}}
}

// finishBound takes the answers of the rounds of phaseBound (see
// SessionConfig.MaxSessionKeys). The first brings the larger side's root's
// children (asked of that side alone; boundaries are the larger side's: a
// tree's inner boundaries need not match where the data does); the deepest
// ones become the ranges of the next rounds, which ask both sides for
// their fingerprints a chunk at a time (boundSearch), from the partition's
// start or from SessionConfig.Resume. The first ranges that differ, in key
// order, whose count differences add up to MaxSessionKeys (at least one
// range) are the session's: the symbol streams start over them. When the
// search covered every range from the partition's start and all that
// differ fit, the streams cover the whole partition, as without a bound
// (a resumed session, which has not compared the roots, starts over with
// the root comparison instead).
func (s *Session) finishBound() {
	b := &s.bound
	if b.leaves == nil {
		leaves := deepestChildren(nil, s.round.hashes[s.boundSide()][0].Children)
		if len(leaves) < 2 {
			s.unbounded()
			return
		}
		b.leaves, b.counts = make([]KeyRange, len(leaves)), make([]uint64, len(leaves))
		for i, c := range leaves {
			b.leaves[i], b.counts[i] = c.Range, c.Fingerprint.Count
		}
		if r := s.cfg.Resume; s.resumed && r.After != nil {
			// The first leaf that ends after After.
			b.start = max(slices.IndexFunc(b.leaves, func(l KeyRange) bool { return compareEnd(l.End, r.After, s.part.End) > 0 }), 0)
		}
		b.next = b.start
		return // phaseBound again: the first chunk's fingerprints
	}
	for i, r := range s.round.hashRanges {
		ha, hb := s.round.hashes[SideA][i].Fingerprint, s.round.hashes[SideB][i].Fingerprint
		if ha == hb {
			continue
		}
		b.differing++
		d := max(absDiff(ha.Count, hb.Count), 1)
		b.delta += d
		if b.n > 0 && b.covered >= s.cfg.MaxSessionKeys {
			continue
		}
		b.n++
		b.covered += d
		b.chosenCount[SideA] += ha.Count
		b.chosenCount[SideB] += hb.Count
		if k := len(b.chosen); k > 0 && b.chosen[k-1].End != nil && bytes.Equal(b.chosen[k-1].End, r.Start) {
			b.chosen[k-1].End = r.End
			continue
		}
		b.chosen = append(b.chosen, r)
	}
	b.next += b.chunk
	b.asked += b.chunk
	b.chunk = 0
	all := b.asked >= len(b.leaves)
	switch {
	case b.n > 0 && b.covered >= s.cfg.MaxSessionKeys:
		// Enough for this session.
	case !all && b.next < len(b.leaves):
		return // the next chunk
	case !all && b.n == 0:
		b.next = 0 // nothing differs from start to the end: wrap around
		return
	case b.n == 0 || (all && b.n == b.differing):
		// Nothing differs where the search looked, or everything that
		// differs fits in one session.
		s.unbounded()
		return
	}
	// A bounded session over the chosen ranges.
	base := s.baseEstimate()
	s.startSymbols(Fingerprint{Count: b.chosenCount[SideA]}, Fingerprint{Count: b.chosenCount[SideB]})
	s.stats.Bounded = true
	s.sym.bounded = true
	s.sym.boundRest = max(base, b.delta) - b.covered
	s.sk.ranges = b.chosen
}

// unbounded goes on as a session without a bound: over the whole partition
// once the roots are compared, else (resumed) with the root comparison.
func (s *Session) unbounded() {
	if s.resumed {
		s.resumed = false
		s.bound = boundSearch{}
		s.phase = phaseRoot
		return
	}
	s.startSymbols(s.rootFP[SideA], s.rootFP[SideB])
}

// baseEstimate is what the session knows of the difference before it
// decodes it: the roots' count difference, or the previous session's
// estimate when resumed.
func (s *Session) baseEstimate() uint64 {
	if s.resumed {
		return s.cfg.Resume.Remaining
	}
	return absDiff(s.rootFP[SideA].Count, s.rootFP[SideB].Count)
}

// resume is where the next session resumes (Stats.Resume), for a bounded
// session.
func (s *Session) resume() *BoundResume {
	if !s.sym.bounded || len(s.sk.ranges) == 0 {
		return nil
	}
	after := s.sk.ranges[len(s.sk.ranges)-1].End
	if compareEnd(after, s.part.End, s.part.End) >= 0 {
		after = nil
	}
	return &BoundResume{Side: s.boundSide(), After: after}
}

// boundSide is the side whose root's children bound a session
// (finishBound): the one with more records, or Resume's.
func (s *Session) boundSide() Side {
	if s.resumed {
		return s.cfg.Resume.Side
	}
	if s.rootFP[SideB].Count > s.rootFP[SideA].Count {
		return SideB
	}
	return SideA
}

// deepestChildren appends the leaves of the children tree cs to out.
func deepestChildren(out []Child, cs []Child) []Child {
	for _, c := range cs {
		if len(c.Children) > 0 {
			out = deepestChildren(out, c.Children)
		} else {
			out = append(out, c)
		}
	}
	return out
}

func (s *Session) symbolsRound() []Request {
	s.round = roundResults{}
	req := SymbolsRequest{Partition: s.cfg.Partition, Ranges: s.sk.ranges, Max: s.sym.max}
	reqs := []Request{
		s.newRequest(Request{Side: SideA, Kind: RequestSymbols, Symbols: req}),
		s.newRequest(Request{Side: SideB, Kind: RequestSymbols, Symbols: req}),
	}
	s.sym.ids = [2]uint64{reqs[0].ID, reqs[1].ID}
	return reqs
}

// Wants reports whether the session still wants answers to request id: a
// driver streaming a RequestSymbols stops the stream when it returns false.
func (s *Session) Wants(id uint64) bool {
	_, ok := s.inflight[id]
	return ok
}

// acceptSymbols takes one chunk (or the end) of a symbol stream. It keeps the
// request in flight until the stream ends or the difference decodes.
func (s *Session) acceptSymbols(req Request, resp Response) error {
	st := &s.sym
	side := req.Side
	if resp.SymbolsEnd {
		st.end[side] = true
	} else {
		c := resp.Symbols
		if want := min(SymbolChunkSize(st.got[side]), st.max-st.got[side]); len(c.Symbols) != want || want <= 0 {
			return s.bad(req, s.part, "chunk of %d symbols after %d, want %d", len(c.Symbols), st.got[side], want)
		}
		for _, sym := range c.Symbols {
			if sym.ID >= 1<<SketchIDBits {
				return s.bad(req, s.part, "symbol ID %#x wider than %d bits", sym.ID, SketchIDBits)
			}
		}
		if st.got[side] > 0 && c.Count != st.cnt[side] {
			return s.bad(req, s.part, "stream count changed from %d to %d", st.cnt[side], c.Count)
		}
		if st.got[side] == 0 {
			// The first symbol holds every entry: its count (mod 256)
			// must be the stream's count.
			if c.Symbols[0].Count != int8(uint8(c.Count)) {
				return s.bad(req, s.part, "symbol 0 counts %d entries (mod 256), the stream %d", uint8(c.Symbols[0].Count), c.Count)
			}
		}
		st.cnt[side] = c.Count
		st.got[side] += len(c.Symbols)
		st.buf[side] = append(st.buf[side], c)
		s.inflight[req.ID] = req // more to come
	}
	for len(st.buf[SideA]) > 0 && len(st.buf[SideB]) > 0 && !st.done {
		a, b := st.buf[SideA][0], st.buf[SideB][0]
		st.buf[SideA], st.buf[SideB] = st.buf[SideA][1:], st.buf[SideB][1:]
		if err := st.dec.Add(a.Symbols, b.Symbols); err != nil {
			st.done = true
			break
		}
		if st.dec.Decoded() {
			st.done = true
		}
	}
	if st.end[SideA] || st.end[SideB] {
		// A side has nothing more to send: what is buffered is all the
		// session will get.
		st.done = true
	}
	if st.done {
		delete(s.inflight, st.ids[SideA])
		delete(s.inflight, st.ids[SideB])
	}
	return nil
}

// finishSymbols ends the symbol round: the decoded IDs are fetched, or the
// session falls back to the tree descent.
func (s *Session) finishSymbols() error {
	st := &s.sym
	for side := range 2 {
		if !st.bounded && st.got[side] > 0 && st.cnt[side] != s.rootFP[side].Count {
			s.stats.CountMismatches++
			if s.cfg.Strict {
				return fmt.Errorf("%w: partition %d: %s encoded %d records, its root counted %d",
					ErrNotConverged, s.cfg.Partition, Side(side), st.cnt[side], s.rootFP[side].Count)
			}
		}
	}
	onlyA, onlyB := st.dec.Result()
	ok := st.dec.Decoded() && int64(len(onlyA))-int64(len(onlyB)) == int64(st.cnt[SideA])-int64(st.cnt[SideB])
	if !ok && s.resumed {
		// A resumed session has not compared the roots to descend from:
		// it starts over with them.
		s.stats.SketchFallbacks++
		s.stats.Bounded = false
		s.resumed, s.bound, s.sym, s.sk = false, boundSearch{}, symState{}, sketchState{}
		s.phase = phaseRoot
		return nil
	}
	if !ok {
		s.stats.SketchFallbacks++
		s.stats.Method += "+descent"
		s.phase = phaseDescend
		s.compare(s.part, s.rootFP[SideA], s.rootFP[SideB], nil, nil, false)
		return nil
	}
	s.stats.KeysCompared += st.cnt[SideA] + st.cnt[SideB]
	onlyA, onlyB = slices.Clone(onlyA), slices.Clone(onlyB)
	slices.Sort(onlyA)
	slices.Sort(onlyB)
	s.startFetchByHash(onlyA, onlyB)
	return nil
}

// streamRound runs the RequestSymbols requests of a round: it opens every
// stream concurrently, then pulls one chunk from each open stream at a time
// (concurrently), so the two sides advance in step and neither streams far
// past the point where the difference decodes, and delivers the chunks to s
// until s no longer Wants them. Streams are closed when the session is done
// with them, fail, or end.
func streamRound(ctx context.Context, s *Session, replicas [2]Replica, reqs []Request, pace func(context.Context, time.Duration) error) {
	type open struct {
		req    Request
		stream SymbolStream
		resp   Response // the chunk pulled this step
		done   bool
	}
	streams := make([]*open, len(reqs))
	var wg sync.WaitGroup
	for i, req := range reqs {
		o := &open{req: req}
		streams[i] = o
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.resp = Response{ID: req.ID, Side: req.Side}
			if err := ValidateSymbolsRequest(req.Symbols); err != nil {
				o.resp.Err = err
			} else {
				o.stream, o.resp.Err = replicas[req.Side].OpenSymbols(ctx, req.Symbols)
			}
		}()
	}
	wg.Wait()
	for _, o := range streams {
		if o.resp.Err != nil {
			o.done = true
			s.Deliver(o.resp)
		}
	}
	defer func() {
		for _, o := range streams {
			if o.stream != nil {
				o.stream.Close()
			}
		}
	}()
	for {
		var pull []*open
		for _, o := range streams {
			if !o.done && o.stream != nil && s.Wants(o.req.ID) {
				pull = append(pull, o)
			}
		}
		if len(pull) == 0 {
			return
		}
		for _, o := range pull {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o.resp = Response{ID: o.req.ID, Side: o.req.Side}
				c, err := o.stream.Next(ctx)
				switch {
				case errors.Is(err, io.EOF):
					o.resp.SymbolsEnd = true
				case err != nil:
					o.resp.Err = err
				default:
					o.resp.Symbols = c
				}
			}()
		}
		wg.Wait()
		// The session decodes as chunks arrive: its work, charged to
		// pace chunk by chunk.
		paced(ctx, pace, func() {
			for _, o := range pull {
				o.done = o.resp.SymbolsEnd || o.resp.Err != nil
				if s.Wants(o.req.ID) {
					s.Deliver(o.resp)
				}
			}
		})
	}
}

// PrefixStream is a SymbolStream that serves its first symbols from a
// precomputed prefix (SymbolPrefix.Symbols) and encodes the rest from the
// set's digests, which it asks for only if the stream goes past the prefix.
type PrefixStream struct {
	prefix  []SketchCell
	count   uint64
	digests func() []uint64
	max     int
	sent    int
	enc     *SymbolEncoder
}

// NewPrefixStream returns a stream of at most max symbols of a set of count
// items whose first symbols are prefix; digests returns the set's digests
// (the caller's to keep: the stream modifies it) when the stream needs them.
func NewPrefixStream(prefix []SketchCell, count uint64, digests func() []uint64, max int) *PrefixStream {
	return &PrefixStream{prefix: prefix, count: count, digests: digests, max: max}
}

// Next implements SymbolStream.
func (s *PrefixStream) Next(ctx context.Context) (SymbolChunk, error) {
	if err := ctx.Err(); err != nil {
		return SymbolChunk{}, err
	}
	if s.sent >= s.max {
		return SymbolChunk{}, io.EOF
	}
	n := min(SymbolChunkSize(s.sent), s.max-s.sent)
	var out []SketchCell
	if s.sent+n <= len(s.prefix) {
		out = s.prefix[s.sent : s.sent+n : s.sent+n]
	} else {
		if s.enc == nil {
			s.enc = NewSymbolEncoder(s.digests())
			s.enc.Next(s.sent) // skip what the prefix served
		}
		out = s.enc.Next(n)
	}
	s.sent += n
	return SymbolChunk{Count: s.count, Symbols: out}, nil
}

// Close implements SymbolStream.
func (s *PrefixStream) Close() {}
