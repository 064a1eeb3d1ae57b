package reconcile

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/pebble-ae/pebble-ae/internal/digest"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// KeyRange is the half-open key range [Start, End). A nil or empty End means
// "to the end of the partition". Start may be empty (the beginning).
type KeyRange struct {
	Start []byte
	End   []byte
}

// Contains reports whether key lies in r.
func (r KeyRange) Contains(key []byte) bool {
	if bytes.Compare(key, r.Start) < 0 {
		return false
	}
	return len(r.End) == 0 || bytes.Compare(key, r.End) < 0
}

// Valid reports whether r is non-inverted.
func (r KeyRange) Valid() bool {
	return len(r.End) == 0 || bytes.Compare(r.Start, r.End) < 0
}

// String formats r for errors and logs.
func (r KeyRange) String() string {
	if len(r.End) == 0 {
		return fmt.Sprintf("[%q, end)", r.Start)
	}
	return fmt.Sprintf("[%q, %q)", r.Start, r.End)
}

// FingerprintSize is the number of bytes of a fingerprint's hash on the wire.
const FingerprintSize = digest.FingerprintSize

// Fingerprint summarizes the records of a key range: a 128-bit hash of the
// range's digest sum (mod 2^256) and the number of records. Two ranges with
// the same content have the same fingerprint on every replica; two ranges with
// different content collide with probability about 2^-128.
type Fingerprint struct {
	Hash  [FingerprintSize]byte
	Count uint64
}

// Child is a sub-range of a requested range with its fingerprint.
type Child struct {
	Range       KeyRange
	Fingerprint Fingerprint
	// Children are the child's own children when more than one level was
	// requested; nil otherwise.
	Children []Child
}

// RangeHashRequest asks for the fingerprints of key ranges of one partition
// and, when Fanout > 0, for up to Fanout children of each range, Depth levels
// deep (Depth 0 is treated as 1 when Fanout > 0). The replica chooses the
// child boundaries (content-defined, so replicas holding the same keys choose
// the same boundaries).
type RangeHashRequest struct {
	Partition uint32
	Ranges    []KeyRange
	Fanout    int
	Depth     int
}

// RangeHash is the answer for one requested range.
type RangeHash struct {
	Range       KeyRange
	Fingerprint Fingerprint
	Children    []Child
}

// RangeScanRequest asks for the entries of one key range of one partition, at
// most Limit of them (0: the replica's default page size).
type RangeScanRequest struct {
	Partition   uint32
	Range       KeyRange
	WithRecords bool
	Limit       int
}

// Entry is one key with the short digest of its record and, when asked for,
// the canonical encoded record itself (see Record.Encode). Digest is the first
// 8 bytes of the key's leaf digest, as a big-endian integer.
type Entry struct {
	Key    []byte
	Digest uint64
	Record []byte
}

// RangeScanResult is one page of a range scan. When More is true the next page
// starts at Next.
type RangeScanResult struct {
	Entries []Entry
	More    bool
	Next    []byte
}

// TreeParams are the tree parameters two replicas must share for their
// fingerprints to be comparable.
type TreeParams struct {
	HashVersion uint32
	LeafSize    uint32
	Seed        uint64
	Partitioner string
}

// PartitionInfo describes one partition of a replica.
type PartitionInfo struct {
	ID    uint32
	Range KeyRange
	Ready bool
}

// Info describes a replica.
type Info struct {
	ID         record.ReplicaID
	Mode       record.Mode
	Tree       TreeParams
	Partitions []PartitionInfo
	// WallTime is the replica's physical clock (Unix nanoseconds) when it
	// answered, and MaxClockOffset the furthest ahead of it a record it
	// accepts may be stamped; zero: unknown (no clock checks). A session
	// compares the two sides' clocks (ErrClockSkew) and offers neither side
	// a record stamped beyond its WallTime + MaxClockOffset
	// (Stats.Quarantined).
	WallTime       int64
	MaxClockOffset time.Duration
}

// recordCutoff returns the greatest wall time a record written to the
// replica of info may carry, or 0 for no limit.
func (info Info) recordCutoff() int64 {
	if info.WallTime <= 0 || info.MaxClockOffset <= 0 {
		return 0
	}
	return info.WallTime + int64(info.MaxClockOffset)
}

// Replica is what an anti-entropy session needs from one side. The engine
// implements it in-process; the plugin client implements it over gRPC.
//
// Byte slices in arguments are owned by the caller and are not retained;
// byte slices in results are owned by the caller after the call returns.
// Every method may be called concurrently.
type Replica interface {
	Info(ctx context.Context) (Info, error)
	RangeHash(ctx context.Context, req RangeHashRequest) ([]RangeHash, error)
	RangeScan(ctx context.Context, req RangeScanRequest) (RangeScanResult, error)
	// Fetch returns the entries (with records) of the given keys that exist,
	// in key order; absent keys are omitted.
	Fetch(ctx context.Context, partition uint32, keys [][]byte) ([]Entry, error)
	// Apply merges each entry's record into the replica's record for that
	// key using the replica's resolver (so Apply is idempotent and safe
	// against concurrent writes).
	Apply(ctx context.Context, partition uint32, entries []Entry) error
}
