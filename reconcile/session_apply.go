package reconcile

import (
	"bytes"
	"fmt"
	"math"
	"slices"

	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// applyRound returns the Apply requests of the writes, at most ApplyLimit
// entries each. When every side's writes fit in one request, the confirm
// step rides on this round: each Apply asks for the root afterwards and a
// side without writes gets a plain RangeHash of the root.
func (s *Session) applyRound() []Request {
	var reqs []Request
	// A bounded session confirms nothing (finishBounded).
	confirm := !s.sym.bounded
	any := false
	limit := s.cfg.ApplyLimit
	if s.confirmAnySize && confirm {
		limit = math.MaxInt
	}
	for side := range s.writes {
		confirm = confirm && len(s.writes[side]) <= limit
		any = any || len(s.writes[side]) > 0
	}
	if !any {
		return nil
	}
	root := s.part
	s.round.hashRanges = []KeyRange{root}
	for side := range s.writes {
		entries := s.writes[side]
		if len(entries) == 0 {
			if confirm {
				reqs = append(reqs, s.newRequest(Request{Side: Side(side), Kind: RequestRangeHash,
					RangeHash: RangeHashRequest{Partition: s.cfg.Partition, Ranges: []KeyRange{root}}}))
			}
			continue
		}
		slices.SortFunc(entries, func(a, b Entry) int { return bytes.Compare(a.Key, b.Key) })
		for len(entries) > 0 {
			n := min(len(entries), limit)
			r := Request{Side: Side(side), Kind: RequestApply, Partition: s.cfg.Partition, Entries: entries[:n]}
			if confirm {
				r.Confirm = &root
				r.ApplyAndHash = s.infos[side].Capabilities.Has(CapApplyAndHash)
			}
			reqs = append(reqs, s.newRequest(r))
			entries = entries[n:]
		}
	}
	return reqs
}

// fetchRound returns the Fetch requests of up to limit of the keys waiting
// in toFetch, in key order, each asked of the sides that need its record
// (ApplyLimit keys a request), and moves those keys to fetching; the rest
// wait for the next round.
func (s *Session) fetchRound(limit int64) []Request {
	if len(s.toFetch) == 0 {
		return nil
	}
	keys := make([]string, 0, len(s.toFetch))
	for k := range s.toFetch {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	keys = keys[:min(int64(len(keys)), limit)]
	var reqs []Request
	for side := range 2 {
		var fk [][]byte
		for _, k := range keys {
			if ks := s.toFetch[k]; ks.need[side] {
				fk = append(fk, ks.key)
			}
		}
		for len(fk) > 0 {
			n := min(len(fk), s.cfg.ApplyLimit)
			reqs = append(reqs, s.newRequest(Request{Side: Side(side), Kind: RequestFetch, Partition: s.cfg.Partition, Keys: fk[:n]}))
			fk = fk[n:]
		}
	}
	for _, k := range keys {
		s.fetching[k] = s.toFetch[k]
		delete(s.toFetch, k)
	}
	return reqs
}

// keyBudget is the number of keys the descent lists, and the number it
// fetches, in one round: MaxPendingBytes/PendingKeyCost, at least one page.
func (s *Session) keyBudget() int64 {
	return max(s.cfg.MaxPendingBytes/PendingKeyCost, int64(s.cfg.ScanLimit))
}

// roundCost is the number of entries the next pages of li's listing hold
// at most: a page a side it waits for, or what the side's fingerprint
// count leaves of it.
func (li *listItem) roundCost(pageSize int) int64 {
	var c int64
	for side := range 2 {
		if !li.need[side] || li.finished[side] {
			continue
		}
		p := int64(pageSize)
		if n := li.count[side]; n >= 0 {
			p = min(p, max(n-li.listed[side]-int64(len(li.entries[side])), 1))
		}
		c += p
	}
	return c
}

// drainRound returns the next Apply requests (without a confirm) of the
// queued writes once their bytes reach MaxPendingBytes: at most
// DrainChunksPerRound requests of ApplyLimit entries a side each round,
// until none is left. While it drains, a round carries nothing else, so a
// session holds at most MaxPendingBytes of writes plus what one round
// resolved. When the queue is empty the keys reconciled so far are
// forgotten as well: ranges are disjoint, so a key comes up again only if
// a write raced the session, and reconciling it again is harmless.
func (s *Session) drainRound() []Request {
	if !s.draining {
		limit := s.cfg.MaxPendingBytes
		if s.cfg.DrainBytes > 0 {
			limit = min(limit, s.cfg.DrainBytes)
		}
		if s.pendingBytes < limit {
			return nil
		}
		s.draining = true
		s.stats.Drains++
		for side := range s.writes {
			slices.SortFunc(s.writes[side], func(a, b Entry) int { return bytes.Compare(a.Key, b.Key) })
		}
	}
	var reqs []Request
	for side := range s.writes {
		for range DrainChunksPerRound {
			entries := s.writes[side]
			if len(entries) == 0 {
				break
			}
			n := min(len(entries), s.cfg.ApplyLimit)
			chunk := slices.Clone(entries[:n])
			for _, e := range chunk {
				s.pendingBytes -= int64(len(e.Key) + len(e.Record))
			}
			clear(entries[:n]) // the request holds the chunk now
			s.writes[side] = entries[n:]
			reqs = append(reqs, s.newRequest(Request{Side: Side(side), Kind: RequestApply, Partition: s.cfg.Partition, Entries: chunk}))
		}
	}
	if len(reqs) == 0 {
		s.draining = false
		s.writes = [2][]Entry{}
		s.pendingBytes = 0
		clear(s.done)
	}
	return reqs
}

func (s *Session) wantFetch(key []byte, a, b bool) {
	k := string(key)
	if s.done[k] || s.fetching[k] != nil {
		return
	}
	ks := s.toFetch[k]
	if ks == nil {
		ks = &keyState{key: key}
		s.toFetch[k] = ks
	}
	ks.need[SideA] = ks.need[SideA] || a
	ks.need[SideB] = ks.need[SideB] || b
	ks.have = [2]bool{!ks.need[SideA], !ks.need[SideB]}
}

// finishFetches resolves the keys whose fetches completed.
func (s *Session) finishFetches() error {
	keys := make([]string, 0, len(s.fetching))
	for k := range s.fetching {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		ks := s.fetching[k]
		if !ks.have[SideA] || !ks.have[SideB] {
			continue
		}
		delete(s.fetching, k)
		s.noteTransferred(ks)
		if err := s.resolve(ks); err != nil {
			return err
		}
	}
	return nil
}

func (s *Session) noteTransferred(ks *keyState) {
	if ks.rec[SideA] != nil || ks.rec[SideB] != nil {
		s.stats.KeysTransferred++
	}
}

// resolve reconciles one key's validated records and queues the writes.
func (s *Session) resolve(ks *keyState) error {
	k := string(ks.key)
	if s.done[k] {
		return nil
	}
	s.done[k] = true
	var recs [2]record.Record
	for side := range 2 {
		if ks.rec[side] == nil {
			continue
		}
		r, err := record.DecodeRecord(ks.rec[side])
		if err != nil {
			// Checked when accepted; unreachable.
			return fmt.Errorf("%w: key %s on %s: %w", ErrBadPeerAnswer, record.FormatKey(ks.key), Side(side), err)
		}
		recs[side] = r
	}
	var resolved []byte
	switch {
	case ks.rec[SideA] == nil && ks.rec[SideB] == nil:
		return nil // gone on both sides meanwhile
	case ks.rec[SideA] == nil:
		resolved = ks.rec[SideB]
	case ks.rec[SideB] == nil:
		resolved = ks.rec[SideA]
	case bytes.Equal(ks.rec[SideA], ks.rec[SideB]):
		return nil // already equal (a write raced the listing)
	default:
		r, err := s.resolver.Resolve(ks.key, recs[SideA], recs[SideB])
		if err != nil {
			return fmt.Errorf("reconcile: partition %d: resolving key %s: %w", s.cfg.Partition, record.FormatKey(ks.key), err)
		}
		resolved = r.Encode()
	}
	var wall int64 // the resolved record's greatest wall time, if needed
	if s.cutoff[SideA] > 0 || s.cutoff[SideB] > 0 {
		r, err := record.DecodeRecord(resolved)
		if err != nil {
			return fmt.Errorf("reconcile: partition %d: resolved record of key %s: %w", s.cfg.Partition, record.FormatKey(ks.key), err)
		}
		wall = r.MaxWallTime()
	}
	for side := range 2 {
		if !bytes.Equal(ks.rec[side], resolved) {
			if c := s.cutoff[side]; c > 0 && wall > c+int64(s.elapsed) {
				// Stamped in the receiver's future: it would refuse it
				// (ErrClockOffset). Reported, not written, not retried
				// within this session.
				s.stats.Quarantined++
				if len(s.stats.QuarantinedKeys) < MaxQuarantinedKeys {
					s.stats.QuarantinedKeys = append(s.stats.QuarantinedKeys, append([]byte(nil), ks.key...))
				}
				continue
			}
			s.writes[side] = append(s.writes[side], Entry{Key: ks.key, Record: resolved})
			s.stats.side(Side(side)).KeysRepaired++
			s.pendingBytes += int64(len(ks.key) + len(resolved))
			s.stats.PeakPendingBytes = max(s.stats.PeakPendingBytes, s.pendingBytes)
		}
	}
	return nil
}
