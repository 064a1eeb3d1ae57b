package reconcile

import (
	"bytes"
	"context"
	"fmt"
	"strings"
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
	// Records estimates the partition's records (the engine: its tree's
	// counts as last computed, which lag writes not yet hashed; 0: none
	// yet, or unknown). A hint for planning (a repair loop starts a large
	// repair in bounded sessions from it), never for correctness.
	Records uint64
}

// Capabilities are the optional parts of the Replica contract a replica
// serves, declared in its Info. A replica answers a call of a capability it
// does not declare with an error wrapping ErrUnsupported, and a session
// uses only what both of its replicas declare (SessionConfig.Method).
type Capabilities uint32

// Capabilities.
const (
	// CapSketch: RangeSketch and FetchByHash (fixed-size sketches, and the
	// fetch by sketch ID that symbol streams also need).
	CapSketch Capabilities = 1 << iota
	// CapSymbols: OpenSymbols (rateless coded-symbol streams); meaningful
	// with CapSketch.
	CapSymbols
	// CapApplyAndHash: ApplyAndHash takes any number of entries and
	// returns fingerprints in the same call, so a session's confirm rides
	// on its apply round.
	CapApplyAndHash

	// CapAll is every capability (the engine's, and the plugin's).
	CapAll = CapSketch | CapSymbols | CapApplyAndHash
)

// Has reports whether c includes every capability of o.
func (c Capabilities) Has(o Capabilities) bool { return c&o == o }

// String lists c's capabilities ("sketch|symbols|apply-and-hash", "none").
func (c Capabilities) String() string {
	var names []string
	for _, n := range []struct {
		c    Capabilities
		name string
	}{{CapSketch, "sketch"}, {CapSymbols, "symbols"}, {CapApplyAndHash, "apply-and-hash"}} {
		if c.Has(n.c) {
			names = append(names, n.name)
		}
	}
	if rest := c &^ CapAll; rest != 0 {
		names = append(names, fmt.Sprintf("0x%x", uint32(rest)))
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, "|")
}

// Info describes a replica.
type Info struct {
	ID         record.ReplicaID
	Mode       record.Mode
	Tree       TreeParams
	Partitions []PartitionInfo
	// Capabilities are the optional calls the replica serves.
	Capabilities Capabilities
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

// Replica is what an anti-entropy session needs from one side: one
// contract, whatever carries it. The engine implements it in-process; the
// plugin client implements it over gRPC; wrappers (throttles, lazy dialing,
// test faults) implement every method, so that none can drop a capability
// by forgetting one. The last four methods are optional: a replica that
// does not declare their capability in Info.Capabilities answers them with
// an error wrapping ErrUnsupported.
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

	// RangeSketch returns the sketch of the entries of the given ranges of
	// one partition (see SketchBuilder, which implementations use).
	// CapSketch.
	RangeSketch(ctx context.Context, req RangeSketchRequest) (RangeSketchResult, error)
	// FetchByHash returns, in ascending key order, the entries (with
	// records; Digest may be left zero) of the given ranges whose
	// SketchID(digest) is one of req.IDs. IDs not present are omitted.
	// CapSketch.
	FetchByHash(ctx context.Context, req FetchByHashRequest) ([]Entry, error)
	// OpenSymbols opens a stream of coded symbols of the given ranges.
	// CapSymbols.
	OpenSymbols(ctx context.Context, req SymbolsRequest) (SymbolStream, error)
	// ApplyAndHash applies entries (any number: the replica splits them
	// itself) as Apply does, then returns the fingerprints of ranges, so
	// a session's confirm rides on its apply round. CapApplyAndHash.
	ApplyAndHash(ctx context.Context, partition uint32, entries []Entry, ranges []KeyRange) ([]RangeHash, error)
}
