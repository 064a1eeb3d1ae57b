// Package hooks is the write-hook contract of pebble-ae.
//
// Every batch committed through the engine passes each hook twice: PreCommit
// runs before the Pebble batch is applied and may add operations to the very
// same Pebble batch (so they commit atomically with the user's writes);
// PostCommit runs after the apply, with its error, whenever PreCommit
// succeeded. Merkle tree maintenance is a hook; an application may add its own
// (a change feed, say) and combine them with Tee.
//
// # Caveats
//
// Hooks run on the write path of every batch. They must not read from Pebble
// in the default (blind) write mode: a read costs 5-10x write throughput.
// A hook's PreCommit must not retain the Batch after PostCommit returns.
package hooks
