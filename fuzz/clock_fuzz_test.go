package fuzz

import (
	"math"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// stepClock is a PhysicalClock the fuzz target moves by hand (single
// goroutine, so no locking).
type stepClock struct{ ns int64 }

func (c *stepClock) Now() time.Time { return time.Unix(0, c.ns) }

// Operations of FuzzHLCMonotonic, selected by an op byte modulo 5.
const (
	hlcOpStep       = iota // move the physical clock by a signed 16-bit amount (in µs)
	hlcOpNow               // call Now
	hlcOpUpdateNear        // Update with physical time plus a signed 16-bit offset (in ms)
	hlcOpUpdateRaw         // Update with an arbitrary 64-bit wall time and logical
	hlcOpJump              // set the physical clock to an arbitrary time
	hlcOpCount
)

func FuzzHLCMonotonic(f *testing.F) {
	// Clock stalls, then Now repeatedly.
	f.Add(int64(1000), int64(500_000_000), []byte{hlcOpNow, hlcOpNow, hlcOpNow})
	// Clock goes backwards between calls.
	f.Add(int64(1_000_000_000), int64(500_000_000), []byte{hlcOpNow, hlcOpStep, 0x00, 0x80, hlcOpNow, hlcOpStep, 0xff, 0xff, hlcOpNow})
	// Update within and beyond the offset, then Now.
	f.Add(int64(10_000_000_000), int64(500_000_000), []byte{hlcOpUpdateNear, 100, 0, hlcOpNow, hlcOpUpdateNear, 0xf4, 0x01, hlcOpNow, hlcOpUpdateNear, 0xff, 0x7f, hlcOpNow})
	// Update with the maximal timestamp and no offset limit: saturation.
	f.Add(int64(0), int64(0), []byte{hlcOpUpdateRaw, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, hlcOpNow, hlcOpNow})
	// Logical overflow: remote logical MaxUint32 at the current wall time.
	f.Add(int64(5), int64(-1), []byte{hlcOpUpdateRaw, 5, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, hlcOpNow, hlcOpNow})
	// Physical clock before 1970 and negative remote times.
	f.Add(int64(-5), int64(1), []byte{hlcOpNow, hlcOpUpdateRaw, 0, 0, 0, 0, 0, 0, 0, 0x80, 1, 0, 0, 0, hlcOpNow, hlcOpJump, 0, 0, 0, 0, 0, 0, 0, 0x80, hlcOpNow})
	f.Fuzz(func(t *testing.T, start, maxOffset int64, ops []byte) {
		clock := &stepClock{ns: start}
		hlc := record.NewHLCWithMaxOffset(clock, time.Duration(maxOffset))
		r := &fuzzReader{b: ops}
		maxTS := record.Timestamp{WallTime: math.MaxInt64, Logical: math.MaxUint32}
		physNow := func() int64 { return max(clock.ns, 0) }
		// floor is the greatest timestamp Now must exceed: the last one it
		// returned and every adopted remote timestamp.
		var floor record.Timestamp
		// bound is the greatest wall time the clock may have reached:
		// physical times read and adopted remote wall times.
		bound := physNow()
		for len(r.b) > 0 {
			switch op := r.byte() % hlcOpCount; op {
			case hlcOpStep:
				delta := int64(int16(uint16(r.byte()) | uint16(r.byte())<<8))
				clock.ns = saturatingAdd(clock.ns, delta*int64(time.Microsecond))
			case hlcOpJump:
				clock.ns = int64(r.uint64())
			case hlcOpNow:
				phys := physNow()
				bound = max(bound, phys)
				got := hlc.Now()
				if floor != maxTS && got.Compare(floor) <= 0 {
					t.Fatalf("Now() = %v, not after %v (the previous Now or an adopted remote)", got, floor)
				}
				if floor == maxTS && got != maxTS {
					t.Fatalf("Now() = %v went back from the saturated %v", got, floor)
				}
				if got.WallTime < phys {
					t.Fatalf("Now() = %v behind physical time %d", got, phys)
				}
				if bound < math.MaxInt64 && got.WallTime > bound+1 {
					t.Fatalf("Now() = %v beyond every physical and adopted time (%d): a remote beyond the offset was adopted", got, bound)
				}
				floor = got
			case hlcOpUpdateNear, hlcOpUpdateRaw:
				var remote record.Timestamp
				if op == hlcOpUpdateNear {
					delta := int64(int16(uint16(r.byte()) | uint16(r.byte())<<8))
					remote = record.Timestamp{WallTime: saturatingAdd(physNow(), delta*int64(time.Millisecond)), Logical: uint32(r.byte())}
				} else {
					remote = record.Timestamp{WallTime: int64(r.uint64()), Logical: uint32(r.uint64())}
				}
				hlc.Update(remote)
				if remote.WallTime >= 0 && (maxOffset <= 0 || remote.WallTime-physNow() <= maxOffset) {
					bound = max(bound, remote.WallTime)
					if remote.Compare(floor) > 0 {
						floor = remote
					}
				}
			}
		}
	})
}

// saturatingAdd returns a+b clamped to the int64 range.
func saturatingAdd(a, b int64) int64 {
	s := a + b
	switch {
	case b > 0 && s < a:
		return math.MaxInt64
	case b < 0 && s > a:
		return math.MinInt64
	}
	return s
}
