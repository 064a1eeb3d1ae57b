package reconcile

import (
	"bytes"
	"fmt"
)

// hashRound returns one RangeHash request per side over ranges.
func (s *Session) hashRound(ranges []KeyRange, fanout, depth int) []Request {
	s.round.hashRanges, s.round.hashFanout, s.round.hashDepth = ranges, fanout, depth
	s.round.gotHash = [2]bool{}
	req := RangeHashRequest{Partition: s.cfg.Partition, Ranges: ranges, Fanout: fanout, Depth: depth}
	return []Request{
		s.newRequest(Request{Side: SideA, Kind: RequestRangeHash, RangeHash: req}),
		s.newRequest(Request{Side: SideB, Kind: RequestRangeHash, RangeHash: req}),
	}
}

// descendRound assembles the pipelined work of the next round: the
// queued writes once they reach MaxPendingBytes, listings of up to
// keyBudget keys, the next ranges to hash unless listings are waiting
// (the descent does not widen while it holds its budget of keys), and the
// fetches of up to keyBudget of the keys found to differ.
func (s *Session) descendRound() []Request {
	s.round = roundResults{lists: map[uint64]*listItem{}}
	if reqs := s.drainRound(); len(reqs) > 0 {
		return reqs
	}
	var reqs []Request
	// The listings that fit in this round's budget (at least one).
	budget, listing, lists := s.keyBudget(), int64(0), 0
	for _, li := range s.toList {
		if listing >= budget {
			break
		}
		listing += li.roundCost(s.cfg.ScanLimit)
		lists++
	}
	if len(s.toHash) > 0 && lists == len(s.toList) {
		batch := s.toHash[:min(len(s.toHash), s.cfg.HashRangesLimit)]
		ranges := make([]KeyRange, len(batch))
		for i, h := range batch {
			ranges[i] = h.r
		}
		reqs = append(reqs, s.hashRound(ranges, s.fanout, s.depthFor(batch))...)
		s.toHash = s.toHash[len(batch):]
	}
	for _, li := range s.toList[:lists] {
		for side := range 2 {
			if !li.need[side] || li.finished[side] {
				continue
			}
			r := li.r
			if li.cursor[side] != nil {
				r.Start = li.cursor[side]
			}
			req := s.newRequest(Request{Side: Side(side), Kind: RequestRangeScan, RangeScan: RangeScanRequest{
				Partition: s.cfg.Partition, Range: r, WithRecords: li.withRecords, Limit: s.cfg.ScanLimit,
			}})
			s.round.lists[req.ID] = li
			reqs = append(reqs, req)
		}
	}
	return append(reqs, s.fetchRound(budget)...)
}

// depthFor chooses how many levels to ask for: enough to reach ranges of
// about ListThreshold records from the largest range, at most MaxDepth.
func (s *Session) depthFor(items []hashItem) int {
	var most uint64
	for _, it := range items {
		most = max(most, it.count)
	}
	depth, reach := 1, uint64(s.fanout)*s.threshold
	for depth < s.cfg.MaxDepth && reach < most {
		depth++
		reach *= uint64(s.fanout)
	}
	return depth
}

// compare plans the work for a range whose fingerprints are fa and fb.
// asked reports whether children were requested for it.
func (s *Session) compare(r KeyRange, fa, fb Fingerprint, ca, cb []Child, asked bool) {
	if fa == fb {
		return
	}
	switch {
	case fa.Count == 0 || fb.Count == 0:
		// One side is empty here: every record of the other must move.
		// A range of more than a page is split along the full side's
		// tree first, so that its pages can be listed side by side (up
		// to the key budget a round) rather than one a round.
		n, children := max(fa.Count, fb.Count), ca
		if fa.Count == 0 {
			children = cb
		}
		switch {
		case n > uint64(s.cfg.ScanLimit) && !asked:
			s.toHash = append(s.toHash, hashItem{r: r, count: n})
			return
		case n > uint64(s.cfg.ScanLimit) && len(children) > 1:
			for _, c := range children {
				if fa.Count == 0 {
					s.compare(c.Range, Fingerprint{}, c.Fingerprint, nil, c.Children, c.Children != nil)
				} else {
					s.compare(c.Range, c.Fingerprint, Fingerprint{}, c.Children, nil, c.Children != nil)
				}
			}
			return
		}
		li := &listItem{r: r, withRecords: true, count: [2]int64{int64(fa.Count), int64(fb.Count)}}
		li.need[SideA], li.need[SideB] = fa.Count > 0, fb.Count > 0
		s.toList = append(s.toList, li)
	case max(fa.Count, fb.Count) <= s.threshold:
		s.list(r, fa, fb)
	case !asked:
		s.toHash = append(s.toHash, hashItem{r: r, count: max(fa.Count, fb.Count)})
	case len(ca) == 0 || len(cb) == 0:
		// The replica would not split the range: list it.
		s.list(r, fa, fb)
	default:
		s.align(r, ca, cb)
	}
}

func (s *Session) list(r KeyRange, fa, fb Fingerprint) {
	s.toList = append(s.toList, &listItem{r: r, need: [2]bool{true, true}, count: [2]int64{int64(fa.Count), int64(fb.Count)}})
}

// align compares two child lists that partition the same range.
func (s *Session) align(r KeyRange, ca, cb []Child) {
	if len(ca) == 1 && len(cb) == 1 {
		// Neither side can split the range: it is one leaf on both.
		s.list(r, ca[0].Fingerprint, cb[0].Fingerprint)
		return
	}
	i, j := 0, 0
	for i < len(ca) && j < len(cb) {
		if rangeEqual(ca[i].Range, cb[j].Range, s.part.End) {
			s.compare(ca[i].Range, ca[i].Fingerprint, cb[j].Fingerprint, ca[i].Children, cb[j].Children, ca[i].Children != nil || cb[j].Children != nil)
			i++
			j++
			continue
		}
		gi, gj := i, j
		for compareEnd(ca[i].Range.End, cb[j].Range.End, s.part.End) != 0 {
			if compareEnd(ca[i].Range.End, cb[j].Range.End, s.part.End) < 0 {
				i++
			} else {
				j++
			}
		}
		s.misaligned(ca[gi:i+1], cb[gj:j+1])
		i++
		j++
	}
}

// misaligned handles a region that the two sides split differently: the
// side with more children there has its ranges asked of both sides.
func (s *Session) misaligned(ca, cb []Child) {
	region := KeyRange{Start: ca[0].Range.Start, End: ca[len(ca)-1].Range.End}
	var na, nb uint64
	for _, c := range ca {
		na += c.Fingerprint.Count
	}
	for _, c := range cb {
		nb += c.Fingerprint.Count
	}
	switch {
	case na == 0 && nb == 0:
	case na == 0 || nb == 0:
		li := &listItem{r: region, withRecords: true, need: [2]bool{na > 0, nb > 0}, count: [2]int64{int64(na), int64(nb)}}
		s.toList = append(s.toList, li)
	case max(na, nb) <= s.threshold:
		s.toList = append(s.toList, &listItem{r: region, need: [2]bool{true, true}, count: [2]int64{int64(na), int64(nb)}})
	default:
		finer := ca
		if len(cb) > len(ca) {
			finer = cb
		}
		for _, c := range finer {
			s.toHash = append(s.toHash, hashItem{r: c.Range, count: max(na, nb)})
		}
	}
}

// finishLists compares the listings completed in this round.
func (s *Session) finishLists() error {
	var rest []*listItem
	for _, li := range s.toList {
		if li.withRecords {
			// The other side has nothing here: every record listed is
			// resolved (and queued for the other side) as its page
			// arrives, so that the session never holds the whole range.
			for side := range 2 {
				for _, e := range li.entries[side] {
					ks := &keyState{key: e.Key}
					ks.have = [2]bool{true, true}
					ks.rec[side] = e.Record
					s.stats.KeysCompared++
					s.noteTransferred(ks)
					if err := s.resolve(ks); err != nil {
						return err
					}
				}
				li.listed[side] += int64(len(li.entries[side]))
				li.entries[side] = nil
			}
		}
		complete := (!li.need[SideA] || li.finished[SideA]) && (!li.need[SideB] || li.finished[SideB])
		if !complete {
			rest = append(rest, li)
			continue
		}
		for side := range 2 {
			if n := li.listed[side] + int64(len(li.entries[side])); li.need[side] && li.count[side] >= 0 && n != li.count[side] {
				s.stats.CountMismatches++
				if s.cfg.Strict {
					return fmt.Errorf("%w: partition %d: %s listed %d records in %s, its fingerprint counted %d",
						ErrNotConverged, s.cfg.Partition, Side(side), n, li.r, li.count[side])
				}
			}
		}
		if li.withRecords {
			continue
		}
		ea, eb := li.entries[SideA], li.entries[SideB]
		i, j := 0, 0
		for i < len(ea) || j < len(eb) {
			var c int
			switch {
			case i == len(ea):
				c = 1
			case j == len(eb):
				c = -1
			default:
				c = bytes.Compare(ea[i].Key, eb[j].Key)
			}
			s.stats.KeysCompared++
			switch {
			case c < 0:
				s.wantFetch(ea[i].Key, true, false)
				i++
			case c > 0:
				s.wantFetch(eb[j].Key, false, true)
				j++
			default:
				if ea[i].Digest != eb[j].Digest {
					s.wantFetch(ea[i].Key, true, true)
				}
				i++
				j++
			}
		}
	}
	s.toList = rest
	return nil
}

// rangeEqual reports whether two ranges are equal, an empty End standing for
// partEnd.
func rangeEqual(a, b KeyRange, partEnd []byte) bool {
	return bytes.Equal(a.Start, b.Start) && compareEnd(a.End, b.End, partEnd) == 0
}

// compareEnd compares two range ends, an empty end standing for partEnd and
// an empty partEnd for +infinity.
func compareEnd(a, b, partEnd []byte) int {
	if len(a) == 0 {
		a = partEnd
	}
	if len(b) == 0 {
		b = partEnd
	}
	switch {
	case len(a) == 0 && len(b) == 0:
		return 0
	case len(a) == 0:
		return 1
	case len(b) == 0:
		return -1
	}
	return bytes.Compare(a, b)
}
