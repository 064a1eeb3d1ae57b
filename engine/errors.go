package engine

import "errors"

// Errors returned by the engine; test with errors.Is. Errors from the tree
// (merkle.ErrParamsChanged, merkle.ErrNotReady, ...) and from record decoding
// (record.ErrMalformedRecord, record.ErrMalformedContext, ...) are
// returned wrapped, so errors.Is works for them too.
var (
	// ErrNotFound reports a key that has no live value.
	ErrNotFound = errors.New("engine: not found")
	// ErrEmptyKey reports an empty key.
	ErrEmptyKey = errors.New("engine: empty key")
	// ErrKeyTooLarge reports a key longer than Options.MaxKeySize.
	ErrKeyTooLarge = errors.New("engine: key too large")
	// ErrValueTooLarge reports a value longer than Options.MaxValueSize.
	ErrValueTooLarge = errors.New("engine: value too large")
	// ErrReservedKey reports a key that starts with the internal prefix
	// \xff\xffae\x00, which pebble-ae reserves for its own state.
	ErrReservedKey = errors.New("engine: key in the reserved internal key space")
	// ErrWrongMode reports a call that the engine's write mode does not
	// support (a causal context in LWW mode, say).
	ErrWrongMode = errors.New("engine: operation not supported in this write mode")
	// ErrMergerMismatch reports a DB last opened with another Pebble merger.
	ErrMergerMismatch = errors.New("engine: DB was created with another merger")
	// ErrInvalidOptions reports unusable options.
	ErrInvalidOptions = errors.New("engine: invalid options")
	// ErrClosed reports use of a closed engine.
	ErrClosed = errors.New("engine: closed")
	// ErrBadRequest reports a malformed anti-entropy request (a key outside
	// its partition, too many keys, an undecodable record).
	ErrBadRequest = errors.New("engine: bad request")
)
