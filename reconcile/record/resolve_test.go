package record_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

func TestLWWResolve(t *testing.T) {
	older := record.NewLWW("b", ts(10, 0), []byte("old"), false)
	newer := record.NewLWW("a", ts(11, 0), []byte("new"), false)
	tieLow := record.NewLWW("a", ts(12, 0), []byte("low"), false)
	tieHigh := record.NewLWW("b", ts(12, 0), []byte("high"), false)
	del := record.NewLWW("a", ts(13, 0), nil, true)
	siblings := causal(vv{"a": 1, "c": 1}, sibling("a", 1, ts(20, 0), "ca"), sibling("c", 1, ts(21, 0), "cc"))
	for _, tc := range []struct {
		name string
		a, b record.Record
		want record.Record
	}{
		{"later timestamp wins", older, newer, newer},
		{"same record", newer, newer, newer},
		{"timestamp tie broken by replica ID", tieLow, tieHigh, tieHigh},
		{"tombstone wins when later", newer, del, del},
		{"causal reduced to its winner", older, siblings, record.NewLWW("c", ts(21, 0), []byte("cc"), false)},
		{"LWW beats an older causal winner", record.NewLWW("z", ts(30, 0), []byte("z"), false), siblings, record.NewLWW("z", ts(30, 0), []byte("z"), false)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, order := range [][2]record.Record{{tc.a, tc.b}, {tc.b, tc.a}} {
				got, err := record.LWW{}.Resolve([]byte("k"), order[0], order[1])
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
	lww := record.NewLWW("a", ts(1, 0), []byte("v"), false)
	c1 := causal(vv{"a": 1}, sibling("a", 1, ts(1, 0), "x"))
	c2 := causal(vv{"b": 1}, sibling("b", 1, ts(1, 0), "y"))
	invalid := record.Record{Mode: record.ModeLWW}
	contradictA := causal(vv{"a": 1, "b": 1}, sibling("a", 1, ts(1, 0), "x"))
	contradictB := causal(vv{"a": 1, "b": 1}, sibling("b", 1, ts(1, 0), "y"))
	for _, tc := range []struct {
		name    string
		r       record.Resolver
		a, b    record.Record
		wantErr error
	}{
		{"LWW refuses two causal records", record.LWW{}, c1, c2, record.ErrModeMismatch},
		{"KeepSiblings refuses mixed modes", record.KeepSiblings{}, lww, c1, record.ErrModeMismatch},
		{"LWW refuses an invalid record", record.LWW{}, lww, invalid, record.ErrMalformedRecord},
		{"KeepSiblings refuses an invalid record", record.KeepSiblings{}, invalid, c1, record.ErrMalformedRecord},
		{"KeepSiblings refuses the zero record", record.KeepSiblings{}, record.Record{}, c1, record.ErrMalformedRecord},
		{"KeepSiblings refuses contradictory records", record.KeepSiblings{}, contradictA, contradictB, record.ErrMalformedRecord},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, order := range [][2]record.Record{{tc.a, tc.b}, {tc.b, tc.a}} {
				got, err := tc.r.Resolve([]byte("the-key"), order[0], order[1])
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Resolve = %+v, %v; want %v", got, err, tc.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "record: ") || !strings.Contains(err.Error(), `"the-key"`) {
					t.Fatalf("error %q lacks the package prefix or the key", err)
				}
			}
		})
	}
}

func TestKeepSiblingsResolve(t *testing.T) {
	ra := record.CausalPut(record.Record{}, nil, "a", ts(1, 0), []byte("x"), false)
	rb := record.CausalPut(record.Record{}, nil, "b", ts(2, 0), []byte("y"), false)
	got, err := record.KeepSiblings{}.Resolve(nil, ra, rb)
	if err != nil {
		t.Fatal(err)
	}
	if want := record.Sync(ra, rb); !got.Equal(want) || len(got.Siblings) != 2 {
		t.Fatalf("Resolve = %+v, want %+v", got, want)
	}
	older := record.NewLWW("a", ts(1, 0), []byte("old"), false)
	newer := record.NewLWW("b", ts(2, 0), []byte("new"), false)
	got, err = record.KeepSiblings{}.Resolve(nil, newer, older)
	if err != nil || !got.Equal(newer) {
		t.Fatalf("Resolve of two LWW records = %+v, %v; want %+v", got, err, newer)
	}
}

func TestResolverFuncAndFor(t *testing.T) {
	called := false
	var f record.Resolver = record.ResolverFunc(func(key []byte, a, b record.Record) (record.Record, error) {
		called = string(key) == "k"
		return b, nil
	})
	want := record.NewLWW("b", ts(1, 0), nil, true)
	got, err := f.Resolve([]byte("k"), record.Record{}, want)
	if err != nil || !called || !got.Equal(want) {
		t.Fatalf("ResolverFunc.Resolve = %+v, %v (called %t)", got, err, called)
	}
	if _, ok := record.ResolverFor(record.ModeLWW).(record.LWW); !ok {
		t.Errorf("ResolverFor(ModeLWW) is not LWW")
	}
	if _, ok := record.ResolverFor(record.ModeCausal).(record.KeepSiblings); !ok {
		t.Errorf("ResolverFor(ModeCausal) is not KeepSiblings")
	}
	if r := record.ResolverFor(0); r != nil {
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
	resolve := func(a, b record.Record) record.Record {
		r, err := record.LWW{}.Resolve([]byte("k"), a, b)
		if err != nil {
			t.Fatalf("seed=%d: Resolve: %v", seed, err)
		}
		return r
	}
	for round := range 300 {
		clock := &manualClock{}
		ids := []record.ReplicaID{"a", "b", "c"}
		clocks := make([]*record.HLC, len(ids))
		for i := range clocks {
			clocks[i] = record.NewHLC(clock)
		}
		var records []record.Record
		for range 1 + rng.IntN(8) {
			clock.set(int64(rng.IntN(4))) // coarse clock: many timestamp ties
			i := rng.IntN(len(ids))
			records = append(records, record.NewLWW(ids[i], clocks[i].Now(), []byte{byte(rng.IntN(3))}, rng.IntN(4) == 0))
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
