package reconcile

import (
	"errors"
	"fmt"

	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// Sentinel errors of sessions (see Session). Test with errors.Is.
var (
	// ErrBadPeerAnswer reports a replica answer that is malformed or
	// inconsistent with the request or with itself: wrong number of ranges,
	// ranges or entries it was not asked for, unsorted or duplicate keys,
	// children that do not partition their parent or whose counts do not add
	// up, digests that do not match the returned records, records that do
	// not decode. The session ends and applies nothing it has not validated.
	// The error is a *PeerAnswerError naming the side, partition and range.
	ErrBadPeerAnswer = errors.New("reconcile: bad peer answer")

	// ErrIncompatibleTrees reports two replicas whose tree parameters
	// (TreeParams: hash version, leaf size, seed, partitioner) or partition
	// bounds differ: their fingerprints are not comparable, so no session
	// runs between them.
	ErrIncompatibleTrees = errors.New("reconcile: incompatible trees")

	// ErrNotReady reports a partition that is not ready on one side (its
	// tree is being rebuilt) or unknown to it. The session is skipped;
	// retry later.
	ErrNotReady = errors.New("reconcile: partition not ready")

	// ErrNotConverged reports, in a strict session (SessionConfig.Strict),
	// roots that still differ at the confirm step, or replica answers that
	// contradict each other across requests (a count that disagrees with a
	// scan). Without concurrent writes this is a bug or a lying peer;
	// non-strict sessions report it in Stats instead.
	ErrNotConverged = errors.New("reconcile: replicas did not converge")

	// ErrClockSkew reports two replicas whose physical clocks (exchanged in
	// Info) differ by more than the maximum clock offset of the replica
	// that is behind: the session ends before comparing anything, so the
	// replica that is ahead does not spread records stamped in the other's
	// future. Stats.ClockSkew holds the measured skew. Retry once the
	// clocks are fixed.
	ErrClockSkew = errors.New("reconcile: clock skew beyond the maximum offset")

	// ErrUnsupported reports a call of an optional part of the Replica
	// contract that the replica does not serve (it does not declare the
	// capability in Info.Capabilities), or a SessionConfig.Method that the
	// two replicas do not both support.
	ErrUnsupported = errors.New("reconcile: unsupported by the replica")

	// ErrSessionMisuse reports a call sequence the Session contract forbids:
	// a Response for an unknown or already answered request, Deliver after
	// the session ended.
	ErrSessionMisuse = errors.New("reconcile: session misuse")

	// ErrInvalidSessionConfig reports a SessionConfig NewSession cannot
	// run: a fanout below 2, a negative depth or scan limit.
	ErrInvalidSessionConfig = errors.New("reconcile: invalid session configuration")
)

// PeerAnswerError is the error of a bad peer answer. It wraps
// ErrBadPeerAnswer.
type PeerAnswerError struct {
	// Side is the replica that answered: SideA or SideB.
	Side Side
	// Peer is that replica's ID, if known.
	Peer record.ReplicaID
	// Partition is the session's partition.
	Partition uint32
	// Request is the kind of request answered.
	Request RequestKind
	// Range is the key range concerned (the request's range, or the
	// offending child's), if any.
	Range KeyRange
	// Reason says what is wrong.
	Reason string
}

// Error implements error.
func (e *PeerAnswerError) Error() string {
	return fmt.Sprintf("%v: replica %s (%q), partition %d, %s %s: %s",
		ErrBadPeerAnswer, e.Side, e.Peer, e.Partition, e.Request, e.Range, e.Reason)
}

// Unwrap returns ErrBadPeerAnswer.
func (e *PeerAnswerError) Unwrap() error { return ErrBadPeerAnswer }
