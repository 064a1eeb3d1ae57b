// Package merkle keeps one Merkle tree per partition of a Pebble DB's user
// keys, current with every write and crash-consistent, without reading on
// the write path.
//
// A partition (Partitioner: one, split points, or a fixed-length prefix)
// is a contiguous key range. Its tree's leaves are contiguous key ranges of
// the data itself, cut at content-defined boundary keys (Params), so
// replicas holding the same keys have the same leaves. A leaf's value is
// the sum of its records' leaf digests modulo 2^256 and their count; any
// range's fingerprint is a sum, so inner nodes are never stored.
//
// The write hook (Tree.Hook, a hooks.Hook) marks the written key's leaf
// dirty in memory and, once per leaf per checkpoint generation, adds a
// dirty marker to the same batch. Dirty leaves are recomputed lazily, from
// a snapshot, when a query needs them (Recompute; Options.SpanObserver sees
// every scan before its leaves are installed). Checkpoint persists the
// leaves that changed; Open loads them and recomputes only what the
// markers name. Rebuild recomputes a partition from scratch; Verify checks
// the tree against the data.
//
// Place: merkle imports Pebble, hooks, internal/digest and
// internal/keyspace; it knows nothing of records, sessions, the engine or
// the network. The engine (package engine) owns the DB and runs the hook.
//
// # Caveats
//
//   - Every batch written to the DB's user keys must go through the hook;
//     a write behind its back leaves the tree wrong until a rebuild.
//   - Work under the tree's lock is proportional to what changed: a
//     checkpoint visits the leaves changed or dirtied since the last one
//     (it walked every leaf until 2026-12-06: ~15 ms at the 1.56 million
//     leaves of 10^8 keys, while writes waited), a recompute its dirty
//     spans. Tree.MemoryBytes and Verify still visit every leaf.
package merkle
