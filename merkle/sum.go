package merkle

import (
	"encoding/binary"
	"math/bits"

	"github.com/pebble-ae/pebble-ae/internal/digest"
)

// Sum is a 256-bit unsigned integer, little-endian limbs: the sum of leaf
// digests modulo 2^256. Sums are order independent, so the fingerprint of a
// key range does not depend on the shape of the tree.
type Sum [4]uint64

// Add returns s + d mod 2^256, interpreting d as a little-endian integer.
func (s Sum) Add(d Digest) Sum {
	return s.AddSum(Sum{
		binary.LittleEndian.Uint64(d[0:]), binary.LittleEndian.Uint64(d[8:]),
		binary.LittleEndian.Uint64(d[16:]), binary.LittleEndian.Uint64(d[24:]),
	})
}

// AddSum returns s + o mod 2^256.
func (s Sum) AddSum(o Sum) Sum {
	var c uint64
	s[0], c = bits.Add64(s[0], o[0], 0)
	s[1], c = bits.Add64(s[1], o[1], c)
	s[2], c = bits.Add64(s[2], o[2], c)
	s[3], _ = bits.Add64(s[3], o[3], c)
	return s
}

// Bytes returns s as 32 little-endian bytes.
func (s Sum) Bytes() [32]byte {
	var b [32]byte
	for i := range s {
		binary.LittleEndian.PutUint64(b[8*i:], s[i])
	}
	return b
}

// SumFromBytes is the inverse of Bytes.
func SumFromBytes(b [32]byte) Sum {
	var s Sum
	for i := range s {
		s[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	return s
}

// Fingerprint is the exact summary of a key range: the digest sum and the
// number of records.
type Fingerprint struct {
	Sum   Sum
	Count uint64
}

// Add returns the fingerprint of the union of two disjoint ranges.
func (f Fingerprint) Add(o Fingerprint) Fingerprint {
	return Fingerprint{Sum: f.Sum.AddSum(o.Sum), Count: f.Count + o.Count}
}

// Sub returns f - o (sums mod 2^256, counts mod 2^64): Sub undoes Add.
func (f Fingerprint) Sub(o Fingerprint) Fingerprint {
	var s Sum
	var b uint64
	s[0], b = bits.Sub64(f.Sum[0], o.Sum[0], 0)
	s[1], b = bits.Sub64(f.Sum[1], o.Sum[1], b)
	s[2], b = bits.Sub64(f.Sum[2], o.Sum[2], b)
	s[3], _ = bits.Sub64(f.Sum[3], o.Sum[3], b)
	return Fingerprint{Sum: s, Count: f.Count - o.Count}
}

// Short returns the 128-bit wire hash of f: BLAKE3 over a domain tag, the sum
// and the count, truncated (internal/digest.Fingerprint). Hashing (rather
// than truncating the sum) keeps the sum's linear structure off the wire.
func (f Fingerprint) Short() [16]byte { return digest.Fingerprint(f.Sum.Bytes(), f.Count) }
