package bench

import (
	"errors"
	"fmt"
)

// ErrBadConfig is wrapped by the error a benchmark returns, before it
// touches a disk, for a configuration it cannot run: a negative count or
// size, an unknown transport, more differences than keys, invalid tree
// parameters.
var ErrBadConfig = errors.New("bench: bad configuration")

// badConfig returns an error wrapping ErrBadConfig.
func badConfig(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadConfig, fmt.Sprintf(format, args...))
}

// intField is a named integer of a configuration, for nonNegative.
type intField struct {
	name  string
	value int
}

// nonNegative returns an error wrapping ErrBadConfig naming the first
// field whose value is negative (zero means "the default" everywhere).
func nonNegative(fields ...intField) error {
	for _, f := range fields {
		if f.value < 0 {
			return badConfig("%s %d: want >= 0 (0: the default)", f.name, f.value)
		}
	}
	return nil
}
