package reconcile_test

import (
	"fmt"

	"github.com/pebble-ae/pebble-ae/reconcile"
)

func printRecord(r reconcile.Record) {
	fmt.Println("context", r.Context)
	for _, s := range r.Siblings {
		if s.Tombstone {
			fmt.Printf("  %s: <deleted>\n", s.Dot)
			continue
		}
		fmt.Printf("  %s: %s\n", s.Dot, s.Value)
	}
}

// Two clients write the same key concurrently at replicas a and b. After
// anti-entropy both values are kept as siblings; a client that read both and
// writes with that context replaces them.
func ExampleCausalPut() {
	atA := reconcile.CausalPut(reconcile.Record{}, nil, "a", reconcile.Timestamp{WallTime: 1}, []byte("red"), false)
	atB := reconcile.CausalPut(reconcile.Record{}, nil, "b", reconcile.Timestamp{WallTime: 2}, []byte("blue"), false)

	synced := reconcile.Sync(atA, atB)
	printRecord(synced)

	// The client reads both siblings and the opaque context...
	opaque := reconcile.EncodeContext(synced.Context)
	// ...and writes its merge at replica b with that context.
	ctx, err := reconcile.DecodeContext(opaque)
	if err != nil {
		panic(err)
	}
	merged := reconcile.CausalPut(synced, ctx, "b", reconcile.Timestamp{WallTime: 3}, []byte("purple"), false)
	printRecord(merged)

	// Output:
	// context {a:1, b:1}
	//   a:1: red
	//   b:1: blue
	// context {a:1, b:2}
	//   b:2: purple
}

// An LWW resolver picks the same winner on every replica: the later
// timestamp, then the greater replica ID on a timestamp tie.
func ExampleLWW() {
	t := reconcile.Timestamp{WallTime: 1700000000_000000000}
	fromA := reconcile.NewLWW("a", t, []byte("from a"), false)
	fromB := reconcile.NewLWW("b", t, []byte("from b"), false)

	r1, _ := reconcile.LWW{}.Resolve([]byte("k"), fromA, fromB)
	r2, _ := reconcile.LWW{}.Resolve([]byte("k"), fromB, fromA)
	fmt.Printf("%s / %s\n", r1.Winner().Value, r2.Winner().Value)

	// Output:
	// from b / from b
}

// An HLC stays ahead of every timestamp it has issued or observed, even when
// the physical clock stalls.
func ExampleHLC() {
	clock := &manualClock{ns: 5_000_000_000}
	hlc := reconcile.NewHLC(clock)
	fmt.Println(hlc.Now())
	fmt.Println(hlc.Now())
	hlc.Update(reconcile.Timestamp{WallTime: 5_000_000_100, Logical: 7})
	fmt.Println(hlc.Now())

	// Output:
	// 5.000000000,0
	// 5.000000000,1
	// 5.000000100,8
}
