// Package testclock is a clock tests set by hand: a physical clock for the
// HLC and the engine (Now) and a repair.Clock whose timers never fire
// (After), so that a test steps time itself.
package testclock

import (
	"sync"
	"time"
)

// Manual is a clock at a time the test advances. Safe for concurrent use.
type Manual struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a clock at t.
func New(t time.Time) *Manual { return &Manual{now: t} }

// Now returns the clock's time.
func (c *Manual) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock d forward.
func (c *Manual) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// After returns a channel that never receives: time moves only by Advance.
func (c *Manual) After(time.Duration) <-chan time.Time { return make(chan time.Time) }
