package repair

import (
	"time"

	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// RoundTracker tracks complete repair rounds per partition (see FullRound):
// a round of a partition starts when the previous one completes (the first
// at the tracker's start) and completes when every peer of the partition's
// preference list has had a successful, converged session with this node
// that started after the round did. It is pure and not safe for concurrent
// use; the Loop uses one, and tests drive one directly.
type RoundTracker struct {
	rounds map[uint32]*roundState
}

type roundState struct {
	peers     []record.ReplicaID
	start     time.Time
	prevStart time.Time
	havePrev  bool
	done      map[record.ReplicaID]bool
	completed uint64
	lastRound time.Time
	// blocked: a preference peer has no Replica here, so no round can
	// complete.
	blocked bool
}

// NewRoundTracker returns an empty tracker; SetPeers adds partitions.
func NewRoundTracker() *RoundTracker {
	return &RoundTracker{rounds: make(map[uint32]*roundState)}
}

// SetPeers sets the peers of partition p's preference list (this node
// excluded) and starts its first round at start. blocked marks a partition
// some of whose replicas cannot be reached at all: its rounds never complete.
func (r *RoundTracker) SetPeers(p uint32, peers []record.ReplicaID, start time.Time, blocked bool) {
	r.rounds[p] = &roundState{peers: append([]record.ReplicaID(nil), peers...), start: start, done: make(map[record.ReplicaID]bool), blocked: blocked}
}

// Converged records a successful, converged session of partition p with
// peer that started at start and ended at end, and returns the round it
// completed, if any.
func (r *RoundTracker) Converged(p uint32, peer record.ReplicaID, start, end time.Time) (FullRound, bool) {
	rs := r.rounds[p]
	if rs == nil || rs.blocked || start.Before(rs.start) {
		return FullRound{}, false
	}
	rs.done[peer] = true
	for _, id := range rs.peers {
		if !rs.done[id] {
			return FullRound{}, false
		}
	}
	fr := FullRound{Partition: p, Start: rs.start, End: end}
	if rs.havePrev {
		fr.SafeBefore = rs.prevStart
	}
	rs.prevStart, rs.havePrev = rs.start, true
	rs.start, rs.lastRound = end, end
	rs.completed++
	clear(rs.done)
	return fr, true
}

// Completed returns the number of complete rounds of p and the end of the
// last one.
func (r *RoundTracker) Completed(p uint32) (uint64, time.Time) {
	rs := r.rounds[p]
	if rs == nil {
		return 0, time.Time{}
	}
	return rs.completed, rs.lastRound
}

// Partitions returns the tracked partitions.
func (r *RoundTracker) Partitions() []uint32 {
	out := make([]uint32, 0, len(r.rounds))
	for p := range r.rounds {
		out = append(out, p)
	}
	return out
}
