package plugin_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/plugin"
)

// openStore is a host's configuration switch: the replica in the host's
// own process, or in a plugin subprocess (here the test plugin binary; a
// real host runs `pebble-ae plugin`: plugin.Open(ctx, "pebble-ae",
// "plugin", "--dir", dir, "--id", id)). Either way the application gets an
// engine.KV.
func openStore(ctx context.Context, outOfProcess bool, dir string) (engine.KV, func(), error) {
	if outOfProcess {
		c, err := plugin.OpenWithOptions(ctx, testPluginPath, []string{"-dir", dir, "-id", "app"}, quietOpen())
		if err != nil {
			return nil, nil, err
		}
		return c, func() { _ = c.Close() }, nil
	}
	e, err := engine.Open(dir, &engine.Options{ReplicaID: "app"})
	if err != nil {
		return nil, nil, err
	}
	return e, func() { _ = e.Close() }, nil
}

// application is the host's code: it knows only engine.KV.
func application(ctx context.Context, kv engine.KV) error {
	// A batch: applied atomically, in one call.
	var b engine.WriteBatch
	b.Put([]byte("user:1"), []byte("alice"))
	b.Put([]byte("user:2"), []byte("bob"))
	b.Put([]byte("user:3"), []byte("carol"))
	b.Delete([]byte("user:2"))
	if err := kv.Write(ctx, &b, nil); err != nil {
		return err
	}
	// Many keys in one read.
	items, err := kv.GetMany(ctx, [][]byte{[]byte("user:1"), []byte("user:2")}, nil)
	if err != nil {
		return err
	}
	for _, it := range items {
		if it.Found {
			fmt.Printf("  get %s: %s\n", it.Key, it.Value)
		} else {
			fmt.Printf("  get %s: not found\n", it.Key)
		}
	}
	// A range, from one snapshot.
	_, err = kv.Scan(ctx, engine.ScanRequest{Start: []byte("user:"), End: []byte("user;")}, func(it engine.Item) error {
		fmt.Printf("  scan %s=%s\n", it.Key, it.Value)
		return nil
	})
	return err
}

// Example_store runs the same application code against the engine in
// process and against the plugin out of process.
func Example_store() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "pebble-ae-store-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	for i, outOfProcess := range []bool{false, true} {
		kv, closeStore, err := openStore(ctx, outOfProcess, fmt.Sprintf("%s/%d", dir, i))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("out of process: %t\n", outOfProcess)
		if err := application(ctx, kv); err != nil {
			log.Fatal(err)
		}
		closeStore()
	}
	// Output:
	// out of process: false
	//   get user:1: alice
	//   get user:2: not found
	//   scan user:1=alice
	//   scan user:3=carol
	// out of process: true
	//   get user:1: alice
	//   get user:2: not found
	//   scan user:1=alice
	//   scan user:3=carol
}
