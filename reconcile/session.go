package reconcile

import (
	"fmt"
	"slices"
	"time"

	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// Session reconciles one partition of two replicas, A and B. It is a pure
// state machine, like etcd's raft: it performs no I/O, reads no clock and
// starts no goroutine. A driver (see SyncPartition) loops:
//
//	for step := s.Next(); !step.Done; step = s.Next() {
//		responses := issue step.Requests concurrently
//		s.Deliver(responses...)
//	}
//	stats, err := s.Stats(), s.Err()
//
// The rounds, each one round trip:
//
//  1. Info of both sides, only if SessionConfig did not supply them (checks
//     tree parameters and readiness), then RangeHash of the partition's
//     range on both sides: equal fingerprints end the session.
//  2. For each differing range, RangeHash of that range with Fanout and one
//     or more levels (Depth) on both sides. Children with equal boundaries
//     are compared pairwise; where the sides chose different boundaries
//     (a boundary key present on one side only), the finer side's ranges
//     are asked of both sides in the next round. Small differing ranges are
//     listed: RangeScan without records on both sides (or with records on
//     the only side that has any). These requests are pipelined: a round
//     carries every descent, listing and fetch that is ready.
//  3. Keys whose digests differ or that one side lacks are fetched (Fetch)
//     from the sides that hold them.
//  4. Records are decoded and resolved with the Resolver; the resolved
//     record is applied (Apply) only to the sides whose record differs
//     from it, and never to a side whose clock plus maximum offset (from
//     its Info) it is stamped beyond: that key is counted in
//     Stats.Quarantined instead. (Before step 1, Infos whose clocks differ
//     by more than the offset of the side behind end the session with
//     ErrClockSkew.)
//  5. Confirm: RangeHash of the partition on both sides (a bounded
//     session has none, see SessionConfig.MaxSessionKeys);
//     Stats.Converged reports whether the roots are now equal (writes
//     racing the session can make them differ; they are left to the
//     next session). The
//     confirm rides on the apply round (RequestApply with Confirm, and a
//     RangeHash for a side without writes) unless a side's writes need
//     several Apply requests.
//
// With sketches (both replicas declare CapSketch), steps 2 and 3
// are replaced by set reconciliation: RangeSketch of the partition on both
// sides, then FetchByHash of the entries each side holds alone (see
// session_sketch.go): 4 round trips when the first sketch decodes, one more
// per resized sketch.
//
// Every answer is validated (see ErrBadPeerAnswer); a bad one ends the
// session before any write derived from it is requested, so nothing
// unvalidated is written (writes resolved from earlier, valid answers may
// have been applied already when the session drains them mid-way, see
// SessionConfig.MaxPendingBytes). Writes are derived only from records
// whose digests were recomputed.
//
// A Session is not safe for concurrent use.
type Session struct {
	cfg       SessionConfig
	resolver  record.Resolver
	infos     [2]*Info
	part      KeyRange // the partition's range
	phase     phase
	roundKind phase // the kind of the round in flight
	nextID    uint64
	err       error
	stats     Stats
	fanout    int
	leafSize  uint64
	threshold uint64
	// What the two replicas' capabilities and cfg.Method chose (see
	// chooseMethod): symbol streams, sketches, apply-and-confirm of any
	// size.
	symbols, sketch, confirmAnySize bool

	// The current round.
	inflight map[uint64]Request
	round    roundResults

	// Work for the next round.
	toHash  []hashItem
	toList  []*listItem
	toFetch map[string]*keyState // keys to fetch next round
	// fetching are the keys whose fetches are in flight.
	fetching map[string]*keyState
	// done are the keys already reconciled (each key once per session).
	done map[string]bool
	// writes are the entries to apply, per side; pendingBytes their keys'
	// and records' bytes.
	writes       [2][]Entry
	pendingBytes int64
	// draining reports that the writes are being applied before the
	// session goes on (see drainRound).
	draining bool
	// rootFP are the root fingerprints of the first comparison.
	rootFP [2]Fingerprint
	// sk is the state of sketch reconciliation.
	sk sketchState
	// sym is the state of the symbol streams.
	sym symState
	// final is Stats.Remaining once the session is done: the count
	// difference of the confirmed roots (at least 1 when they differ).
	final uint64
	// bound is the search for the ranges of a bounded session.
	bound boundSearch
	// resumed: the session started from cfg.Resume, without a root
	// comparison (rootFP unknown).
	resumed bool
	// cutoff is, per side, the greatest wall time of a record the side
	// accepted when it answered Info (Info.recordCutoff; 0: no limit);
	// elapsed (Tick) moves both forward as the session runs.
	cutoff  [2]int64
	elapsed time.Duration
}

// sketchState is the sketch reconciliation of the partition.
type sketchState struct {
	ranges   []KeyRange
	cells    int
	strata   int
	attempts int
	// ids are the sketch IDs to fetch from each side; fetchNext the
	// index in ids of the next one to ask for, fetched the entries
	// received so far (FetchByHashLimit IDs a round).
	ids       [2][]uint64
	fetchNext [2]int
	fetched   [2][]Entry
	// estimate is the strata estimate of the difference, once known.
	estimate float64
	// paired reports a paired fetch (see startFetchByHash): first is the
	// side fetched first, handled the keys of its chunks, got the entries
	// received by ID per side.
	paired  bool
	first   Side
	handled map[string]bool
	got     [2]int
}

type phase uint8

const (
	phaseStart phase = iota
	phaseInfo
	phaseRoot
	phaseDescend
	phaseSketch
	phaseSymbols
	phaseBound
	phaseFetchHash
	phaseApply
	phaseConfirm
	phaseDone
)

// hashItem is a range to RangeHash on both sides with children.
type hashItem struct {
	r KeyRange
	// count is the larger side's record count, if known (0 otherwise).
	count uint64
}

// listItem is a range to list on both sides (or on one).
type listItem struct {
	r           KeyRange
	withRecords bool
	need        [2]bool
	count       [2]int64 // expected counts from fingerprints; -1 unknown
	cursor      [2][]byte
	finished    [2]bool
	entries     [2][]Entry
	// listed counts the entries already taken out of entries (a listing
	// with records is resolved page by page).
	listed [2]int64
}

// keyState is one key being reconciled.
type keyState struct {
	key  []byte
	need [2]bool // records to fetch
	have [2]bool // fetched (or known absent)
	rec  [2][]byte
}

// roundResults collects the answers of the round in flight.
type roundResults struct {
	hashRanges []KeyRange
	hashFanout int
	hashDepth  int
	hashes     [2][]RangeHash
	gotHash    [2]bool
	lists      map[uint64]*listItem
	infos      [2]*Info
	sketches   [2]*RangeSketchResult
	byHash     [2][]Entry
}

// NewSession returns a session for cfg. It fails only on an invalid cfg
// (a Fanout of 1, negative limits).
func NewSession(cfg SessionConfig) (*Session, error) {
	if cfg.Fanout == 0 {
		cfg.Fanout = 16
	}
	if cfg.Fanout < 2 {
		return nil, fmt.Errorf("%w: fanout %d < 2", ErrInvalidSessionConfig, cfg.Fanout)
	}
	if cfg.MaxDepth == 0 {
		cfg.MaxDepth = 2
	}
	if cfg.MaxDepth < 1 || cfg.ScanLimit < 0 {
		return nil, fmt.Errorf("%w: MaxDepth %d, ScanLimit %d", ErrInvalidSessionConfig, cfg.MaxDepth, cfg.ScanLimit)
	}
	if cfg.ScanLimit == 0 {
		cfg.ScanLimit = 1024
	}
	if cfg.HashRangesLimit <= 0 {
		cfg.HashRangesLimit = 4096
	}
	if cfg.ApplyLimit <= 0 {
		cfg.ApplyLimit = 10000
	}
	if cfg.FetchByHashLimit <= 0 {
		cfg.FetchByHashLimit = DefaultFetchByHashLimit
	}
	if cfg.MaxPendingBytes < 0 {
		return nil, fmt.Errorf("%w: MaxPendingBytes %d", ErrInvalidSessionConfig, cfg.MaxPendingBytes)
	}
	if cfg.MaxPendingBytes == 0 {
		cfg.MaxPendingBytes = DefaultMaxPendingBytes
	}
	switch cfg.Method {
	case MethodAuto, MethodSymbols, MethodSketch, MethodDescent, MethodNaive:
	default:
		return nil, fmt.Errorf("%w: method %q (symbols, sketch, descent, naive or empty for the best both replicas support)", ErrInvalidSessionConfig, cfg.Method)
	}
	s := &Session{
		cfg:      cfg,
		fanout:   cfg.Fanout,
		inflight: map[uint64]Request{},
		toFetch:  map[string]*keyState{},
		fetching: map[string]*keyState{},
		done:     map[string]bool{},
	}
	s.stats.Partition = cfg.Partition
	s.stats.Sessions = 1
	if cfg.InfoA != nil && cfg.InfoB != nil {
		s.infos = [2]*Info{cfg.InfoA, cfg.InfoB}
		if err := s.checkInfos(); err != nil {
			s.fail(err)
		}
	}
	return s, nil
}

// Err returns the error that ended the session, or nil.
func (s *Session) Err() error { return s.err }

// Tick tells the session how long it has run by the driver's clock (time
// comes in from outside, like raft's ticks; SyncPartition ticks before
// every round). Both replicas' clocks have moved as much since they
// answered Info, so the cutoff of the records each accepts moves too: a
// record written at the other side while the session runs is not taken
// for one stamped in the future. A smaller elapsed than the last is
// ignored.
func (s *Session) Tick(elapsed time.Duration) {
	if elapsed > s.elapsed {
		s.elapsed = elapsed
	}
}

// Stats returns the session's statistics so far. Duration is left to the
// driver.
func (s *Session) Stats() Stats {
	st := s.stats
	st.Remaining = s.remaining()
	if r := s.resume(); r != nil {
		r.Remaining = st.Remaining
		st.Resume = r
	}
	return st
}

// remaining estimates the keys still to repair (Stats.Remaining).
func (s *Session) remaining() uint64 {
	if s.phase == phaseDone {
		return s.final
	}
	if s.rootFP[SideA] == s.rootFP[SideB] && !s.resumed {
		return 0 // not compared yet
	}
	var n uint64
	known := false
	for side := range 2 {
		n += uint64(len(s.writes[side]))
		if len(s.sk.ids[side]) > 0 {
			known = true
			n += uint64(len(s.sk.ids[side]) - s.sk.fetchNext[side])
		}
	}
	n += uint64(len(s.toFetch) + len(s.fetching))
	if !known {
		// The difference is not decoded yet: the roots' count
		// difference is a lower bound (the previous session's estimate,
		// when resumed).
		return max(n, s.baseEstimate())
	}
	return n + s.sym.boundRest
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

// Done reports whether the session has ended.
func (s *Session) Done() bool { return s.phase == phaseDone }

func (s *Session) fail(err error) {
	if s.err == nil {
		s.err = err
	}
	if s.phase != phaseDone {
		s.final = s.remaining()
	}
	s.phase = phaseDone
	s.inflight = map[uint64]Request{}
}

// chooseMethod sets what the session uses from the capabilities both
// replicas declare and cfg.Method.
func (s *Session) chooseMethod(both Capabilities) error {
	s.confirmAnySize = both.Has(CapApplyAndHash)
	switch s.cfg.Method {
	case MethodAuto:
		s.sketch = both.Has(CapSketch)
		s.symbols = both.Has(CapSketch | CapSymbols)
	case MethodSymbols, MethodSketch:
		need := CapSketch
		if s.cfg.Method == MethodSymbols {
			need |= CapSymbols
		}
		if !both.Has(need) {
			return fmt.Errorf("%w: partition %d: method %s needs %s on both replicas, and %q and %q declare %s and %s",
				ErrUnsupported, s.cfg.Partition, s.cfg.Method, need, s.infos[SideA].ID, s.infos[SideB].ID, s.infos[SideA].Capabilities, s.infos[SideB].Capabilities)
		}
		s.sketch = true
		s.symbols = s.cfg.Method == MethodSymbols
	}
	return nil
}

// checkInfos validates the two Infos and derives the partition range and
// resolver.
func (s *Session) checkInfos() error {
	a, b := s.infos[SideA], s.infos[SideB]
	if a.Tree != b.Tree {
		return fmt.Errorf("%w: partition %d: A (%q) has %+v, B (%q) has %+v",
			ErrIncompatibleTrees, s.cfg.Partition, a.ID, a.Tree, b.ID, b.Tree)
	}
	var parts [2]PartitionInfo
	for side, info := range s.infos {
		i := slices.IndexFunc(info.Partitions, func(p PartitionInfo) bool { return p.ID == s.cfg.Partition })
		if i < 0 {
			return fmt.Errorf("%w: partition %d unknown to %s (%q)", ErrNotReady, s.cfg.Partition, Side(side), info.ID)
		}
		parts[side] = info.Partitions[i]
		if !parts[side].Ready {
			return fmt.Errorf("%w: partition %d on %s (%q)", ErrNotReady, s.cfg.Partition, Side(side), info.ID)
		}
	}
	if !rangeEqual(parts[0].Range, parts[1].Range, nil) {
		return fmt.Errorf("%w: partition %d is %s on A, %s on B", ErrIncompatibleTrees, s.cfg.Partition, parts[0].Range, parts[1].Range)
	}
	s.part = parts[0].Range
	s.resolver = s.cfg.Resolver
	if s.resolver == nil {
		if a.Mode != b.Mode {
			return fmt.Errorf("%w: partition %d: A is %s, B is %s, and no resolver is configured", record.ErrModeMismatch, s.cfg.Partition, a.Mode, b.Mode)
		}
		if s.resolver = record.ResolverFor(a.Mode); s.resolver == nil {
			return fmt.Errorf("%w: %d", record.ErrUnknownMode, a.Mode)
		}
	}
	if a.WallTime > 0 && b.WallTime > 0 {
		// B's clock minus A's. The Infos are fetched concurrently, so the
		// round trip adds its own error, small next to any offset.
		s.stats.ClockSkew = time.Duration(b.WallTime - a.WallTime)
		behind, ahead := a, b
		if s.stats.ClockSkew < 0 {
			behind, ahead = b, a
		}
		if off := behind.MaxClockOffset; off > 0 && s.stats.ClockSkew.Abs() > off {
			return fmt.Errorf("%w: partition %d: %q's clock is %s ahead of %q's (max offset %s); no records exchanged",
				ErrClockSkew, s.cfg.Partition, ahead.ID, s.stats.ClockSkew.Abs(), behind.ID, off)
		}
	}
	s.cutoff = [2]int64{a.recordCutoff(), b.recordCutoff()}
	if err := s.chooseMethod(a.Capabilities & b.Capabilities); err != nil {
		return err
	}
	s.leafSize = uint64(max(a.Tree.LeafSize, 2))
	s.threshold = s.cfg.ListThreshold
	if s.threshold == 0 {
		s.threshold = s.leafSize
	}
	return nil
}

// Next returns the requests of the next round, or a Done step. While a round
// is in flight (not every Response delivered) it returns the same round's
// outstanding requests again.
func (s *Session) Next() Step {
	if s.phase == phaseDone {
		return Step{Done: true}
	}
	if len(s.inflight) > 0 {
		reqs := make([]Request, 0, len(s.inflight))
		for _, r := range s.inflight {
			reqs = append(reqs, r)
		}
		slices.SortFunc(reqs, func(a, b Request) int { return int(a.ID) - int(b.ID) })
		return Step{Requests: reqs}
	}
	var reqs []Request
	switch s.phase {
	case phaseStart:
		if s.infos[SideA] == nil || s.infos[SideB] == nil {
			s.phase = phaseInfo
			s.round = roundResults{}
			reqs = []Request{s.newRequest(Request{Side: SideA, Kind: RequestInfo}), s.newRequest(Request{Side: SideB, Kind: RequestInfo})}
			break
		}
		if r := s.cfg.Resume; r != nil && s.symbols && s.cfg.MaxSessionKeys > 0 && s.cfg.Method != MethodNaive && r.Side <= SideB && r.Remaining > s.cfg.MaxSessionKeys {
			s.resumed = true
			s.stats.Method = MethodSymbols
			s.phase = phaseBound
			return s.Next()
		}
		fallthrough
	case phaseRoot:
		if s.cfg.Method == MethodNaive {
			s.stats.Method = MethodNaive
			s.startNaive()
			return s.Next()
		}
		s.phase = phaseRoot
		s.round = roundResults{}
		reqs = s.hashRound([]KeyRange{s.part}, 0, 0)
	case phaseDescend:
		reqs = s.descendRound()
		if len(reqs) == 0 {
			s.phase = phaseApply
			return s.Next()
		}
	case phaseSketch:
		s.round = roundResults{}
		req := RangeSketchRequest{Partition: s.cfg.Partition, Ranges: s.sk.ranges, Cells: s.sk.cells, Strata: s.sk.strata}
		reqs = []Request{
			s.newRequest(Request{Side: SideA, Kind: RequestRangeSketch, Sketch: req}),
			s.newRequest(Request{Side: SideB, Kind: RequestRangeSketch, Sketch: req}),
		}
	case phaseSymbols:
		reqs = s.symbolsRound()
	case phaseBound:
		s.round = roundResults{}
		if s.bound.leaves == nil {
			// Only the larger side's children are used (finishBound): the
			// other side, often the one a foreground keeps writing to, is
			// spared a tree recompute.
			reqs = s.hashRound([]KeyRange{s.part}, s.fanout, s.cfg.MaxDepth)[s.boundSide() : s.boundSide()+1]
		} else {
			reqs = s.hashRound(s.bound.nextChunk(s.cfg.MaxSessionKeys+s.cfg.MaxSessionKeys/2, s.cfg.HashRangesLimit), 0, 0)
		}
	case phaseFetchHash:
		s.round = roundResults{}
		reqs = s.fetchByHashRound()
		if len(reqs) == 0 {
			s.phase = phaseApply
			return s.Next()
		}
	case phaseApply:
		s.round = roundResults{}
		reqs = s.applyRound()
		if len(reqs) == 0 {
			if s.sym.bounded {
				s.finishBounded()
				return Step{Done: true}
			}
			s.phase = phaseConfirm
			return s.Next()
		}
	case phaseConfirm:
		s.round = roundResults{}
		reqs = s.hashRound([]KeyRange{s.part}, 0, 0)
	}
	s.roundKind = s.phase
	s.stats.Rounds++
	for _, r := range reqs {
		s.inflight[r.ID] = r
		s.countRequest(r)
	}
	return Step{Requests: reqs}
}

func (s *Session) newRequest(r Request) Request {
	s.nextID++
	r.ID = s.nextID
	return r
}

// Deliver feeds responses of the round in flight to the session. Responses
// may come in any order and in several calls. A Response with an unknown ID
// ends the session with ErrSessionMisuse.
func (s *Session) Deliver(resps ...Response) {
	for _, resp := range resps {
		if s.phase == phaseDone {
			return
		}
		req, ok := s.inflight[resp.ID]
		if !ok || req.Side != resp.Side {
			s.fail(fmt.Errorf("%w: response %d (side %s) answers no request in flight", ErrSessionMisuse, resp.ID, resp.Side))
			return
		}
		delete(s.inflight, resp.ID)
		if req.Kind == RequestSymbols && resp.Err == nil {
			s.countResponse(req, resp)
			if err := s.acceptSymbols(req, resp); err != nil {
				s.fail(err)
				return
			}
			continue
		}
		if resp.Err != nil {
			s.fail(fmt.Errorf("reconcile: partition %d: replica %s (%q): %s: %w", s.cfg.Partition, req.Side, s.peerID(req.Side), req.Kind, resp.Err))
			return
		}
		s.countResponse(req, resp)
		if err := s.accept(req, resp); err != nil {
			s.fail(err)
			return
		}
	}
	if len(s.inflight) == 0 && s.phase != phaseDone {
		if err := s.finishRound(); err != nil {
			s.fail(err)
		}
	}
}

func (s *Session) peerID(side Side) record.ReplicaID {
	if s.infos[side] != nil {
		return s.infos[side].ID
	}
	return ""
}

// bad returns a PeerAnswerError.
func (s *Session) bad(req Request, r KeyRange, format string, args ...any) error {
	return &PeerAnswerError{Side: req.Side, Peer: s.peerID(req.Side), Partition: s.cfg.Partition, Request: req.Kind, Range: r, Reason: fmt.Sprintf(format, args...)}
}

// accept validates one answer and stores it in the round's results.
func (s *Session) accept(req Request, resp Response) error {
	switch req.Kind {
	case RequestInfo:
		info := resp.Info
		s.round.infos[req.Side] = &info
	case RequestRangeHash:
		if err := s.checkHashes(req, resp.Hashes); err != nil {
			return err
		}
		s.round.hashes[req.Side] = resp.Hashes
		s.round.gotHash[req.Side] = true
	case RequestRangeScan:
		li := s.round.lists[req.ID]
		if err := s.checkScan(req, resp.Scan); err != nil {
			return err
		}
		li.entries[req.Side] = append(li.entries[req.Side], resp.Scan.Entries...)
		if resp.Scan.More {
			li.cursor[req.Side] = resp.Scan.Next
		} else {
			li.finished[req.Side] = true
		}
	case RequestFetch:
		if err := s.checkFetch(req, resp.Entries); err != nil {
			return err
		}
		got := map[string][]byte{}
		for _, e := range resp.Entries {
			got[string(e.Key)] = e.Record
		}
		for _, k := range req.Keys {
			ks := s.fetching[string(k)]
			ks.have[req.Side] = true
			ks.rec[req.Side] = got[string(k)]
		}
	case RequestApply:
		if req.Confirm != nil {
			if err := s.checkHashes(Request{ID: req.ID, Side: req.Side, Kind: RequestRangeHash,
				RangeHash: RangeHashRequest{Partition: s.cfg.Partition, Ranges: []KeyRange{*req.Confirm}}}, resp.Hashes); err != nil {
				return err
			}
			s.round.hashes[req.Side] = resp.Hashes
			s.round.gotHash[req.Side] = true
		}
	case RequestRangeSketch:
		if err := s.checkSketch(req, resp.Sketch); err != nil {
			return err
		}
		sk := resp.Sketch
		s.round.sketches[req.Side] = &sk
	case RequestFetchByHash:
		es, err := s.checkFetchByHash(req, resp.Entries)
		if err != nil {
			return err
		}
		s.round.byHash[req.Side] = append(s.round.byHash[req.Side], es...)
	}
	return nil
}

// finishRound processes a complete round and plans the next.
func (s *Session) finishRound() error {
	switch s.roundKind {
	case phaseInfo:
		s.infos = s.round.infos
		if err := s.checkInfos(); err != nil {
			return err
		}
		s.phase = phaseRoot
	case phaseRoot:
		fa, fb := s.round.hashes[SideA][0].Fingerprint, s.round.hashes[SideB][0].Fingerprint
		s.rootFP = [2]Fingerprint{fa, fb}
		if fa == fb {
			s.stats.Converged = true
			s.stats.Method = MethodNone
			s.phase = phaseDone
			return nil
		}
		// With one side empty everything differs: set reconciliation
		// would only name every record the descent lists anyway.
		setRecon := fa.Count > 0 && fb.Count > 0
		if s.symbols && setRecon {
			s.stats.Method = MethodSymbols
			if s.cfg.MaxSessionKeys > 0 && absDiff(fa.Count, fb.Count) > s.cfg.MaxSessionKeys {
				s.phase = phaseBound
				return nil
			}
			s.startSymbols(fa, fb)
			return nil
		}
		if s.sketch && setRecon {
			s.stats.Method = MethodSketch
			s.startSketch(fa, fb)
			return nil
		}
		s.stats.Method = MethodDescent
		s.phase = phaseDescend
		s.compare(s.part, fa, fb, nil, nil, false)
	case phaseDescend:
		if s.round.gotHash[SideA] {
			for i, r := range s.round.hashRanges {
				ha, hb := s.round.hashes[SideA][i], s.round.hashes[SideB][i]
				s.compare(r, ha.Fingerprint, hb.Fingerprint, ha.Children, hb.Children, true)
			}
		}
		if err := s.finishLists(); err != nil {
			return err
		}
		if err := s.finishFetches(); err != nil {
			return err
		}
	case phaseSketch:
		return s.finishSketch()
	case phaseSymbols:
		return s.finishSymbols()
	case phaseBound:
		s.finishBound()
	case phaseFetchHash:
		return s.finishFetchByHashRound()
	case phaseApply:
		if s.sym.bounded {
			s.finishBounded()
			return nil
		}
		s.phase = phaseConfirm
		if s.round.gotHash[SideA] && s.round.gotHash[SideB] {
			return s.confirmed()
		}
	case phaseConfirm:
		return s.confirmed()
	}
	return nil
}

// finishBounded ends a bounded session once its writes are applied,
// without a confirm: the rest of the partition is left to the next session,
// so hashing it (a tree recompute of every leaf a foreground dirtied
// meanwhile) would tell nothing, and the ranges it reconciled are compared
// again by the session that finds the rest small (racing writes, like any
// session's, are left to it). Its estimate of what remains is the
// differences it found outside its ranges.
func (s *Session) finishBounded() {
	s.final = s.sym.boundRest
	s.stats.Converged = false
	s.phase = phaseDone
}

// confirmed ends the session with the root fingerprints of this round.
func (s *Session) confirmed() error {
	fa, fb := s.round.hashes[SideA][0].Fingerprint, s.round.hashes[SideB][0].Fingerprint
	s.stats.Converged = fa == fb
	s.phase = phaseDone
	s.final = 0
	if !s.stats.Converged {
		s.final = max(absDiff(fa.Count, fb.Count), 1)
	}
	if !s.stats.Converged && s.cfg.Strict && s.stats.Quarantined == 0 {
		return fmt.Errorf("%w: partition %d: roots differ after the session (A %d records, B %d records)",
			ErrNotConverged, s.cfg.Partition, fa.Count, fb.Count)
	}
	return nil
}
