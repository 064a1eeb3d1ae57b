package merkle

import "errors"

// Errors returned by this package; test with errors.Is.
var (
	// ErrInvalidParams reports unusable tree parameters.
	ErrInvalidParams = errors.New("merkle: invalid tree parameters")
	// ErrParamsChanged reports that the tree on disk was built with other
	// parameters (leaf size, seed, partitioner or hash version) than the
	// ones given to Open; the tree must be rebuilt before use.
	ErrParamsChanged = errors.New("merkle: tree parameters changed")
	// ErrNotReady reports a query on a partition whose tree is being rebuilt.
	ErrNotReady = errors.New("merkle: tree not ready")
	// ErrUnknownPartition reports a partition number out of range.
	ErrUnknownPartition = errors.New("merkle: unknown partition")
	// ErrInvalidRange reports an inverted range or one outside its partition.
	ErrInvalidRange = errors.New("merkle: invalid key range")
	// ErrCorruption reports a malformed persisted tree record.
	ErrCorruption = errors.New("merkle: corrupt tree state")
	// ErrClosed reports use of a closed tree.
	ErrClosed = errors.New("merkle: closed")
)
