package engine

import (
	"context"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/internal/memreplica"
	"github.com/pebble-ae/pebble-ae/reconcile"
)

// TestSessionMethod checks that every session reports the method that
// localized its differences: none for identical replicas, symbol streams
// between engines (reconcile.CapSymbols), fixed sketches with a replica that
// only sketches, the descent when asked for, the naive baseline.
func TestSessionMethod(t *testing.T) {
	ctx := context.Background()
	pair := func(diffs int) (*Engine, *Engine) {
		a := openMem(t, vfs.NewMem(), Options{ReplicaID: "a"})
		b := openMem(t, vfs.NewMem(), Options{ReplicaID: "b"})
		for i := range 500 {
			k := fmt.Appendf(nil, "k%04d", i)
			if err := a.Put(ctx, k, []byte("v"), NoSync); err != nil {
				t.Fatal(err)
			}
		}
		page, err := a.RangeScan(ctx, reconcile.RangeScanRequest{WithRecords: true, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Apply(ctx, 0, page.Entries[diffs:]); err != nil {
			t.Fatal(err)
		}
		return a, b
	}
	sketcher := func() *memreplica.Replica {
		m, _ := memreplica.New(memreplica.Options{ID: "m"})
		return m
	}
	for _, tc := range []struct {
		name  string
		diffs int
		opts  reconcile.SyncOptions
		mem   bool
		want  reconcile.Method
	}{
		{"identical", 0, reconcile.SyncOptions{}, false, reconcile.MethodNone},
		{"engines", 10, reconcile.SyncOptions{}, false, reconcile.MethodSymbols},
		{"a sketcher", 10, reconcile.SyncOptions{}, true, reconcile.MethodSketch},
		{"sketch asked for", 10, reconcile.SyncOptions{Session: reconcile.SessionConfig{Method: reconcile.MethodSketch}}, false, reconcile.MethodSketch},
		{"descent", 10, reconcile.SyncOptions{Session: reconcile.SessionConfig{Method: reconcile.MethodDescent}}, false, reconcile.MethodDescent},
		{"naive", 10, reconcile.SyncOptions{Session: reconcile.SessionConfig{Method: reconcile.MethodNaive, ScanLimit: MaxKeysPerRequest}}, false, reconcile.MethodNaive},
	} {
		a, b := pair(tc.diffs)
		var peer reconcile.Replica = b
		if tc.mem {
			m := sketcher()
			page, err := b.RangeScan(ctx, reconcile.RangeScanRequest{WithRecords: true, Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page.Entries {
				m.SetEncoded(e.Key, e.Record)
			}
			peer = m
		}
		st, err := reconcile.SyncPartition(ctx, a, peer, 0, tc.opts)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if st.Method != tc.want || !st.Converged {
			t.Errorf("%s: method %q (converged %t), want %q", tc.name, st.Method, st.Converged, tc.want)
		}
	}
	if m := reconcile.MethodSymbols; (reconcile.Stats{Sessions: 1, Method: m}).Add(reconcile.Stats{Sessions: 1, Method: reconcile.MethodNone}).Method != m {
		t.Errorf("symbols + none should stay symbols")
	}
}
