package reconcile

import (
	"encoding/binary"

	"github.com/zeebo/blake3"
)

// This file duplicates, without importing Pebble, the two hash formulas of
// package merkle that a session needs to check peer answers: the leaf digest
// of a (key, encoded record) pair and the wire hash of a fingerprint. They
// must stay bit-for-bit equal to merkle.LeafDigest, merkle.Digest.Short and
// merkle.Fingerprint.Short (internal/memreplica tests that they are).
// Proposed follow-up: move both into a tiny Pebble-free package (for example
// internal/digest) that merkle and reconcile both import.

// leafDigestDomain separates leaf digests from any other BLAKE3 use; it is
// merkle's leafDigestDomain.
const leafDigestDomain = "pebble-ae/leaf-digest/v1\x00"

// fingerprintDomain is merkle's fingerprintDomain.
const fingerprintDomain = "pebble-ae/fingerprint/v1\x00"

// LeafDigest returns the full 32-byte leaf digest of key and its encoded
// record: BLAKE3 over a domain tag and the uvarint-length-prefixed key and
// record. It equals merkle.LeafDigest. scratch is reused when large enough;
// the returned scratch may be passed to the next call.
func LeafDigest(scratch []byte, key, record []byte) ([32]byte, []byte) {
	b := scratch[:0]
	b = append(b, leafDigestDomain...)
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	b = binary.AppendUvarint(b, uint64(len(record)))
	b = append(b, record...)
	return blake3.Sum256(b), b
}

// ShortDigest returns the wire digest of a leaf digest: its first 8 bytes as
// a big-endian integer (merkle.Digest.Short). It is Entry.Digest.
func ShortDigest(d [32]byte) uint64 { return binary.BigEndian.Uint64(d[:8]) }

// EntryDigest returns ShortDigest(LeafDigest(key, record)): the Entry.Digest
// a replica must report for key holding the encoded record.
func EntryDigest(key, record []byte) uint64 {
	d, _ := LeafDigest(nil, key, record)
	return ShortDigest(d)
}

// FingerprintHash returns the wire hash of a range's exact fingerprint: sum is
// the 256-bit sum of the range's leaf digests modulo 2^256 as 32
// little-endian bytes, count the number of records. It equals
// merkle.Fingerprint{Sum, Count}.Short().
func FingerprintHash(sum [32]byte, count uint64) [FingerprintSize]byte {
	var buf [len(fingerprintDomain) + 32 + 8]byte
	n := copy(buf[:], fingerprintDomain)
	n += copy(buf[n:], sum[:])
	binary.BigEndian.PutUint64(buf[n:], count)
	full := blake3.Sum256(buf[:])
	var out [FingerprintSize]byte
	copy(out[:], full[:FingerprintSize])
	return out
}
