package reconcile_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/pebble-ae/pebble-ae/internal/memreplica"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// TestSessionBoundedMemory reconciles large differences with a small
// SessionConfig.MaxPendingBytes and with the default, side by side: a new,
// empty replica filled from a full one (listings with records), a third of
// the keys stale on one side (digest listings and fetches), and the same
// with sketches (a difference too large to fetch by sketch ID, reconciled
// by the descent). Both runs must converge to the same data and repair the
// same keys; the bounded one must never hold more than its budget plus one
// round's writes, where the default one holds every write until the end.
func TestSessionBoundedMemory(t *testing.T) {
	const (
		n        = 40000
		budget   = 64 << 10
		scan     = 128
		valueLen = 100
	)
	value := bytes.Repeat([]byte("v"), valueLen)
	// One round resolves at most budget/PendingKeyCost listed keys plus
	// one item of two pages, and budget/PendingKeyCost fetched keys, each
	// written to at most two sides.
	entry := len(fmt.Sprintf("k%07d", 0)) + record.NewLWW("a", record.Timestamp{WallTime: 1 << 40}, value, false).EncodedLen()
	roundMax := int64(2 * (budget/reconcile.PendingKeyCost + 2*scan + budget/reconcile.PendingKeyCost) * entry)

	for _, tc := range []struct {
		name   string
		stale  func(i int) bool // key i is stale (or missing) on B
		sketch bool
		extraA int // keys only A holds, after the n both hold
	}{
		{name: "empty", stale: func(int) bool { return true }},
		{name: "third-stale", stale: func(i int) bool { return i%3 == 0 }},
		{name: "third-stale-sketch", stale: func(i int) bool { return i%3 == 0 }, sketch: true},
		// More IDs on A than on B: B's go first in the paired fetch.
		{name: "third-stale-a-extra-sketch", stale: func(i int) bool { return i%3 == 0 }, sketch: true, extraA: n / 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var results [2]reconcile.Stats
			var dumps [2][]reconcile.Entry
			for run, maxPending := range []int64{budget, 0} {
				reps := [2]*memreplica.Replica{}
				for i, id := range []record.ReplicaID{"a", "b"} {
					reps[i], _ = memreplica.New(memreplica.Options{ID: id, LeafSize: 64})
				}
				empty := tc.name == "empty"
				for i := range n + tc.extraA {
					k := fmt.Appendf(nil, "k%07d", i)
					reps[0].Set(k, record.NewLWW("a", record.Timestamp{WallTime: 2 << 40}, value, false))
					if !empty && i < n {
						ts := int64(2 << 40)
						if tc.stale(i) {
							ts = 1 << 40
						}
						reps[1].Set(k, record.NewLWW("a", record.Timestamp{WallTime: ts}, value, false))
					}
				}
				opts := reconcile.SyncOptions{
					Session: reconcile.SessionConfig{Strict: true, MaxPendingBytes: maxPending, ScanLimit: scan},
				}
				if !tc.sketch {
					opts.Session.Method = reconcile.MethodDescent
				}
				st, err := reconcile.SyncPartition(context.Background(), reps[0], reps[1], 0, opts)
				if err != nil {
					t.Fatalf("MaxPendingBytes %d: %v", maxPending, err)
				}
				if !st.Converged {
					t.Fatalf("MaxPendingBytes %d: not converged: %s", maxPending, st)
				}
				t.Logf("MaxPendingBytes %d: %d rounds, %d drains, %d large differences, peak %d bytes of writes, %s",
					maxPending, st.Rounds, st.Drains, st.LargeDifferences, st.PeakPendingBytes, st)
				results[run], dumps[run] = st, reps[1].Dump()
				if a, b := reps[0].Dump(), reps[1].Dump(); len(a) != n+tc.extraA || len(b) != n+tc.extraA {
					t.Fatalf("MaxPendingBytes %d: %d and %d keys after the session, want %d", maxPending, len(a), len(b), n+tc.extraA)
				}
			}
			bounded, unbounded := results[0], results[1]
			if bounded.KeysRepaired() != unbounded.KeysRepaired() || bounded.KeysRepaired() == 0 {
				t.Fatalf("repaired %d keys bounded, %d unbounded", bounded.KeysRepaired(), unbounded.KeysRepaired())
			}
			for i := range dumps[0] {
				if !bytes.Equal(dumps[0][i].Key, dumps[1][i].Key) || !bytes.Equal(dumps[0][i].Record, dumps[1][i].Record) {
					t.Fatalf("the two runs left different data at %q", dumps[0][i].Key)
				}
			}
			if bounded.Drains == 0 || bounded.PeakPendingBytes > budget+roundMax {
				t.Fatalf("bounded: %d drains, peak %d bytes of writes, want drains and at most %d", bounded.Drains, bounded.PeakPendingBytes, budget+roundMax)
			}
			if unbounded.Drains != 0 || unbounded.PeakPendingBytes < 4*(budget+roundMax) {
				t.Fatalf("default: %d drains, peak %d bytes: the data set no longer shows the difference", unbounded.Drains, unbounded.PeakPendingBytes)
			}
			if tc.sketch && (bounded.LargeDifferences != 1 || unbounded.LargeDifferences != 0) {
				t.Fatalf("large differences: %d bounded, %d unbounded; want 1 and 0", bounded.LargeDifferences, unbounded.LargeDifferences)
			}
		})
	}
}

// TestSessionDrainBytes: a new, empty replica filled with DrainBytes below
// MaxPendingBytes (4 MiB: 4096 keys a round) applies its writes as they
// reach DrainBytes (several drains, a lower peak of queued writes), with the
// same key budget a round as without it, and converges; without it the
// whole fill (2.4 MB) waits for the end.
func TestSessionDrainBytes(t *testing.T) {
	const n, drain = 20000, 256 << 10
	value := bytes.Repeat([]byte("v"), 100)
	run := func(drainBytes int64) reconcile.Stats {
		a, _ := memreplica.New(memreplica.Options{ID: "a", LeafSize: 64})
		b, _ := memreplica.New(memreplica.Options{ID: "b", LeafSize: 64})
		for i := range n {
			a.Set(fmt.Appendf(nil, "k%07d", i), record.NewLWW("a", record.Timestamp{WallTime: 1 << 40}, value, false))
		}
		st, err := reconcile.SyncPartition(context.Background(), a, b, 0, reconcile.SyncOptions{
			Session: reconcile.SessionConfig{Strict: true, MaxPendingBytes: 4 << 20, DrainBytes: drainBytes}})
		if err != nil || !st.Converged || len(b.Dump()) != n {
			t.Fatalf("DrainBytes %d: %v, converged %t, %d keys on b", drainBytes, err, st.Converged, len(b.Dump()))
		}
		return st
	}
	plain, drained := run(0), run(drain)
	t.Logf("without DrainBytes: %d drains, peak %d; with %d: %d drains, peak %d", plain.Drains, plain.PeakPendingBytes, drain, drained.Drains, drained.PeakPendingBytes)
	if plain.Drains != 0 || drained.Drains < 4 {
		t.Fatalf("drains: %d without DrainBytes, %d with %d bytes", plain.Drains, drained.Drains, drain)
	}
	if drained.PeakPendingBytes >= plain.PeakPendingBytes {
		t.Fatalf("peak queued writes %d with DrainBytes, %d without", drained.PeakPendingBytes, plain.PeakPendingBytes)
	}
}
