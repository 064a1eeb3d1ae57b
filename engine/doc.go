// Package engine opens a Pebble database, owns its key space (user keys
// below keyspace.InternalPrefix, pebble-ae's state above it) and runs the
// write-hook pipeline (the Merkle tree's hook first) on every batch, so
// that every write keeps the tree current in the same atomic commit. An
// *Engine implements the anti-entropy contract (reconcile.Replica and its
// capabilities) and the application's key-value interface, KV: Put,
// Delete, Get, the causal calls, Write of a WriteBatch, GetMany and Scan.
// The plugin package's Client implements KV too, over gRPC, so an
// application written against KV runs in process or against a plugin
// subprocess alike.
//
// engine imports hooks, merkle, reconcile (the record model and the
// contract) and internal packages; it knows nothing of the repair loop, of
// gRPC or of the plugin, which import it.
package engine
