package reconcile

import (
	"fmt"
	"time"
)

// Bytes counts the bytes of session traffic by kind, as modelled by the wire
// model (see RequestWireSize).
type Bytes struct {
	// Fingerprints: RangeHash requests and answers (ranges, child
	// boundaries, fingerprints).
	Fingerprints uint64
	// KeyLists: keys and digests that name records without carrying them
	// (RangeScan pages without records, Fetch keys, FetchByHash IDs), and
	// the framing and digests of entries that carry records.
	KeyLists uint64
	// Sketches: RangeSketch requests and answers (IBLT cells and
	// estimators).
	Sketches uint64
	// Records: the encoded records themselves (the record fields of
	// entries, with their tags and lengths).
	Records uint64
	// RecordKeys: the key bytes of entries that carry a record. A record
	// moved is its key and its encoded value, so these count as data, not
	// metadata (see Data); the information-theoretic floor the benchmarks
	// compare with counts them the same way (K x (key + record)).
	RecordKeys uint64
	// Overhead: Info, Apply acknowledgements, message framing.
	Overhead uint64
}

// Total returns the sum of all kinds.
func (b Bytes) Total() uint64 {
	return b.Fingerprints + b.KeyLists + b.Sketches + b.Records + b.RecordKeys + b.Overhead
}

// Data returns the bytes of the records moved: their keys and encoded
// values (Records + RecordKeys).
func (b Bytes) Data() uint64 { return b.Records + b.RecordKeys }

// Metadata returns everything but Data: what it took to find which records
// to move, and the framing.
func (b Bytes) Metadata() uint64 { return b.Total() - b.Data() }

// Add returns b + o.
func (b Bytes) Add(o Bytes) Bytes {
	return Bytes{
		Fingerprints: b.Fingerprints + o.Fingerprints,
		KeyLists:     b.KeyLists + o.KeyLists,
		Sketches:     b.Sketches + o.Sketches,
		Records:      b.Records + o.Records,
		RecordKeys:   b.RecordKeys + o.RecordKeys,
		Overhead:     b.Overhead + o.Overhead,
	}
}

// SideStats are the statistics of one side of a session.
type SideStats struct {
	// Sent are the bytes of the requests sent to the replica; Received the
	// bytes of its answers.
	Sent, Received Bytes
	// Requests is the number of calls made to the replica.
	Requests int
	// KeysRepaired is the number of keys written to the replica.
	KeysRepaired uint64
}

// Add returns the sum of s and o.
func (s SideStats) Add(o SideStats) SideStats {
	return SideStats{Sent: s.Sent.Add(o.Sent), Received: s.Received.Add(o.Received), Requests: s.Requests + o.Requests, KeysRepaired: s.KeysRepaired + o.KeysRepaired}
}

// Total returns the bytes sent to and received from the replica.
func (s SideStats) Total() Bytes { return s.Sent.Add(s.Received) }

// Stats are the statistics of a session (or, added up, of several).
type Stats struct {
	// Partition is the session's partition (of the first, when added).
	Partition uint32
	// Method is how the session localized the differences (see Method).
	Method Method
	// Sessions is the number of sessions added up (1 for one session).
	Sessions int
	// Rounds is the number of round trips, every one counted: Info (when
	// fetched by the session), root comparison, descent and listing rounds,
	// fetch, apply and confirm.
	Rounds int
	// A and B are the per-side statistics.
	A, B SideStats
	// KeysCompared is the number of keys whose digests were compared in key
	// lists (or that arrived with records from a side whose range the other
	// side had empty).
	KeysCompared uint64
	// KeysTransferred is the number of distinct keys for which records were
	// received from a replica.
	KeysTransferred uint64
	// CountMismatches counts listings whose number of entries differed from
	// the count of the fingerprint of the same range (writes racing the
	// session, or a lying peer).
	CountMismatches int
	// SketchFallbacks counts symbol streams that ended without decoding,
	// after which the session descended the trees instead.
	SketchFallbacks int
	// LargeDifferences counts sketch or symbol differences that decoded
	// to more keys than a session fetches in a round
	// (SessionConfig.MaxPendingBytes), which it then fetched in pairs, a
	// chunk a round.
	LargeDifferences int
	// Drains counts the times a session applied its queued writes before
	// its end (in one or more rounds) because they reached
	// SessionConfig.MaxPendingBytes.
	Drains int
	// PeakPendingBytes is the most bytes of resolved writes (keys and
	// records) a session held at once (the maximum, when added up).
	PeakPendingBytes int64
	// Converged reports whether the roots were equal at the end (at the
	// first comparison, or at the confirm step).
	Converged bool
	// ClockSkew is B's physical clock minus A's, from their Infos (zero
	// when either is unknown; the largest in magnitude, when added up). A
	// skew beyond the maximum clock offset of the replica that is behind
	// ends the session with ErrClockSkew.
	ClockSkew time.Duration
	// Quarantined counts the keys whose resolved record was stamped beyond
	// the receiving replica's clock plus its maximum clock offset: not
	// written to it (a replica refuses such records, ErrClockOffset), and
	// reported here instead. Such a key keeps its roots apart, so the
	// session does not converge; it is found again by every session until
	// the clocks catch up or an operator deals with the record (see
	// docs/operations.md).
	Quarantined uint64
	// QuarantinedKeys are the first MaxQuarantinedKeys quarantined keys.
	QuarantinedKeys [][]byte
	// Bounded reports a session that reconciled only part of a large
	// difference (SessionConfig.MaxSessionKeys), leaving the rest to the
	// next session (either, when added up).
	Bounded bool
	// Remaining estimates the keys still to repair: while the session
	// runs (Progress), the decoded difference not yet fetched and the
	// resolved writes not yet applied (before the difference is known,
	// the roots' count difference), plus, in a bounded session, the
	// estimated differences outside its ranges; at its end, the count
	// difference of the confirmed roots (at least 1 when they differ;
	// 0 when converged). Summed, when added up.
	Remaining uint64
	// Resume is where a bounded session left off, for the next session
	// of the same partition and replicas (SessionConfig.Resume); nil for
	// a session that was not bounded, and when added up.
	Resume *BoundResume
	// Duration is the wall time of the session, measured by the driver
	// (the Session never reads a clock).
	Duration time.Duration
}

func (s *Stats) side(side Side) *SideStats {
	if side == SideA {
		return &s.A
	}
	return &s.B
}

// Bytes returns all bytes exchanged with both replicas, by kind.
func (s Stats) Bytes() Bytes { return s.A.Total().Add(s.B.Total()) }

// BytesTotal returns the number of bytes exchanged with both replicas.
func (s Stats) BytesTotal() uint64 { return s.Bytes().Total() }

// BytesRecords returns the bytes of the records moved, keys included
// (Bytes.Data).
func (s Stats) BytesRecords() uint64 { return s.Bytes().Data() }

// BytesMetadata returns everything but the records moved (Bytes.Metadata).
func (s Stats) BytesMetadata() uint64 { return s.Bytes().Metadata() }

// KeysRepaired returns the number of keys written, both sides together.
func (s Stats) KeysRepaired() uint64 { return s.A.KeysRepaired + s.B.KeysRepaired }

// Add returns the statistics of s and o added up: sums, except Converged
// (true if both converged) and Rounds (the maximum: sessions of different
// partitions run in parallel).
func (s Stats) Add(o Stats) Stats {
	if s.Sessions == 0 {
		return o
	}
	return Stats{
		Partition:        s.Partition,
		Method:           s.Method.join(o.Method),
		Sessions:         s.Sessions + o.Sessions,
		Rounds:           max(s.Rounds, o.Rounds),
		A:                s.A.Add(o.A),
		B:                s.B.Add(o.B),
		KeysCompared:     s.KeysCompared + o.KeysCompared,
		KeysTransferred:  s.KeysTransferred + o.KeysTransferred,
		CountMismatches:  s.CountMismatches + o.CountMismatches,
		SketchFallbacks:  s.SketchFallbacks + o.SketchFallbacks,
		LargeDifferences: s.LargeDifferences + o.LargeDifferences,
		Drains:           s.Drains + o.Drains,
		PeakPendingBytes: max(s.PeakPendingBytes, o.PeakPendingBytes),
		Converged:        s.Converged && o.Converged,
		Bounded:          s.Bounded || o.Bounded,
		Remaining:        s.Remaining + o.Remaining,
		Duration:         s.Duration + o.Duration,
		ClockSkew:        maxSkew(s.ClockSkew, o.ClockSkew),
		Quarantined:      s.Quarantined + o.Quarantined,
		QuarantinedKeys:  append(append([][]byte(nil), s.QuarantinedKeys...), o.QuarantinedKeys[:min(len(o.QuarantinedKeys), max(0, MaxQuarantinedKeys-len(s.QuarantinedKeys)))]...),
	}
}

// Method is how a session localized the differences between two
// replicas: what it chose from their capabilities and its configuration,
// and what it fell back to.
type Method string

// Methods. A session that falls back appends "+descent" (symbols+descent).
const (
	// MethodAuto (SessionConfig.Method only): the cheapest method both
	// replicas support.
	MethodAuto Method = ""
	// MethodNone: the roots were equal, nothing to localize.
	MethodNone Method = "none"
	// MethodSymbols: rateless coded-symbol streams (CapSymbols).
	MethodSymbols Method = "symbols"
	// MethodSketch: fixed-size sketches (CapSketch).
	MethodSketch Method = "sketch"
	// MethodDescent: the tree descent with key lists.
	MethodDescent Method = "descent"
	// MethodNaive: the O(N) baseline (NewNaiveSession).
	MethodNaive Method = "naive"
	// MethodMixed: stats added up from sessions of several methods.
	MethodMixed Method = "mixed"
)

// join is the method of stats added up.
func (m Method) join(o Method) Method {
	switch {
	case m == o || o == "" || o == MethodNone:
		if m == "" {
			return o
		}
		return m
	case m == "" || m == MethodNone:
		return o
	}
	return MethodMixed
}

// MaxQuarantinedKeys bounds Stats.QuarantinedKeys.
const MaxQuarantinedKeys = 16

// maxSkew returns the one of a and b larger in magnitude.
func maxSkew(a, b time.Duration) time.Duration {
	if b.Abs() > a.Abs() {
		return b
	}
	return a
}

// String formats the main figures on one line.
func (s Stats) String() string {
	b := s.Bytes()
	return fmt.Sprintf("partition=%d rounds=%d bytes=%d (fp=%d keys=%d sketches=%d records=%d record_keys=%d overhead=%d) compared=%d transferred=%d repaired=A:%d,B:%d converged=%t",
		s.Partition, s.Rounds, b.Total(), b.Fingerprints, b.KeyLists, b.Sketches, b.Records, b.RecordKeys, b.Overhead,
		s.KeysCompared, s.KeysTransferred, s.A.KeysRepaired, s.B.KeysRepaired, s.Converged) + s.clockString()
}

func (s Stats) clockString() string {
	var out string
	if s.ClockSkew != 0 {
		out += fmt.Sprintf(" clock_skew=%s", s.ClockSkew)
	}
	if s.Quarantined > 0 {
		out += fmt.Sprintf(" quarantined=%d", s.Quarantined)
	}
	return out
}
