package record

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// Timestamp is a hybrid logical clock time: a physical wall time in Unix
// nanoseconds (never negative in a valid timestamp) and a logical counter
// that orders events within one wall time. Timestamps order by WallTime, then
// Logical. The zero Timestamp is before every timestamp an HLC issues.
type Timestamp struct {
	WallTime int64
	Logical  uint32
}

// Compare returns -1, 0 or +1 as t is before, equal to or after o.
func (t Timestamp) Compare(o Timestamp) int {
	if c := cmp.Compare(t.WallTime, o.WallTime); c != 0 {
		return c
	}
	return cmp.Compare(t.Logical, o.Logical)
}

// IsZero reports whether t is the zero Timestamp.
func (t Timestamp) IsZero() bool { return t == Timestamp{} }

// String formats t as "seconds.nanoseconds,logical", for example
// "1700000000.000000042,3" (the format of CockroachDB's hlc.Timestamp).
func (t Timestamp) String() string {
	if t.WallTime < 0 {
		return fmt.Sprintf("%dns,%d", t.WallTime, t.Logical)
	}
	return fmt.Sprintf("%d.%09d,%d", t.WallTime/1e9, t.WallTime%1e9, t.Logical)
}

// PhysicalClock is the source of physical time of an HLC. Implementations
// must be safe for concurrent use. Tests inject a fake; production uses
// SystemClock.
type PhysicalClock interface {
	Now() time.Time
}

// SystemClock is the PhysicalClock of the operating system (time.Now).
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// After is time.After (so SystemClock is also the repair loop's clock).
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// DefaultMaxClockOffset is the maximum offset NewHLC tolerates between its
// physical clock and a remote timestamp (see HLC.Update), and the default of
// the engine's refusal of records stamped further ahead (ErrClockOffset) and
// of the sessions' skew check (ErrClockSkew). 500 ms is CockroachDB's
// default --max-offset: NTP keeps clocks within a few milliseconds of each
// other (tens over the Internet), so a larger offset means a broken clock,
// and a smaller one would refuse records of healthy peers whose clocks are
// merely a little apart. A record within the offset can still win over a
// write acknowledged up to that long after it elsewhere: the bound is the
// window in which last-writer-wins may invert acknowledged order.
const DefaultMaxClockOffset = 500 * time.Millisecond

// ErrClockOffset reports a record stamped further ahead of the receiving
// replica's physical clock than its maximum clock offset: it is not applied
// (it would win last-writer-wins over every write acknowledged until the
// clocks catch up). Sessions do not offer such records (they are counted in
// Stats.Quarantined instead); a replica's Apply refuses them.
var ErrClockOffset = errors.New("record: record stamped beyond the clock's maximum offset")

// MaxWallTime returns the greatest wall time of r's siblings (0 for a
// record without any).
func (r Record) MaxWallTime() int64 {
	var m int64
	for _, s := range r.Siblings {
		m = max(m, s.Timestamp.WallTime)
	}
	return m
}

// HLC is a hybrid logical clock (Kulkarni et al., "Logical Physical Clocks",
// 2014), like CockroachDB's hlc.Clock: it issues timestamps that are close
// to physical time, strictly increase across calls even when the physical
// clock stalls or steps backwards, and exceed every remote timestamp the
// clock has observed through Update, so that a write stamped after reading a
// record always wins over that record under last-writer-wins.
//
// The state lives only in memory: a restarted process starts again from its
// physical clock, so if that clock is behind the last timestamp issued
// before the restart, timestamps may repeat or go back. Callers that need
// monotonicity across restarts must Update the clock with the greatest
// timestamp they persisted.
//
// An HLC is safe for concurrent use.
type HLC struct {
	physical  PhysicalClock
	maxOffset time.Duration

	mu struct {
		sync.Mutex
		// last is the greatest timestamp issued or observed.
		last Timestamp
	}
}

// NewHLC returns an HLC on the physical clock (SystemClock{} if nil) that
// ignores remote timestamps more than DefaultMaxClockOffset ahead of it.
func NewHLC(physical PhysicalClock) *HLC {
	return NewHLCWithMaxOffset(physical, DefaultMaxClockOffset)
}

// NewHLCWithMaxOffset returns an HLC on the physical clock (SystemClock{} if
// nil) that ignores remote timestamps more than maxOffset ahead of it. A
// maxOffset <= 0 disables the check: every remote timestamp is adopted.
func NewHLCWithMaxOffset(physical PhysicalClock, maxOffset time.Duration) *HLC {
	if physical == nil {
		physical = SystemClock{}
	}
	return &HLC{physical: physical, maxOffset: maxOffset}
}

// MaxOffset returns the maximum offset of the clock (see Update); 0 or less
// means no limit.
func (c *HLC) MaxOffset() time.Duration { return c.maxOffset }

// physicalNow reads the physical clock in Unix nanoseconds, clamped to 0 for
// times before 1970.
func (c *HLC) physicalNow() int64 {
	return max(c.physical.Now().UnixNano(), 0)
}

// Now returns a timestamp strictly greater than every timestamp Now has
// returned and every remote timestamp adopted by Update, and whose WallTime
// is at least the physical time read during the call. When the physical
// clock is not ahead of the last timestamp, Now increments Logical; if
// Logical would overflow it advances WallTime by one nanosecond instead.
// Strictness holds until the timestamp reaches {math.MaxInt64,
// math.MaxUint32} (the year 2262), where Now saturates.
func (c *HLC) Now() Timestamp {
	phys := c.physicalNow()
	c.mu.Lock()
	defer c.mu.Unlock()
	if phys > c.mu.last.WallTime {
		c.mu.last = Timestamp{WallTime: phys}
	} else {
		c.tickLocked()
	}
	return c.mu.last
}

// Next returns a timestamp strictly greater than every timestamp Now and
// Next have returned and every remote timestamp adopted by Update, like Now,
// but without reading the physical clock: the last timestamp with Logical
// incremented (or, when Logical would overflow, WallTime advanced by one
// nanosecond). Its WallTime is that of the last Now or adopted Update, so it
// is for stamping a burst of events right after a Now, such as the later
// writes of one batch, at the cost of one physical clock read for the
// burst. It saturates like Now.
func (c *HLC) Next() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tickLocked()
	return c.mu.last
}

// tickLocked advances the last timestamp by one logical tick.
func (c *HLC) tickLocked() {
	last := &c.mu.last
	switch {
	case last.Logical < math.MaxUint32:
		last.Logical++
	case last.WallTime < math.MaxInt64:
		*last = Timestamp{WallTime: last.WallTime + 1}
	}
}

// Update observes a timestamp received from another replica (for instance
// the timestamp of a record read or received in anti-entropy) so that every
// later Now returns a greater timestamp.
//
// A remote timestamp whose WallTime is more than the clock's maximum offset
// ahead of the physical clock is ignored, not adopted: one replica with a
// far-future clock must not drag every other clock along with it. Such a
// timestamp keeps winning last-writer-wins until physical time catches up,
// which is the price of bounding the drift. Negative wall times (invalid)
// are ignored too. Update never panics.
func (c *HLC) Update(remote Timestamp) {
	if remote.WallTime < 0 {
		return
	}
	if c.maxOffset > 0 {
		// remote.WallTime >= 0 and phys >= 0, so the difference cannot
		// overflow.
		if phys := c.physicalNow(); remote.WallTime-phys > int64(c.maxOffset) {
			return
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if remote.Compare(c.mu.last) > 0 {
		c.mu.last = remote
	}
}
