package engine_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/reconcile"
)

// Example is the README's "use it from Go" example: two replicas diverge,
// one anti-entropy session repairs them.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "pebble-ae-example-")
	defer os.RemoveAll(dir)

	// Open two replicas. Every write keeps each one's Merkle tree current.
	a, err := engine.Open(dir+"/a", &engine.Options{ReplicaID: "a"})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	b, err := engine.Open(dir+"/b", &engine.Options{ReplicaID: "b"})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	// Writes that reached only one replica each.
	_ = a.Put(ctx, []byte("user:1"), []byte("alice"), nil)
	_ = b.Put(ctx, []byte("user:2"), []byte("bob"), nil)
	_ = a.Delete(ctx, []byte("user:3"), nil)

	// One session per partition: compare roots, descend into differing
	// ranges, move only the differing records.
	stats, err := reconcile.SyncAll(ctx, a, b, reconcile.SyncOptions{})
	if err != nil {
		log.Fatal(err)
	}
	v, _ := b.Get(ctx, []byte("user:1"))
	fmt.Printf("b has user:1 = %s\n", v)
	v, _ = a.Get(ctx, []byte("user:2"))
	fmt.Printf("a has user:2 = %s\n", v)
	fmt.Printf("converged: %t, keys repaired: %d\n", stats[0].Converged, stats[0].KeysRepaired())
	// Output:
	// b has user:1 = alice
	// a has user:2 = bob
	// converged: true, keys repaired: 3
}
