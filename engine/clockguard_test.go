package engine

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// fixedClock is a physical clock tests set by hand.
type fixedClock struct{ ns atomic.Int64 }

func (c *fixedClock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// TestApplyRefusesFutureRecords: Apply refuses a request holding a record
// stamped beyond the clock plus MaxClockOffset (record.ErrClockOffset,
// counted), writes none of it and does not move the HLC; a record within
// the offset is applied. FutureRecords finds records stored beyond the
// offset (here: written while the clock was ahead), and DropRecord removes
// one.
func TestApplyRefusesFutureRecords(t *testing.T) {
	ctx := context.Background()
	clock := &fixedClock{}
	now := int64(1_800_000_000_000_000_000)
	clock.ns.Store(now)
	e := openMem(t, vfs.NewMem(), Options{Clock: clock})
	defer e.Close()
	info, _ := e.Info(ctx)
	if info.WallTime != now || info.MaxClockOffset != record.DefaultMaxClockOffset {
		t.Fatalf("Info clock %d %s", info.WallTime, info.MaxClockOffset)
	}
	rec := func(wall int64, v string) []byte {
		return record.NewLWW("peer", record.Timestamp{WallTime: wall}, []byte(v), false).Encode()
	}
	err := e.Apply(ctx, 0, []reconcile.Entry{
		{Key: []byte("ok"), Record: rec(now, "ok")},
		{Key: []byte("victim"), Record: rec(now+int64(time.Second), "1s ahead")},
	})
	if !errors.Is(err, record.ErrClockOffset) || e.ClockOffsetRefusals() != 1 {
		t.Fatalf("Apply of a record 1s ahead: %v (refusals %d), want ErrClockOffset", err, e.ClockOffsetRefusals())
	}
	for _, k := range []string{"ok", "victim"} {
		if _, err := e.Get(ctx, []byte(k)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s written by a refused Apply: %v", k, err)
		}
	}
	if ts := e.Clock().Now(); ts.WallTime > now+int64(record.DefaultMaxClockOffset) {
		t.Fatalf("HLC moved to %s", ts)
	}
	if err := e.Apply(ctx, 0, []reconcile.Entry{{Key: []byte("victim"), Record: rec(now+int64(400*time.Millisecond), "within")}}); err != nil {
		t.Fatalf("a record within the offset: %v", err)
	}
	// A write while the clock is a day ahead, then the clock is fixed.
	clock.ns.Store(now + int64(24*time.Hour))
	if err := e.Put(ctx, []byte("future"), []byte("f"), nil); err != nil {
		t.Fatal(err)
	}
	clock.ns.Store(now)
	var found []FutureRecord
	n, err := e.FutureRecords(ctx, func(r FutureRecord) error { found = append(found, r); return nil })
	if err != nil || n != 1 || string(found[0].Key) != "future" || found[0].Ahead < 23*time.Hour {
		t.Fatalf("FutureRecords: %d %v %+v", n, err, found)
	}
	if err := e.DropRecord(ctx, []byte("future"), nil); err != nil {
		t.Fatal(err)
	}
	if n, _ := e.FutureRecords(ctx, func(FutureRecord) error { return nil }); n != 0 {
		t.Fatalf("%d future records after the drop", n)
	}
	if ms, err := e.Verify(ctx); err != nil || len(ms) > 0 {
		t.Fatalf("verify: %v %v", err, ms)
	}
}
