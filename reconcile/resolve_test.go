package reconcile_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/reconcile"
)

func TestLWWResolve(t *testing.T) {
	older := reconcile.NewLWW("b", ts(10, 0), []byte("old"), false)
	newer := reconcile.NewLWW("a", ts(11, 0), []byte("new"), false)
	tieLow := reconcile.NewLWW("a", ts(12, 0), []byte("low"), false)
	tieHigh := reconcile.NewLWW("b", ts(12, 0), []byte("high"), false)
	del := reconcile.NewLWW("a", ts(13, 0), nil, true)
	siblings := causal(vv{"a": 1, "c": 1}, sibling("a", 1, ts(20, 0), "ca"), sibling("c", 1, ts(21, 0), "cc"))
	for _, tc := range []struct {
		name string
		a, b reconcile.Record
		want reconcile.Record
	}{
		{"later timestamp wins", older, newer, newer},
		{"same record", newer, newer, newer},
		{"timestamp tie broken by replica ID", tieLow, tieHigh, tieHigh},
		{"tombstone wins when later", newer, del, del},
		{"causal reduced to its winner", older, siblings, reconcile.NewLWW("c", ts(21, 0), []byte("cc"), false)},
		{"LWW beats an older causal winner", reconcile.NewLWW("z", ts(30, 0), []byte("z"), false), siblings, reconcile.NewLWW("z", ts(30, 0), []byte("z"), false)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, order := range [][2]reconcile.Record{{tc.a, tc.b}, {tc.b, tc.a}} {
				got, err := reconcile.LWW{}.Resolve([]byte("k"), order[0], order[1])
				if err != nil {
					t.Fatalf("Resolve: %v", err)
				}
				if !got.Equal(tc.want) {
					t.Fatalf("Resolve = %+v, want %+v", got, tc.want)
				}
				if err := got.Validate(); err != nil {
					t.Fatalf("Resolve result invalid: %v", err)
				}
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	lww := reconcile.NewLWW("a", ts(1, 0), []byte("v"), false)
	c1 := causal(vv{"a": 1}, sibling("a", 1, ts(1, 0), "x"))
	c2 := causal(vv{"b": 1}, sibling("b", 1, ts(1, 0), "y"))
	invalid := reconcile.Record{Mode: reconcile.ModeLWW}
	contradictA := causal(vv{"a": 1, "b": 1}, sibling("a", 1, ts(1, 0), "x"))
	contradictB := causal(vv{"a": 1, "b": 1}, sibling("b", 1, ts(1, 0), "y"))
	for _, tc := range []struct {
		name    string
		r       reconcile.Resolver
		a, b    reconcile.Record
		wantErr error
	}{
		{"LWW refuses two causal records", reconcile.LWW{}, c1, c2, reconcile.ErrModeMismatch},
		{"KeepSiblings refuses mixed modes", reconcile.KeepSiblings{}, lww, c1, reconcile.ErrModeMismatch},
		{"LWW refuses an invalid record", reconcile.LWW{}, lww, invalid, reconcile.ErrMalformedRecord},
		{"KeepSiblings refuses an invalid record", reconcile.KeepSiblings{}, invalid, c1, reconcile.ErrMalformedRecord},
		{"KeepSiblings refuses the zero record", reconcile.KeepSiblings{}, reconcile.Record{}, c1, reconcile.ErrMalformedRecord},
		{"KeepSiblings refuses contradictory records", reconcile.KeepSiblings{}, contradictA, contradictB, reconcile.ErrMalformedRecord},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, order := range [][2]reconcile.Record{{tc.a, tc.b}, {tc.b, tc.a}} {
				got, err := tc.r.Resolve([]byte("the-key"), order[0], order[1])
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Resolve = %+v, %v; want %v", got, err, tc.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "reconcile: ") || !strings.Contains(err.Error(), `"the-key"`) {
					t.Fatalf("error %q lacks the package prefix or the key", err)
				}
			}
		})
	}
}

func TestKeepSiblingsResolve(t *testing.T) {
	ra := reconcile.CausalPut(reconcile.Record{}, nil, "a", ts(1, 0), []byte("x"), false)
	rb := reconcile.CausalPut(reconcile.Record{}, nil, "b", ts(2, 0), []byte("y"), false)
	got, err := reconcile.KeepSiblings{}.Resolve(nil, ra, rb)
	if err != nil {
		t.Fatal(err)
	}
	if want := reconcile.Sync(ra, rb); !got.Equal(want) || len(got.Siblings) != 2 {
		t.Fatalf("Resolve = %+v, want %+v", got, want)
	}
	older := reconcile.NewLWW("a", ts(1, 0), []byte("old"), false)
	newer := reconcile.NewLWW("b", ts(2, 0), []byte("new"), false)
	got, err = reconcile.KeepSiblings{}.Resolve(nil, newer, older)
	if err != nil || !got.Equal(newer) {
		t.Fatalf("Resolve of two LWW records = %+v, %v; want %+v", got, err, newer)
	}
}

func TestResolverFuncAndFor(t *testing.T) {
	called := false
	var f reconcile.Resolver = reconcile.ResolverFunc(func(key []byte, a, b reconcile.Record) (reconcile.Record, error) {
		called = string(key) == "k"
		return b, nil
	})
	want := reconcile.NewLWW("b", ts(1, 0), nil, true)
	got, err := f.Resolve([]byte("k"), reconcile.Record{}, want)
	if err != nil || !called || !got.Equal(want) {
		t.Fatalf("ResolverFunc.Resolve = %+v, %v (called %t)", got, err, called)
	}
	if _, ok := reconcile.ResolverFor(reconcile.ModeLWW).(reconcile.LWW); !ok {
		t.Errorf("ResolverFor(ModeLWW) is not LWW")
	}
	if _, ok := reconcile.ResolverFor(reconcile.ModeCausal).(reconcile.KeepSiblings); !ok {
		t.Errorf("ResolverFor(ModeCausal) is not KeepSiblings")
	}
	if r := reconcile.ResolverFor(0); r != nil {
		t.Errorf("ResolverFor(0) = %v, want nil", r)
	}
}

// TestLWWConvergenceRandomized has replicas with skewed clocks write one key,
// then resolves the records in random orders: every order must give the
// same record, the LWW maximum, and Resolve must be commutative,
// associative and idempotent on the way.
func TestLWWConvergenceRandomized(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed=%d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	resolve := func(a, b reconcile.Record) reconcile.Record {
		r, err := reconcile.LWW{}.Resolve([]byte("k"), a, b)
		if err != nil {
			t.Fatalf("seed=%d: Resolve: %v", seed, err)
		}
		return r
	}
	for round := range 300 {
		clock := &manualClock{}
		ids := []reconcile.ReplicaID{"a", "b", "c"}
		clocks := make([]*reconcile.HLC, len(ids))
		for i := range clocks {
			clocks[i] = reconcile.NewHLC(clock)
		}
		var records []reconcile.Record
		for range 1 + rng.IntN(8) {
			clock.set(int64(rng.IntN(4))) // coarse clock: many timestamp ties
			i := rng.IntN(len(ids))
			records = append(records, reconcile.NewLWW(ids[i], clocks[i].Now(), []byte{byte(rng.IntN(3))}, rng.IntN(4) == 0))
		}
		want := records[0]
		for _, r := range records[1:] {
			want = resolve(want, r)
		}
		for range 5 {
			perm := rng.Perm(len(records))
			got := records[perm[0]]
			for _, k := range perm[1:] {
				got = resolve(records[k], got)
			}
			if !got.Equal(want) {
				t.Fatalf("seed=%d round %d: order %v gives %+v, want %+v", seed, round, perm, got, want)
			}
		}
		a, b, c := records[rng.IntN(len(records))], records[rng.IntN(len(records))], records[rng.IntN(len(records))]
		if !resolve(a, a).Equal(a) || !resolve(a, b).Equal(resolve(b, a)) ||
			!resolve(resolve(a, b), c).Equal(resolve(a, resolve(b, c))) {
			t.Fatalf("seed=%d round %d: LWW laws violated on %+v %+v %+v", seed, round, a, b, c)
		}
	}
}
