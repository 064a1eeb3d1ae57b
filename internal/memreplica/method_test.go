package memreplica_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/pebble-ae/pebble-ae/internal/memreplica"
	"github.com/pebble-ae/pebble-ae/reconcile"
)

// TestSessionMethod checks that every session reports the method that
// localized its differences: none for identical replicas, symbol streams
// by default between SymbolStreamers, the descent when asked for, the
// naive baseline.
func TestSessionMethod(t *testing.T) {
	ctx := context.Background()
	pair := func(diffs int) (*memreplica.Replica, *memreplica.Replica) {
		a, _ := memreplica.New(memreplica.Options{ID: "a", LeafSize: 8})
		b, _ := memreplica.New(memreplica.Options{ID: "b", LeafSize: 8})
		for i := range 500 {
			rec := reconcile.NewLWW("a", reconcile.Timestamp{WallTime: int64(i + 1)}, []byte("v"), false)
			a.Set(fmt.Appendf(nil, "k%04d", i), rec)
			if i >= diffs {
				b.Set(fmt.Appendf(nil, "k%04d", i), rec)
			}
		}
		return a, b
	}
	for _, tc := range []struct {
		name  string
		diffs int
		opts  reconcile.SyncOptions
		want  reconcile.Method
	}{
		{"identical", 0, reconcile.SyncOptions{}, reconcile.MethodNone},
		{"default", 10, reconcile.SyncOptions{}, reconcile.MethodSymbols},
		{"descent", 10, reconcile.SyncOptions{NoSketch: true}, reconcile.MethodDescent},
		{"naive", 10, reconcile.SyncOptions{Session: reconcile.SessionConfig{Naive: true}}, reconcile.MethodNaive},
	} {
		a, b := pair(tc.diffs)
		st, err := reconcile.SyncPartition(ctx, a, b, 0, tc.opts)
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
