package reconcile

import "github.com/pebble-ae/pebble-ae/internal/digest"

// The two hash formulas of package merkle that a session needs to check
// peer answers, the leaf digest of a (key, encoded record) pair and the wire
// hash of a fingerprint, live in internal/digest, which merkle uses too, so
// that this package checks answers without importing Pebble.

// LeafDigest returns the full 32-byte leaf digest of key and its encoded
// record: BLAKE3 over a domain tag and the uvarint-length-prefixed key and
// record. It equals merkle.LeafDigest. scratch is reused when large enough;
// the returned scratch may be passed to the next call.
func LeafDigest(scratch []byte, key, record []byte) ([32]byte, []byte) {
	return digest.Leaf(scratch, key, record)
}

// ShortDigest returns the wire digest of a leaf digest: its first 8 bytes as
// a big-endian integer (merkle.Digest.Short). It is Entry.Digest.
func ShortDigest(d [32]byte) uint64 { return digest.Short(d) }

// EntryDigest returns ShortDigest(LeafDigest(key, record)): the Entry.Digest
// a replica must report for key holding the encoded record.
func EntryDigest(key, record []byte) uint64 {
	d, _ := digest.Leaf(nil, key, record)
	return digest.Short(d)
}

// FingerprintHash returns the wire hash of a range's exact fingerprint: sum is
// the 256-bit sum of the range's leaf digests modulo 2^256 as 32
// little-endian bytes, count the number of records. It equals
// merkle.Fingerprint{Sum, Count}.Short().
func FingerprintHash(sum [32]byte, count uint64) [FingerprintSize]byte {
	return digest.Fingerprint(sum, count)
}
