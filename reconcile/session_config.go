package reconcile

import (
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// SessionConfig configures a Session.
type SessionConfig struct {
	// Partition is the partition to reconcile.
	Partition uint32
	// Resolver reconciles differing records. Nil means ResolverFor the
	// replicas' Mode (which must then be the same on both sides).
	Resolver record.Resolver
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
	// Method is how the session localizes differences: MethodAuto (the
	// default) uses the cheapest both replicas declare in
	// Info.Capabilities: symbol streams (CapSymbols and CapSketch), else
	// fixed-size sketches (CapSketch), else the tree descent.
	// MethodSymbols and MethodSketch ask for one of them (the session
	// fails with ErrUnsupported when a replica does not declare it),
	// MethodDescent for the descent, MethodNaive for the O(N) baseline
	// (see NewNaiveSession). Set reconciliation that fails to decode
	// three times falls back to the descent (Stats.Method "+descent"); a
	// side with no records is always listed by the descent.
	Method Method
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
