// Package digest holds the two hash formulas every replica must compute
// bit for bit alike: the leaf digest of a (key, encoded record) pair and the
// wire hash of a range fingerprint. Package merkle maintains trees with them
// and package reconcile checks peer answers with them; neither imports the
// other (reconcile stays free of Pebble), so both import this package.
//
// Changing either formula changes every tree: it needs a new domain tag
// (the "/v1") and a rebuild, never a silent edit.
package digest

import (
	"encoding/binary"

	"github.com/zeebo/blake3"
)

// leafDomain separates leaf digests from any other BLAKE3 use.
const leafDomain = "pebble-ae/leaf-digest/v1\x00"

// fingerprintDomain separates fingerprint hashes from any other BLAKE3 use.
const fingerprintDomain = "pebble-ae/fingerprint/v1\x00"

// FingerprintSize is the length of a fingerprint's wire hash.
const FingerprintSize = 16

// Leaf returns the 32-byte leaf digest of key and its encoded record: BLAKE3
// over the domain tag and the uvarint-length-prefixed key and record.
// scratch is reused when large enough; the returned scratch may be passed
// to the next call.
func Leaf(scratch []byte, key, record []byte) ([32]byte, []byte) {
	b := scratch[:0]
	b = append(b, leafDomain...)
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	b = binary.AppendUvarint(b, uint64(len(record)))
	b = append(b, record...)
	return blake3.Sum256(b), b
}

// Short returns the wire digest of a leaf digest: its first 8 bytes as a
// big-endian integer.
func Short(d [32]byte) uint64 { return binary.BigEndian.Uint64(d[:8]) }

// Fingerprint returns the wire hash of a range's fingerprint: BLAKE3 over
// the domain tag, sum (the 256-bit sum of the range's leaf digests modulo
// 2^256, as 32 little-endian bytes) and count (the number of records, big
// endian), truncated to FingerprintSize bytes. Hashing rather than
// truncating the sum keeps the sum's linear structure off the wire.
func Fingerprint(sum [32]byte, count uint64) [FingerprintSize]byte {
	var buf [len(fingerprintDomain) + 32 + 8]byte
	n := copy(buf[:], fingerprintDomain)
	n += copy(buf[n:], sum[:])
	binary.BigEndian.PutUint64(buf[n:], count)
	full := blake3.Sum256(buf[:])
	var out [FingerprintSize]byte
	copy(out[:], full[:FingerprintSize])
	return out
}
