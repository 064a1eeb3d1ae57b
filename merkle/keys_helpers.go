package merkle

// lowerBound returns b as an iterator lower bound: nil when empty (Pebble's
// invariant checks reject a non-nil empty bound).
func lowerBound(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
