package reconcile

import (
	"bytes"
	"fmt"
	"math"
	"slices"

	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// This file is the sketch path of a Session (SessionConfig.Sketch):
//
//	round 1  RangeHash of the root on both sides (as without sketches)
//	round 2  RangeSketch of the partition on both sides: an IBLT sized
//	         from the root counts, and a strata estimator
//	         (if the IBLT does not decode: round 2' with an IBLT sized
//	         from the estimator, and so on, at most three times; then the
//	         tree descent takes over)
//	round 3  FetchByHash: each side's entries whose IDs only it holds
//	round 4  Apply of the resolved records, each returning the root
//	         afterwards (the confirm step)

// maxSketchAttempts is the number of sketch rounds before falling back to
// the descent.
const maxSketchAttempts = 3

// firstSketchItems is the number of differing items the first IBLT is sized
// for, beyond the difference of the root counts: a guess that costs little
// (firstSketchItems*1.3*9 bytes per side) and saves the estimator's round
// whenever few records differ.
const firstSketchItems = 24

// startSketch plans the first sketch round of a partition whose roots
// differ.
func (s *Session) startSketch(fa, fb Fingerprint) {
	s.phase = phaseSketch
	diff := fa.Count - fb.Count
	if fb.Count > fa.Count {
		diff = fb.Count - fa.Count
	}
	s.sk = sketchState{
		ranges: []KeyRange{s.part},
		cells:  sketchCellsFor(float64(diff) + firstSketchItems),
		strata: strataFor(fa.Count + fb.Count),
	}
}

// finishSketch decodes the two sketches of the round.
func (s *Session) finishSketch() error {
	a, b := s.round.sketches[SideA], s.round.sketches[SideB]
	s.sk.attempts++
	for side, sk := range []*RangeSketchResult{a, b} {
		if sk.Count != s.rootFP[side].Count {
			s.stats.CountMismatches++
			if s.cfg.Strict {
				return fmt.Errorf("%w: partition %d: %s sketched %d records, its root counted %d",
					ErrNotConverged, s.cfg.Partition, Side(side), sk.Count, s.rootFP[side].Count)
			}
		}
	}
	if len(a.Strata) > 0 {
		s.sk.estimate = estimateDifference(a.Strata, b.Strata, s.sk.strata)
	}
	onlyA, onlyB, ok := decodeSketches(a.Cells, b.Cells)
	// Each side's unique items minus the other's must be the difference of
	// the counts; a decode that says otherwise is wrong.
	if ok && int64(len(onlyA))-int64(len(onlyB)) != int64(a.Count)-int64(b.Count) {
		ok = false
	}
	if ok {
		s.stats.KeysCompared += a.Count + b.Count
		slices.Sort(onlyA)
		slices.Sort(onlyB)
		s.startFetchByHash(onlyA, onlyB)
		return nil
	}
	if s.sk.attempts >= maxSketchAttempts {
		// Give up on sketches: descend the trees.
		s.stats.SketchFallbacks++
		s.stats.Method += "+descent"
		s.phase = phaseDescend
		s.compare(s.part, s.rootFP[SideA], s.rootFP[SideB], nil, nil, false)
		return nil
	}
	// Size the next table from the estimate (with a margin for its error),
	// and at least half again the last one.
	want := 1.5 * float64(s.sk.cells)
	switch e := s.sk.estimate; {
	case math.IsInf(e, 1):
		want = max(want, float64(sketchCellsFor(float64(a.Count+b.Count))))
	case e > 0:
		want = max(want, float64(sketchCellsFor(1.4*e+float64(len(onlyA)+len(onlyB)))))
	}
	s.sk.cells = min(int(want), MaxSketchCells)
	s.sk.cells -= s.sk.cells % SketchHashes
	s.sk.strata = 0
	return nil
}

// startFetchByHash starts fetching the records of the sketch IDs only A
// (onlyA) and only B (onlyB) hold.
//
// Records fetched by sketch ID pair up by key only once both sides' have
// all arrived, so a difference of more keys than a round may hold (see
// SessionConfig.MaxPendingBytes) is fetched in pairs instead
// (Stats.LargeDifferences): the records of the side with fewer IDs (the
// first) by ID, a chunk a round; the other side's records of the same keys
// by key (Fetch) the round after, and the pairs resolved; then the other
// side's records by ID, a chunk a round, skipping the keys already
// resolved (the others the first side lacks). The session then holds one
// chunk of records, the queued writes (applied as they reach the budget)
// and the keys of the first side's chunks.
func (s *Session) startFetchByHash(onlyA, onlyB []uint64) {
	s.sk.ids = [2][]uint64{onlyA, onlyB}
	s.sk.fetchNext = [2]int{}
	s.sk.fetched = [2][]Entry{}
	s.sk.paired = int64(len(onlyA)+len(onlyB)) > s.keyBudget()
	s.sk.handled = nil
	if s.sk.paired {
		s.stats.LargeDifferences++
		s.sk.handled = map[string]bool{}
		// The side with fewer IDs goes first: the other is asked for as
		// many keys, and its (often missing) records of them arrive first.
		s.sk.first = SideA
		if len(onlyB) < len(onlyA) {
			s.sk.first = SideB
		}
	}
	s.phase = phaseFetchHash
}

// pairedRound returns the next requests of a paired fetch (see
// startFetchByHash), or none when it is complete.
func (s *Session) pairedRound() []Request {
	if reqs := s.drainRound(); len(reqs) > 0 {
		return reqs
	}
	var reqs []Request
	chunk := func(side Side) {
		ids := s.sk.ids[side][s.sk.fetchNext[side]:]
		n := int(min(int64(len(ids)), int64(s.cfg.FetchByHashLimit), s.keyBudget()))
		reqs = append(reqs, s.newRequest(Request{Side: side, Kind: RequestFetchByHash, FetchByHash: FetchByHashRequest{
			Partition: s.cfg.Partition, Ranges: s.sk.ranges, IDs: ids[:n:n],
		}}))
		s.sk.fetchNext[side] += n
	}
	first, second := s.sk.first, 1-s.sk.first
	if s.sk.fetchNext[first] < len(s.sk.ids[first]) {
		chunk(first)
	}
	// The second side's records of the keys of the first's last chunk
	// (at most a chunk, so within the budget).
	reqs = append(reqs, s.fetchRound(s.keyBudget())...)
	if len(reqs) == 0 && len(s.fetching) == 0 && s.sk.fetchNext[second] < len(s.sk.ids[second]) {
		chunk(second)
	}
	return reqs
}

// finishPairedRound takes a paired fetch round's answers: the first side's
// records wait for the second's of the same keys, the second side's
// records by key complete their pairs, and its records by ID whose keys
// the first side's chunks did not hold are resolved alone.
func (s *Session) finishPairedRound() error {
	first, second := s.sk.first, 1-s.sk.first
	for _, e := range s.round.byHash[first] {
		ks := &keyState{key: e.Key}
		ks.need[second], ks.have[first] = true, true
		ks.rec[first] = e.Record
		s.toFetch[string(e.Key)] = ks
		s.sk.handled[string(e.Key)] = true
	}
	s.sk.got[first] += len(s.round.byHash[first])
	if err := s.finishFetches(); err != nil {
		return err
	}
	for _, e := range s.round.byHash[second] {
		s.sk.got[second]++
		if s.sk.handled[string(e.Key)] {
			continue
		}
		ks := &keyState{key: e.Key, have: [2]bool{true, true}}
		ks.rec[second] = e.Record
		s.noteTransferred(ks)
		if err := s.resolve(ks); err != nil {
			return err
		}
	}
	done := s.sk.fetchNext[SideA] == len(s.sk.ids[SideA]) && s.sk.fetchNext[SideB] == len(s.sk.ids[SideB]) &&
		len(s.toFetch) == 0 && len(s.fetching) == 0
	if !done {
		return nil
	}
	// Only the first side's count can be checked: the writes applied
	// while the second's records were fetched replaced those of its
	// records whose keys the first side's chunks held (the confirm step
	// still compares the roots).
	if got, asked := s.sk.got[first], len(s.sk.ids[first]); got != asked {
		s.stats.CountMismatches++
		if s.cfg.Strict && got < asked {
			return fmt.Errorf("%w: partition %d: %s returned %d of the %d records its sketch held alone",
				ErrNotConverged, s.cfg.Partition, first, got, asked)
		}
	}
	s.sk.handled = nil
	s.phase = phaseApply
	return nil
}

// fetchByHashRound returns the next FetchByHash requests: on each side, the
// IDs not yet asked for, in requests of at most FetchByHashLimit IDs, at
// most FetchByHashChunksPerRound of them (0: all).
func (s *Session) fetchByHashRound() []Request {
	if s.sk.paired {
		return s.pairedRound()
	}
	var reqs []Request
	for side := range 2 {
		for chunk := 0; s.cfg.FetchByHashChunksPerRound <= 0 || chunk < s.cfg.FetchByHashChunksPerRound; chunk++ {
			ids := s.sk.ids[side][s.sk.fetchNext[side]:]
			n := min(len(ids), s.cfg.FetchByHashLimit)
			if n == 0 {
				break
			}
			reqs = append(reqs, s.newRequest(Request{Side: Side(side), Kind: RequestFetchByHash, FetchByHash: FetchByHashRequest{
				Partition: s.cfg.Partition, Ranges: s.sk.ranges, IDs: ids[:n:n],
			}}))
			s.sk.fetchNext[side] += n
		}
	}
	return reqs
}

// finishFetchByHashRound keeps a FetchByHash round's entries and, once every
// ID has been asked for, resolves them all.
func (s *Session) finishFetchByHashRound() error {
	if s.sk.paired {
		return s.finishPairedRound()
	}
	for side := range 2 {
		s.sk.fetched[side] = append(s.sk.fetched[side], s.round.byHash[side]...)
	}
	if s.sk.fetchNext[SideA] < len(s.sk.ids[SideA]) || s.sk.fetchNext[SideB] < len(s.sk.ids[SideB]) {
		return nil // the next round fetches more
	}
	return s.finishFetchByHash()
}

// finishFetchByHash resolves the entries fetched by sketch ID.
func (s *Session) finishFetchByHash() error {
	byKey := map[string]*keyState{}
	var keys []string
	for side := range 2 {
		if got, asked := len(s.sk.fetched[side]), len(s.sk.ids[side]); got != asked {
			// A record changed since the sketch (or an ID collision).
			s.stats.CountMismatches++
			if s.cfg.Strict && got < asked {
				return fmt.Errorf("%w: partition %d: %s returned %d of the %d records its sketch held alone",
					ErrNotConverged, s.cfg.Partition, Side(side), got, asked)
			}
		}
		for _, e := range s.sk.fetched[side] {
			ks := byKey[string(e.Key)]
			if ks == nil {
				ks = &keyState{key: e.Key, have: [2]bool{true, true}}
				byKey[string(e.Key)] = ks
				keys = append(keys, string(e.Key))
			}
			ks.rec[side] = e.Record
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		ks := byKey[k]
		s.noteTransferred(ks)
		if err := s.resolve(ks); err != nil {
			return err
		}
	}
	s.phase = phaseApply
	return nil
}

// checkSketch validates a RangeSketch answer: the cells and strata asked
// for, and cell counts that add up to SketchHashes times the entries
// summarized (modulo 256).
func (s *Session) checkSketch(req Request, res RangeSketchResult) error {
	r := req.Sketch
	if len(res.Cells) != r.Cells {
		return s.bad(req, s.part, "%d sketch cells, %d asked for", len(res.Cells), r.Cells)
	}
	if len(res.Strata) != r.Strata*StrataCells {
		return s.bad(req, s.part, "%d estimator values, %d asked for", len(res.Strata), r.Strata*StrataCells)
	}
	if r.Cells == 0 {
		return nil
	}
	var sum int8
	for _, c := range res.Cells {
		if c.ID >= 1<<SketchIDBits {
			return s.bad(req, s.part, "sketch ID %#x wider than %d bits", c.ID, SketchIDBits)
		}
		sum += c.Count
	}
	if want := int8(uint8(res.Count * SketchHashes)); sum != want {
		return s.bad(req, s.part, "sketch cells count %d items (mod 256), %d records make %d", uint8(sum), res.Count, uint8(want))
	}
	return nil
}

// checkFetchByHash validates a FetchByHash answer: strictly ascending keys
// inside the requested ranges, records that decode and whose sketch IDs were
// asked for. It returns the entries with their digests filled in.
func (s *Session) checkFetchByHash(req Request, es []Entry) ([]Entry, error) {
	asked := make(map[uint64]bool, len(req.FetchByHash.IDs))
	for _, id := range req.FetchByHash.IDs {
		asked[id] = true
	}
	for i := range es {
		e := &es[i]
		in := false
		for _, r := range req.FetchByHash.Ranges {
			in = in || r.Contains(e.Key)
		}
		if !in || !s.inPartition(e.Key) {
			return nil, s.bad(req, s.part, "entry %q outside the ranges", e.Key)
		}
		if i > 0 && bytes.Compare(es[i-1].Key, e.Key) >= 0 {
			return nil, s.bad(req, s.part, "entries not strictly ascending at %q", e.Key)
		}
		if e.Record == nil {
			return nil, s.bad(req, s.part, "no record for %q", e.Key)
		}
		e.Digest = EntryDigest(e.Key, e.Record)
		if !asked[SketchID(e.Digest)] {
			return nil, s.bad(req, s.part, "entry %q (ID %#x) not asked for", e.Key, SketchID(e.Digest))
		}
		if _, err := record.DecodeRecord(e.Record); err != nil {
			return nil, s.bad(req, s.part, "record of %q: %v", e.Key, err)
		}
	}
	return es, nil
}
