package reconcile

import (
	"bytes"

	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// This file validates peer answers. Every check here is a property of one
// answer and its request, so it holds whatever writes race the session; a
// violation is a bug or a lie and ends the session with a PeerAnswerError.

// checkHashes validates a RangeHash answer: one RangeHash per requested
// range, in order, for exactly that range; children (only if asked for) that
// partition their parent into at most Fanout non-empty ranges whose counts
// add up to the parent's count, at most Depth levels deep.
func (s *Session) checkHashes(req Request, hs []RangeHash) error {
	rr := req.RangeHash
	if len(hs) != len(rr.Ranges) {
		return s.bad(req, KeyRange{}, "%d answers for %d ranges", len(hs), len(rr.Ranges))
	}
	depth := rr.Depth
	if rr.Fanout > 0 && depth == 0 {
		depth = 1
	}
	for i, h := range hs {
		if !rangeEqual(h.Range, rr.Ranges[i], s.part.End) {
			return s.bad(req, rr.Ranges[i], "answered for range %s instead", h.Range)
		}
		if rr.Fanout == 0 {
			if h.Children != nil {
				return s.bad(req, h.Range, "children not asked for")
			}
			continue
		}
		if err := s.checkChildren(req, rr.Ranges[i], h.Fingerprint.Count, h.Children, rr.Fanout, depth); err != nil {
			return err
		}
	}
	return nil
}

func (s *Session) checkChildren(req Request, parent KeyRange, count uint64, cs []Child, fanout, depth int) error {
	if len(cs) == 0 {
		return nil // the replica did not split the range
	}
	if depth <= 0 {
		return s.bad(req, parent, "children deeper than the %d levels asked for", req.RangeHash.Depth)
	}
	if len(cs) > fanout {
		return s.bad(req, parent, "%d children, fanout %d", len(cs), fanout)
	}
	if !bytes.Equal(cs[0].Range.Start, parent.Start) {
		return s.bad(req, parent, "first child starts at %q", cs[0].Range.Start)
	}
	if compareEnd(cs[len(cs)-1].Range.End, parent.End, s.part.End) != 0 {
		return s.bad(req, parent, "last child ends at %q", cs[len(cs)-1].Range.End)
	}
	var sum uint64
	for i, c := range cs {
		if i > 0 && !bytes.Equal(c.Range.Start, cs[i-1].Range.End) {
			return s.bad(req, c.Range, "child %d does not start where child %d ends", i, i-1)
		}
		if !s.nonEmpty(c.Range) {
			return s.bad(req, c.Range, "empty or inverted child range")
		}
		if sum+c.Fingerprint.Count < sum {
			return s.bad(req, parent, "child counts overflow")
		}
		sum += c.Fingerprint.Count
		if len(cs) == 1 && c.Children != nil {
			return s.bad(req, c.Range, "an unsplit range has children")
		}
		if err := s.checkChildren(req, c.Range, c.Fingerprint.Count, c.Children, fanout, depth-1); err != nil {
			return err
		}
	}
	if sum != count {
		return s.bad(req, parent, "children count %d records, the range %d", sum, count)
	}
	return nil
}

// checkScan validates one RangeScan page: at most Limit entries, strictly
// ascending keys inside the requested range, records (if asked for) that
// decode and match their digests, and a Next inside the range after the
// last entry.
func (s *Session) checkScan(req Request, res RangeScanResult) error {
	rr := req.RangeScan
	if rr.Limit > 0 && len(res.Entries) > rr.Limit {
		return s.bad(req, rr.Range, "%d entries, limit %d", len(res.Entries), rr.Limit)
	}
	for i, e := range res.Entries {
		if !rr.Range.Contains(e.Key) || !s.inPartition(e.Key) {
			return s.bad(req, rr.Range, "entry %q outside the range", e.Key)
		}
		if i > 0 && bytes.Compare(res.Entries[i-1].Key, e.Key) >= 0 {
			return s.bad(req, rr.Range, "entries not strictly ascending at %q", e.Key)
		}
		if rr.WithRecords {
			if err := s.checkRecord(req, rr.Range, e); err != nil {
				return err
			}
		} else if e.Record != nil {
			return s.bad(req, rr.Range, "record for %q not asked for", e.Key)
		}
	}
	if res.More {
		if len(res.Entries) == 0 {
			return s.bad(req, rr.Range, "an empty page with more to come")
		}
		if !rr.Range.Contains(res.Next) || bytes.Compare(res.Next, res.Entries[len(res.Entries)-1].Key) <= 0 {
			return s.bad(req, rr.Range, "next page at %q", res.Next)
		}
	}
	return nil
}

// checkFetch validates a Fetch answer: strictly ascending keys, each one
// asked for, with a record that decodes and matches its digest.
func (s *Session) checkFetch(req Request, es []Entry) error {
	asked := make(map[string]bool, len(req.Keys))
	for _, k := range req.Keys {
		asked[string(k)] = true
	}
	for i, e := range es {
		if !asked[string(e.Key)] {
			return s.bad(req, KeyRange{}, "entry %q not asked for", e.Key)
		}
		if i > 0 && bytes.Compare(es[i-1].Key, e.Key) >= 0 {
			return s.bad(req, KeyRange{}, "entries not strictly ascending at %q", e.Key)
		}
		if err := s.checkRecord(req, KeyRange{}, e); err != nil {
			return err
		}
	}
	return nil
}

// checkRecord verifies that e.Record decodes and that e.Digest is its leaf
// digest.
func (s *Session) checkRecord(req Request, r KeyRange, e Entry) error {
	if e.Record == nil {
		return s.bad(req, r, "no record for %q", e.Key)
	}
	if d := EntryDigest(e.Key, e.Record); d != e.Digest {
		return s.bad(req, r, "digest %016x of %q does not match its record (%016x)", e.Digest, e.Key, d)
	}
	if _, err := record.DecodeRecord(e.Record); err != nil {
		return s.bad(req, r, "record of %q: %v", e.Key, err)
	}
	return nil
}

// inPartition reports whether key lies in the session's partition.
func (s *Session) inPartition(key []byte) bool { return s.part.Contains(key) }

// nonEmpty reports whether r (an empty End standing for the partition's end)
// is a non-empty range.
func (s *Session) nonEmpty(r KeyRange) bool {
	end := r.End
	if len(end) == 0 {
		end = s.part.End
	}
	return len(end) == 0 || bytes.Compare(r.Start, end) < 0
}
