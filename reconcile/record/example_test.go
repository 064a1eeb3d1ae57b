package record_test

import (
	"fmt"

	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

func printRecord(r record.Record) {
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
	atA := record.CausalPut(record.Record{}, nil, "a", record.Timestamp{WallTime: 1}, []byte("red"), false)
	atB := record.CausalPut(record.Record{}, nil, "b", record.Timestamp{WallTime: 2}, []byte("blue"), false)

	synced := record.Sync(atA, atB)
	printRecord(synced)

	// The client reads both siblings and the opaque context...
	opaque := record.EncodeContext(synced.Context)
	// ...and writes its merge at replica b with that context.
	ctx, err := record.DecodeContext(opaque)
	if err != nil {
		panic(err)
	}
	merged := record.CausalPut(synced, ctx, "b", record.Timestamp{WallTime: 3}, []byte("purple"), false)
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
	t := record.Timestamp{WallTime: 1700000000_000000000}
	fromA := record.NewLWW("a", t, []byte("from a"), false)
	fromB := record.NewLWW("b", t, []byte("from b"), false)

	r1, _ := record.LWW{}.Resolve([]byte("k"), fromA, fromB)
	r2, _ := record.LWW{}.Resolve([]byte("k"), fromB, fromA)
	fmt.Printf("%s / %s\n", r1.Winner().Value, r2.Winner().Value)

	// Output:
	// from b / from b
}

// An HLC stays ahead of every timestamp it has issued or observed, even when
// the physical clock stalls.
func ExampleHLC() {
	clock := &manualClock{ns: 5_000_000_000}
	hlc := record.NewHLC(clock)
	fmt.Println(hlc.Now())
	fmt.Println(hlc.Now())
	hlc.Update(record.Timestamp{WallTime: 5_000_000_100, Logical: 7})
	fmt.Println(hlc.Now())

	// Output:
	// 5.000000000,0
	// 5.000000000,1
	// 5.000000100,8
}
