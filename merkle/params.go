package merkle

import (
	"fmt"
	"math"

	"github.com/cespare/xxhash/v2"
	"github.com/pebble-ae/pebble-ae/internal/digest"
)

// HashVersion is the version of the leaf digest and boundary functions. It is
// persisted with the tree; a tree built with another version is rebuilt.
const HashVersion = 1

// Params are the tree parameters. Replicas must share them for their
// fingerprints to be comparable.
type Params struct {
	// LeafSize is the expected number of keys per leaf. A key is a leaf
	// boundary with probability 1/LeafSize. Default 64.
	LeafSize uint32
	// Seed perturbs the boundary function. All replicas of a cluster must
	// use the same seed. Default 0.
	Seed uint64
}

// DefaultLeafSize is the default expected number of keys per leaf.
const DefaultLeafSize = 64

// EnsureDefaults fills zero fields with defaults and returns p.
func (p Params) EnsureDefaults() Params {
	if p.LeafSize == 0 {
		p.LeafSize = DefaultLeafSize
	}
	return p
}

// Validate reports whether p is usable.
func (p Params) Validate() error {
	if p.LeafSize < 2 || p.LeafSize > 1<<20 {
		return fmt.Errorf("%w: leaf size %d out of [2, 2^20]", ErrInvalidParams, p.LeafSize)
	}
	return nil
}

// rank is the content-defined rank of a key: a stable 64-bit hash. A key is a
// leaf boundary when its rank is below the boundary threshold; among boundary
// keys, lower rank means higher level (used to pick child boundaries).
func (p Params) rank(key []byte) uint64 {
	return mix64(xxhash.Sum64(key) ^ p.Seed)
}

func (p Params) threshold() uint64 {
	return math.MaxUint64 / uint64(p.LeafSize)
}

// Rank returns the key's content-defined rank (see rank).
func (p Params) Rank(key []byte) uint64 { return p.rank(key) }

// IsBoundary reports whether key starts a leaf.
func (p Params) IsBoundary(key []byte) bool { return p.rank(key) < p.threshold() }

// mix64 is the splitmix64 finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Digest is the BLAKE3 digest of one (key, record) pair.
type Digest [32]byte

// LeafDigest returns the digest of a key and its stored value: BLAKE3 over a
// domain tag and the length-prefixed key and value (internal/digest.Leaf,
// which package reconcile computes too). scratch is reused when large
// enough; the returned scratch may be passed to the next call.
func LeafDigest(scratch []byte, key, value []byte) (Digest, []byte) {
	d, b := digest.Leaf(scratch, key, value)
	return Digest(d), b
}

// Short returns the first 8 bytes of d as a big-endian integer: the per-key
// digest used on the wire.
func (d Digest) Short() uint64 { return digest.Short(d) }
