package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/internal/memreplica"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// clockReplicas returns two memreplicas and their Infos with the given
// physical clocks and a 500 ms maximum offset.
func clockReplicas(t *testing.T, wallA, wallB int64) (a, b *memreplica.Replica, ia, ib reconcile.Info) {
	t.Helper()
	ctx := context.Background()
	var err error
	if a, err = memreplica.New(memreplica.Options{ID: "a", LeafSize: 4}); err != nil {
		t.Fatal(err)
	}
	if b, err = memreplica.New(memreplica.Options{ID: "b", LeafSize: 4}); err != nil {
		t.Fatal(err)
	}
	ia, _ = a.Info(ctx)
	ib, _ = b.Info(ctx)
	ia.WallTime, ia.MaxClockOffset = wallA, record.DefaultMaxClockOffset
	ib.WallTime, ib.MaxClockOffset = wallB, record.DefaultMaxClockOffset
	return a, b, ia, ib
}

// TestSessionRefusesClockSkew: replicas whose clocks differ by more than
// the maximum offset of the one behind exchange nothing (ErrClockSkew,
// Stats.ClockSkew set), whichever side is ahead; within the offset the
// session runs.
func TestSessionRefusesClockSkew(t *testing.T) {
	ctx := context.Background()
	const now = int64(1_800_000_000_000_000_000)
	for _, c := range []struct {
		name    string
		skew    time.Duration // B minus A
		refused bool
	}{
		{"B 10 minutes ahead", 10 * time.Minute, true},
		{"A 10 minutes ahead", -10 * time.Minute, true},
		{"B 501 ms ahead", 501 * time.Millisecond, true},
		{"B 499 ms ahead", 499 * time.Millisecond, false},
		{"A 100 ms ahead", -100 * time.Millisecond, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b, ia, ib := clockReplicas(t, now, now+int64(c.skew))
			a.Set([]byte("k"), record.NewLWW("a", record.Timestamp{WallTime: now - 1e9}, []byte("v"), false))
			st, err := reconcile.SyncPartition(ctx, a, b, 0, reconcile.SyncOptions{Session: reconcile.SessionConfig{InfoA: &ia, InfoB: &ib, Strict: true}})
			if st.ClockSkew != c.skew {
				t.Errorf("Stats.ClockSkew = %s, want %s", st.ClockSkew, c.skew)
			}
			_, found, _ := b.Get([]byte("k"))
			if c.refused {
				if !errors.Is(err, reconcile.ErrClockSkew) || found || st.KeysRepaired() != 0 {
					t.Fatalf("err %v, B holds the key: %v: want ErrClockSkew and nothing exchanged", err, found)
				}
				return
			}
			if err != nil || !found {
				t.Fatalf("err %v, B holds the key: %v", err, found)
			}
		})
	}
}

// TestSessionQuarantinesFutureRecords: a record stamped beyond the
// receiving side's clock plus its maximum offset is not written to it but
// counted (Stats.Quarantined, QuarantinedKeys); every other difference is
// repaired, both ways, and a strict session does not fail for it.
func TestSessionQuarantinesFutureRecords(t *testing.T) {
	ctx := context.Background()
	const now = int64(1_800_000_000_000_000_000)
	a, b, ia, ib := clockReplicas(t, now, now)
	for i := range 20 {
		a.Set(fmt.Appendf(nil, "a%02d", i), record.NewLWW("a", record.Timestamp{WallTime: now - 1e9}, []byte("v"), false))
		b.Set(fmt.Appendf(nil, "b%02d", i), record.NewLWW("b", record.Timestamp{WallTime: now - 1e9}, []byte("v"), false))
	}
	// A's record of "victim" is stamped in the year 2200; B's is older.
	future := record.NewLWW("a", record.Timestamp{WallTime: time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()}, []byte("2200"), false)
	a.Set([]byte("victim"), future)
	b.Set([]byte("victim"), record.NewLWW("b", record.Timestamp{WallTime: now - 1e9}, []byte("ack"), false))
	// Within the offset: not quarantined.
	a.Set([]byte("soon"), record.NewLWW("a", record.Timestamp{WallTime: now + int64(400*time.Millisecond)}, []byte("v"), false))
	st, err := reconcile.SyncPartition(ctx, a, b, 0, reconcile.SyncOptions{Session: reconcile.SessionConfig{InfoA: &ia, InfoB: &ib, Strict: true}})
	if err != nil {
		t.Fatal(err)
	}
	if st.Quarantined != 1 || len(st.QuarantinedKeys) != 1 || string(st.QuarantinedKeys[0]) != "victim" {
		t.Fatalf("quarantined %d %q, want victim only", st.Quarantined, st.QuarantinedKeys)
	}
	if rec, _, _ := b.Get([]byte("victim")); string(rec.Winner().Value) != "ack" {
		t.Fatalf("B's victim is %q: the future record was written", rec.Winner().Value)
	}
	for _, k := range []string{"a00", "a19", "soon"} {
		if _, ok, _ := b.Get([]byte(k)); !ok {
			t.Errorf("B lacks %s", k)
		}
	}
	if _, ok, _ := a.Get([]byte("b07")); !ok {
		t.Error("A lacks b07")
	}
	if st.Converged {
		t.Error("converged with a quarantined key")
	}
	t.Logf("%s", st)
}

// TestSessionCutoffFollowsElapsedTime: the receiving side's cutoff moves
// with the session's elapsed time (Session.Tick, from the driver's clock),
// so a record written at the other side 2 s after the session's Infos
// (well within both clocks) is repaired, not quarantined; without the
// elapsed time it would be taken for one stamped in the future.
func TestSessionCutoffFollowsElapsedTime(t *testing.T) {
	ctx := context.Background()
	const now = int64(1_800_000_000_000_000_000)
	for _, tc := range []struct {
		name        string
		step        time.Duration // the driver's clock advances this much a reading
		quarantined uint64
	}{
		{"clock stopped", 0, 1},
		{"clock running", time.Second, 0},
	} {
		a, b, ia, ib := clockReplicas(t, now, now)
		for i := range 20 {
			a.Set(fmt.Appendf(nil, "k%02d", i), record.NewLWW("a", record.Timestamp{WallTime: now - 1e9}, []byte("v"), false))
		}
		// Written at A "during the session": 2 s after both Infos.
		a.Set([]byte("late"), record.NewLWW("a", record.Timestamp{WallTime: now + int64(2*time.Second)}, []byte("v"), false))
		clock := time.Unix(0, now)
		tick := func() time.Time { clock = clock.Add(tc.step); return clock }
		st, err := reconcile.SyncPartition(ctx, a, b, 0, reconcile.SyncOptions{Now: tick, Session: reconcile.SessionConfig{InfoA: &ia, InfoB: &ib}})
		if err != nil {
			t.Fatal(err)
		}
		if st.Quarantined != tc.quarantined {
			t.Errorf("%s: %d quarantined, want %d", tc.name, st.Quarantined, tc.quarantined)
		}
		if _, ok, _ := b.Get([]byte("late")); ok != (tc.quarantined == 0) {
			t.Errorf("%s: B has the late record: %t", tc.name, ok)
		}
	}
}
