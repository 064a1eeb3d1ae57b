package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// The clock guard: no record stamped further ahead of this replica's
// physical clock than Options.MaxClockOffset gets in through Apply, and the
// records stored beyond it (by an earlier release, or while the clock was
// wrong) can be found and dealt with.

// MaxClockOffset returns the furthest ahead of the physical clock a received
// record may be stamped, or 0 for no limit.
func (e *Engine) MaxClockOffset() time.Duration { return max(e.opts.MaxClockOffset, 0) }

// recordCutoff returns the greatest wall time a record Apply accepts now may
// carry, or 0 for no limit.
func (e *Engine) recordCutoff() int64 {
	off := e.MaxClockOffset()
	if off <= 0 {
		return 0
	}
	return e.opts.Clock.Now().UnixNano() + int64(off)
}

// ClockOffsetRefusals returns the number of records Apply has refused since
// Open as stamped beyond the clock plus MaxClockOffset.
func (e *Engine) ClockOffsetRefusals() uint64 { return e.clockRefused.Load() }

// FutureRecord is a stored record stamped beyond the clock plus the maximum
// offset (see FutureRecords).
type FutureRecord struct {
	Partition int
	Key       []byte
	Record    record.Record
	// Ahead is how far the record's greatest wall time is ahead of the
	// physical clock.
	Ahead time.Duration
}

// FutureRecords scans every user record and calls fn with each one stamped
// further ahead of the physical clock than MaxClockOffset (or, with no
// limit set, record.DefaultMaxClockOffset): records stored before this
// guard existed, or by this replica while its clock was wrong. Such a record
// wins last-writer-wins over every write acknowledged until the clocks catch
// up, and the other replicas quarantine it. It reads the whole DB from a
// snapshot, throttled like other background scans; fn may return an error
// to stop. It returns the number found.
func (e *Engine) FutureRecords(ctx context.Context, fn func(FutureRecord) error) (int, error) {
	if err := e.enter(); err != nil {
		return 0, err
	}
	defer e.exit()
	off := e.MaxClockOffset()
	if off <= 0 {
		off = record.DefaultMaxClockOffset
	}
	now := e.opts.Clock.Now().UnixNano()
	cutoff := now + int64(off)
	snap := e.rd.NewSnapshot()
	defer snap.Close()
	it, err := merkle.NewUserIter(ctx, snap, nil, nil)
	if err != nil {
		return 0, err
	}
	defer it.Close()
	n, keys, bytes := 0, 0, 0
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return n, err
		}
		keys++
		bytes += len(it.Key()) + len(v)
		if keys >= 256 && e.opts.Throttle != nil {
			if err := e.opts.Throttle(ctx, keys, bytes); err != nil {
				return n, err
			}
			keys, bytes = 0, 0
		}
		rec, err := record.DecodeRecord(v)
		if err != nil || rec.MaxWallTime() <= cutoff {
			continue // an undecodable record is verify's business
		}
		n++
		k := append([]byte(nil), it.Key()...)
		if err := fn(FutureRecord{Partition: e.opts.Partitioner.Partition(k), Key: k, Record: rec, Ahead: time.Duration(rec.MaxWallTime() - now)}); err != nil {
			return n, err
		}
	}
	return n, it.Error()
}

// DropRecord physically removes key's record from this replica (like
// DeleteRange over the one key: a local operation, not a replicated
// delete): how an operator deals with a record stamped in the future that
// other replicas hold an acknowledged version of (anti-entropy brings their
// version back). A record no other replica holds is lost; rewrite it with
// Put instead (a new stamp from this replica's clock).
func (e *Engine) DropRecord(ctx context.Context, key []byte, wo *WriteOptions) error {
	if err := e.CheckKey(key); err != nil {
		return err
	}
	return e.DeleteRange(ctx, key, append(append([]byte(nil), key...), 0), wo)
}

// checkClock returns an error wrapping record.ErrClockOffset if rec is
// stamped beyond cutoff (0: no limit).
func checkClock(key []byte, rec record.Record, cutoff int64) error {
	if w := rec.MaxWallTime(); cutoff > 0 && w > cutoff {
		return fmt.Errorf("%w: key %q stamped %s, %s beyond this replica's clock plus its maximum offset",
			record.ErrClockOffset, key, time.Unix(0, w).UTC().Format(time.RFC3339Nano), time.Duration(w-cutoff))
	}
	return nil
}
