package record

import "errors"

// Sentinel errors. Every error returned by this package's primitives wraps
// one of them, so callers test with errors.Is; the wrapping error adds the
// context that matters (which field, which sibling, which key). None of them
// is retryable: they describe bad input, and the input is left unchanged.
var (
	// ErrMalformedRecord reports bytes that are not a canonical encoded
	// record, or a Record value that violates the record invariants (see
	// Record.Validate). A replica that stores such bytes is corrupt.
	ErrMalformedRecord = errors.New("record: malformed record")

	// ErrUnsupportedRecordVersion reports an encoded record whose leading
	// format byte is not RecordFormatVersion: typically a record written by a
	// newer release.
	ErrUnsupportedRecordVersion = errors.New("record: unsupported record format version")

	// ErrMalformedContext reports an opaque causal context (see
	// DecodeContext) that was not produced by EncodeContext: garbage,
	// truncation, non-canonical order, duplicates, zero counters or invalid
	// replica IDs. Contexts come from clients, so this is a client error.
	ErrMalformedContext = errors.New("record: malformed causal context")

	// ErrModeMismatch reports records, or a record and a resolver, of
	// incompatible write modes (see Resolver and Mode).
	ErrModeMismatch = errors.New("record: record mode mismatch")

	// ErrInvalidReplicaID reports a ReplicaID that is empty or longer than
	// MaxReplicaIDLen bytes (see ReplicaID.Validate).
	ErrInvalidReplicaID = errors.New("record: invalid replica ID")

	// ErrUnknownMode reports a Mode, or a mode name given to ParseMode, that
	// is neither ModeLWW nor ModeCausal.
	ErrUnknownMode = errors.New("record: unknown mode")
)
