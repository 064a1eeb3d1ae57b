// Package node assembles a pebble-ae node in one place: the engine, the
// Replica service over gRPC with mutual TLS, roles and the gRPC health
// service, the repair loop with every peer (throttles, admission control,
// tombstone GC, lazy rebuild and scrub), Prometheus metrics, and the
// Status and Repair calls operators use.
//
// `pebble-ae serve`, the demo's served mode and the loop benchmark all
// build their node with Open, so what runs in production is what is tested
// and measured; an application that links pebble-ae gets the same node
// with one call:
//
//	n, err := node.Open(node.Config{
//		Dir:    "/var/lib/app/n1",
//		Engine: engine.Options{ReplicaID: "n1"},
//		Listen: "10.0.0.1:7001",
//		TLS:    tlsConfig, // plugin.LoadTLSConfig(certDir, "n1")
//		Peers:  []node.Peer{{ID: "n2", Addr: "10.0.0.2:7001"}},
//	})
//	if err != nil { ... }
//	defer n.Close()
//	go n.Run(ctx)              // serve and repair until ctx ends
//	n.Engine().Put(ctx, k, v, nil) // the application's writes
//
// # Caveats
//
//   - Run must return before Close: the engine is closed under the
//     server's handlers otherwise.
//   - Tombstone GC runs in LWW mode only (causal tombstones are kept).
package node
