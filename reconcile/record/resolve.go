package record

import "fmt"

// Resolver reconciles two records of one key. The engine uses it as its
// Pebble merge operator and when it applies records received in
// anti-entropy (Replica.Apply); every replica uses it, so every replica must
// use the same Resolver.
type Resolver interface {
	// Resolve merges two records of the same key. It must be deterministic,
	// commutative, associative and idempotent (it is used as a Pebble merge
	// operator and by every replica).
	//
	// Resolve must not modify a or b, whose slices may be shared; the
	// result may share their slices. It must be safe for concurrent use. An
	// error means the records cannot be reconciled (bad input, or records
	// of incompatible modes); the caller keeps its current record.
	Resolve(key []byte, a, b Record) (Record, error)
}

// LWW is the last-writer-wins Resolver: of two records it keeps the one
// whose winner (see Record.Winner) is greater, so all replicas keep the same
// record and the other write is lost. Both records must be valid.
//
// Mixed modes: a causal record meeting an LWW record is reduced to its LWW
// winner (an LWW record whose sibling is the causal winner with Counter 0),
// so a replica switched from causal to LWW converges. Two causal records are
// refused with ErrModeMismatch: resolving them by LWW would silently drop
// their concurrent siblings; use KeepSiblings. The Resolver laws hold on any
// inputs of which at most one is causal; with several causal inputs, whether
// two of them meet (an error) depends on the order of resolution.
//
// The result is always an LWW record; when both inputs are LWW it is one of
// them, unchanged. LWW ignores the key.
type LWW struct{}

// Resolve implements Resolver.
func (LWW) Resolve(key []byte, a, b Record) (Record, error) {
	if err := validateBoth(key, a, b); err != nil {
		return Record{}, err
	}
	if a.Mode == ModeCausal && b.Mode == ModeCausal {
		return Record{}, fmt.Errorf("%w: key %s: LWW resolver given two causal records", ErrModeMismatch, FormatKey(key))
	}
	return resolveLWW(a, b), nil
}

// resolveLWW returns the LWW form of the record with the greater winner.
func resolveLWW(a, b Record) Record {
	a, b = asLWW(a), asLWW(b)
	if compareLWW(b.Siblings[0], a.Siblings[0]) > 0 {
		return b
	}
	return a
}

// asLWW returns r itself if it is an LWW record, and otherwise the LWW record
// of its winner.
func asLWW(r Record) Record {
	if r.Mode == ModeLWW {
		return r
	}
	w := r.Winner()
	return NewLWW(w.Dot.Replica, w.Timestamp, w.Value, w.Tombstone)
}

// KeepSiblings is the causal Resolver: it merges two causal records with
// Sync, keeping every concurrent write as a sibling, so no concurrent update
// is lost. Two LWW records are resolved as by LWW (a replica's data is all
// of one mode, and LWW data has no causal history to merge). A causal and an
// LWW record are refused with ErrModeMismatch, since neither conversion
// preserves both the causal history and the LWW order. Two causal records
// whose Sync leaves no sibling (records that contradict each other, see
// Sync) are refused with ErrMalformedRecord. Both records must be valid.
// KeepSiblings ignores the key.
type KeepSiblings struct{}

// Resolve implements Resolver.
func (KeepSiblings) Resolve(key []byte, a, b Record) (Record, error) {
	if err := validateBoth(key, a, b); err != nil {
		return Record{}, err
	}
	switch {
	case a.Mode == ModeLWW && b.Mode == ModeLWW:
		return resolveLWW(a, b), nil
	case a.Mode != b.Mode:
		return Record{}, fmt.Errorf("%w: key %s: cannot keep siblings of a %s and a %s record",
			ErrModeMismatch, FormatKey(key), a.Mode, b.Mode)
	}
	r := Sync(a, b)
	if len(r.Siblings) == 0 {
		return Record{}, fmt.Errorf("%w: key %s: causally inconsistent records: each context covers the other's siblings (contexts %s and %s)",
			ErrMalformedRecord, FormatKey(key), a.Context, b.Context)
	}
	return r, nil
}

// ResolverFunc adapts a function to the Resolver interface, for
// application-defined reconciliation. The function must satisfy the
// Resolver contract (deterministic, commutative, associative, idempotent,
// safe for concurrent use); this package cannot check it.
type ResolverFunc func(key []byte, a, b Record) (Record, error)

// Resolve implements Resolver by calling f(key, a, b).
func (f ResolverFunc) Resolve(key []byte, a, b Record) (Record, error) { return f(key, a, b) }

// ResolverFor returns the built-in Resolver of mode m: LWW{} for ModeLWW,
// KeepSiblings{} for ModeCausal, and nil for any other value.
func ResolverFor(m Mode) Resolver {
	switch m {
	case ModeLWW:
		return LWW{}
	case ModeCausal:
		return KeepSiblings{}
	}
	return nil
}

// validateBoth validates both inputs of a resolver, naming the key.
func validateBoth(key []byte, a, b Record) error {
	if err := a.Validate(); err != nil {
		return fmt.Errorf("%w (key %s, first record)", err, FormatKey(key))
	}
	if err := b.Validate(); err != nil {
		return fmt.Errorf("%w (key %s, second record)", err, FormatKey(key))
	}
	return nil
}

// maxErrorKeyLen bounds how much of a key an error message quotes.
const maxErrorKeyLen = 64

// FormatKey quotes key for an error message (and a log line), truncated to
// maxErrorKeyLen bytes (with the full length).
func FormatKey(key []byte) string {
	if len(key) > maxErrorKeyLen {
		return fmt.Sprintf("%q... (%d bytes)", key[:maxErrorKeyLen], len(key))
	}
	return fmt.Sprintf("%q", key)
}
