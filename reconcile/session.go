package reconcile

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"time"
)

// Side names one of the two replicas of a session.
type Side uint8

const (
	// SideA is the first replica of a session.
	SideA Side = iota
	// SideB is the second replica of a session.
	SideB
)

// String returns "A" or "B".
func (s Side) String() string {
	switch s {
	case SideA:
		return "A"
	case SideB:
		return "B"
	}
	return fmt.Sprintf("Side(%d)", uint8(s))
}

// RequestKind is the Replica method a Request calls.
type RequestKind uint8

const (
	// RequestInfo calls Replica.Info.
	RequestInfo RequestKind = iota + 1
	// RequestRangeHash calls Replica.RangeHash with Request.RangeHash.
	RequestRangeHash
	// RequestRangeScan calls Replica.RangeScan with Request.RangeScan.
	RequestRangeScan
	// RequestFetch calls Replica.Fetch(Request.Partition, Request.Keys).
	RequestFetch
	// RequestApply calls Replica.Apply(Request.Partition, Request.Entries)
	// and, when Request.Confirm is set, then RangeHash of the partition's
	// range (see ApplyConfirmer).
	RequestApply
	// RequestRangeSketch calls Sketcher.RangeSketch with Request.Sketch.
	RequestRangeSketch
	// RequestFetchByHash calls Sketcher.FetchByHash with
	// Request.FetchByHash.
	RequestFetchByHash
	// RequestSymbols opens SymbolStreamer.OpenSymbols with Request.Symbols
	// and streams its chunks: each is delivered as a Response of its own,
	// and the request stays in flight until Session.Wants says otherwise.
	RequestSymbols
)

// String returns the Replica method's name.
func (k RequestKind) String() string {
	switch k {
	case RequestInfo:
		return "Info"
	case RequestRangeHash:
		return "RangeHash"
	case RequestRangeScan:
		return "RangeScan"
	case RequestFetch:
		return "Fetch"
	case RequestApply:
		return "Apply"
	case RequestRangeSketch:
		return "RangeSketch"
	case RequestFetchByHash:
		return "FetchByHash"
	case RequestSymbols:
		return "Symbols"
	}
	return fmt.Sprintf("RequestKind(%d)", uint8(k))
}

// Request is one Replica call a session asks its driver to make. Only the
// fields of its Kind are set. The slices belong to the session and must not
// be modified; they stay valid after the session moves on.
type Request struct {
	// ID identifies the request within the session; the Response carries it.
	ID uint64
	// Side is the replica to call.
	Side Side
	// Kind is the method to call.
	Kind RequestKind
	// RangeHash is the argument of RequestRangeHash.
	RangeHash RangeHashRequest
	// RangeScan is the argument of RequestRangeScan.
	RangeScan RangeScanRequest
	// Partition is the partition argument of RequestFetch and RequestApply.
	Partition uint32
	// Keys are the keys of RequestFetch, in ascending order.
	Keys [][]byte
	// Entries are the entries of RequestApply, in ascending key order.
	// Their Digest is zero: the receiver recomputes digests, so they do not
	// travel.
	Entries []Entry
	// Confirm asks RequestApply to return, after applying, the RangeHash
	// of Confirm's range (the partition's range) in Response.Hashes.
	Confirm *KeyRange
	// Sketch is the argument of RequestRangeSketch.
	Sketch RangeSketchRequest
	// FetchByHash is the argument of RequestFetchByHash.
	FetchByHash FetchByHashRequest
	// Symbols is the argument of RequestSymbols.
	Symbols SymbolsRequest
}

// Response is the result of one Request: the ID and Side of the request, the
// result field of its kind, or Err if the call failed. The session takes
// ownership of the slices in a Response.
type Response struct {
	ID      uint64
	Side    Side
	Info    Info
	Hashes  []RangeHash
	Scan    RangeScanResult
	Entries []Entry
	Sketch  RangeSketchResult
	// Symbols is one chunk of a RequestSymbols stream; SymbolsEnd reports
	// its end instead (the replica has no more symbols to send).
	Symbols    SymbolChunk
	SymbolsEnd bool
	Err        error
}

// Step is what a session asks for next: the requests of one round trip, or
// the end of the session.
type Step struct {
	// Requests are the calls of this round. They are independent: the driver
	// issues them all concurrently (one round trip), then delivers every
	// Response. Empty when Done.
	Requests []Request
	// Done reports that the session has ended: Session.Err and
	// Session.Stats give the outcome.
	Done bool
}

// SessionConfig configures a Session.
type SessionConfig struct {
	// Partition is the partition to reconcile.
	Partition uint32
	// Resolver reconciles differing records. Nil means ResolverFor the
	// replicas' Mode (which must then be the same on both sides).
	Resolver Resolver
	// InfoA and InfoB are the replicas' Info, if the caller already has them
	// (a repair loop or SyncAll fetches Info once for all partitions). When
	// either is nil the session's first round trip fetches both.
	InfoA, InfoB *Info
	// Fanout is the maximum number of children asked for per range and
	// level when descending; default 16, minimum 2.
	Fanout int
	// MaxDepth is the maximum number of tree levels asked for in one round
	// trip; default 2. The session asks for fewer when the counts show that
	// fewer levels reach ranges small enough to list.
	MaxDepth int
	// ListThreshold: a differing range whose larger side holds at most this
	// many records is listed (RangeScan without records) rather than
	// descended further. Default: the tree's leaf size.
	ListThreshold uint64
	// ScanLimit is the page size of range scans; default 1024.
	ScanLimit int
	// HashRangesLimit is the maximum number of ranges of one RangeHash
	// request; default 4096 (the engine's and the gRPC server's limit).
	// A descent with more differing ranges hashes them over several
	// rounds.
	HashRangesLimit int
	// Naive makes the session the O(N) baseline (see NewNaiveSession):
	// no fingerprints, a full (key, digest) listing of the partition on
	// both sides.
	Naive bool
	// Sketch makes the session reconcile differing partitions with
	// set-reconciliation sketches (RequestRangeSketch, RequestFetchByHash)
	// instead of descending the trees; both replicas must implement
	// Sketcher. SyncPartition sets it when both do (unless
	// SyncOptions.NoSketch). A sketch that fails to decode three times
	// falls back to the descent.
	Sketch bool
	// Symbols makes the session reconcile differing partitions with
	// streams of rateless coded symbols (RequestSymbols) instead of
	// fixed-size sketches; both replicas must implement SymbolStreamer and
	// Sketcher. SyncPartition sets it when both do (unless
	// SyncOptions.NoSketch). It takes precedence over Sketch.
	Symbols bool
	// ApplyLimit is the maximum number of entries of one Apply or Fetch
	// request; default 10000 (the engine's limit). Larger batches are
	// split into several requests of the same round.
	ApplyLimit int
	// FetchByHashLimit is the maximum number of sketch IDs of one
	// FetchByHash request; default DefaultFetchByHashLimit. Larger
	// fetches are split into several requests, so that no answer outgrows
	// a transport's message limit (gRPC's 64 MiB holds 65536 records of up
	// to ~1 KiB). It is larger than ApplyLimit because a replica without an
	// entry index (a sub-range's request) rescans the ranges for every
	// request.
	FetchByHashLimit int
	// FetchByHashChunksPerRound bounds the FetchByHash requests a side is
	// sent in one round (0: all of them, so a session takes 4 round trips
	// for any number of differences it fetches by ID). The repair loop sets 1 for
	// throttled replicas: a large repair's fetch then takes a round a
	// chunk, charged to the throttles chunk by chunk rather than as a
	// burst of parallel calls.
	FetchByHashChunksPerRound int
	// ConfirmAnySize reports that both replicas take any number of
	// entries in one apply-and-confirm call (ApplyConfirmer, which splits
	// them itself: the engine in batches, the gRPC client in one stream):
	// the apply round then sends each side one request with all its writes
	// and the confirm, whatever their number. SyncPartition sets it when
	// both replicas are ApplyConfirmers.
	ConfirmAnySize bool
	// MaxPendingBytes bounds the records a session holds in memory, to a
	// small multiple of MaxPendingBytes whatever the size of the
	// difference (a new, empty replica filled from a full one, say; see
	// docs/benchmarks.md for measured heaps): when the resolved
	// writes it has not applied yet reach it (their keys and records), the
	// session applies them all (Apply without a confirm,
	// DrainChunksPerRound requests a side per round) before it goes on;
	// the descent lists and fetches no more than
	// MaxPendingBytes/PendingKeyCost keys in one round and stops widening
	// while more are waiting; and a sketch or symbol difference of more
	// keys than that is fetched in pairs, a chunk a round (see
	// startFetchByHash), rather than all at once. The decoded difference's
	// IDs (8 bytes each) are not bounded. Default DefaultMaxPendingBytes;
	// negative is invalid.
	MaxPendingBytes int64
	// DrainBytes, if positive and below MaxPendingBytes, is the bytes of
	// queued writes at which the session applies them (else
	// MaxPendingBytes): a smaller figure applies a large repair as it goes,
	// so that a session cut short (timeout, cancellation) keeps more of
	// its work, without shrinking the rounds' key budget. The repair loop
	// sets LoopConfig.DrainBytes.
	DrainBytes int64
	// MaxSessionKeys bounds the difference one session reconciles with
	// symbol streams (SessionConfig.Symbols), so that a large repair
	// proceeds in sessions that each finish: when the roots' record counts
	// differ by more than this, the session first asks the larger side for
	// the root's children (one more round trip), then streams the symbols of
	// only the first of the larger side's children that differ from the
	// other side's, as many as hold about MaxSessionKeys differences at
	// the rate the counts suggest, repairs them and ends without a
	// confirm and without converging (Stats.Bounded); the next session
	// finds those ranges equal and goes on with the next ones. A session that is cut
	// (timeout, cancellation) then loses at most its own part, and the
	// next one resumes where the applied writes left off. Zero: no bound
	// (the repair loop sets LoopConfig.MaxSessionKeys).
	//
	// The ranges' fingerprints are asked a chunk at a time (ranges holding
	// about 1.5 MaxSessionKeys records on the larger side), from the start
	// of the partition or from Resume, until the differences found reach
	// MaxSessionKeys: on a replica a foreground keeps writing to, each
	// range asked is a recompute of the leaves dirtied in it.
	MaxSessionKeys uint64
	// Resume, with MaxSessionKeys and Symbols, is the Stats.Resume of the
	// previous session of the same partition and replicas, which was
	// bounded: the session then skips the root comparison (a recompute of
	// every dirty leaf of the partition on each side, which tells nothing
	// new while a large repair is under way), asks Resume.Side for the
	// root's children and looks for differing ranges from Resume.After on.
	// When Resume.Remaining is at most MaxSessionKeys, or the search finds
	// that everything that differs fits in one session, it starts over
	// with the root comparison, as without Resume. A stale Resume costs at most that round trip: every range
	// is compared before it is reconciled. The repair loop passes each
	// session its target's last one.
	Resume *BoundResume
	// Strict makes the session assume that nothing writes to the replicas
	// while it runs: answers that contradict earlier answers (a range listed
	// with another number of entries than its fingerprint counted) and roots
	// still differing at the confirm step end it with ErrNotConverged. Tests
	// use it; production sessions, which race with writes, do not.
	Strict bool
}

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
// With SessionConfig.Sketch (both replicas are Sketchers), steps 2 and 3
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
	resolver  Resolver
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

// DefaultFetchByHashLimit is the default SessionConfig.FetchByHashLimit.
const DefaultFetchByHashLimit = 1 << 16

// DefaultMaxPendingBytes is the default SessionConfig.MaxPendingBytes.
const DefaultMaxPendingBytes = 64 << 20

// PendingKeyCost is the memory a session counts for each key it lists or
// fetches in a round (its key, digest, record and bookkeeping: ~700 bytes
// measured for 16-byte keys and 100-byte values in a listing with
// records, rounded up): MaxPendingBytes/PendingKeyCost keys are listed or
// fetched at most per round, so that a round's answers take at most about
// MaxPendingBytes.
const PendingKeyCost = 1024

// DrainChunksPerRound is the number of Apply requests a side is sent per
// round while a session applies the writes it queued (see
// SessionConfig.MaxPendingBytes): each is a Pebble batch in memory on the
// replica while it commits.
const DrainChunksPerRound = 4

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
			return fmt.Errorf("%w: partition %d: A is %s, B is %s, and no resolver is configured", ErrModeMismatch, s.cfg.Partition, a.Mode, b.Mode)
		}
		if s.resolver = ResolverFor(a.Mode); s.resolver == nil {
			return fmt.Errorf("%w: %d", ErrUnknownMode, a.Mode)
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
		if r := s.cfg.Resume; r != nil && s.cfg.Symbols && s.cfg.MaxSessionKeys > 0 && !s.cfg.Naive && r.Side <= SideB && r.Remaining > s.cfg.MaxSessionKeys {
			s.resumed = true
			s.stats.Method = MethodSymbols
			s.phase = phaseBound
			return s.Next()
		}
		fallthrough
	case phaseRoot:
		if s.cfg.Naive {
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
	if s.cfg.ConfirmAnySize && confirm {
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
			}
			reqs = append(reqs, s.newRequest(r))
			entries = entries[n:]
		}
	}
	return reqs
}

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

func (s *Session) peerID(side Side) ReplicaID {
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
		if s.cfg.Symbols && setRecon {
			s.stats.Method = MethodSymbols
			if s.cfg.MaxSessionKeys > 0 && absDiff(fa.Count, fb.Count) > s.cfg.MaxSessionKeys {
				s.phase = phaseBound
				return nil
			}
			s.startSymbols(fa, fb)
			return nil
		}
		if s.cfg.Sketch && setRecon {
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
	var recs [2]Record
	for side := range 2 {
		if ks.rec[side] == nil {
			continue
		}
		r, err := DecodeRecord(ks.rec[side])
		if err != nil {
			// Checked when accepted; unreachable.
			return fmt.Errorf("%w: key %s on %s: %w", ErrBadPeerAnswer, keyForError(ks.key), Side(side), err)
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
			return fmt.Errorf("reconcile: partition %d: resolving key %s: %w", s.cfg.Partition, keyForError(ks.key), err)
		}
		resolved = r.Encode()
	}
	var wall int64 // the resolved record's greatest wall time, if needed
	if s.cutoff[SideA] > 0 || s.cutoff[SideB] > 0 {
		r, err := DecodeRecord(resolved)
		if err != nil {
			return fmt.Errorf("reconcile: partition %d: resolved record of key %s: %w", s.cfg.Partition, keyForError(ks.key), err)
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
