// Package repair runs anti-entropy continuously: it is the operations layer
// above the engine and the session protocol (package reconcile), and the
// only one that owns time, goroutines and logs.
//
//   - Loop repairs every (partition, peer) pair on a jittered, adaptive
//     schedule (Scheduler), in bounded sessions that each finish and apply
//     their part, reports each session (SessionReport) and each complete
//     round with every peer of a partition (FullRound, the watermark that
//     makes tombstone purges safe), and runs background Tasks (rebuild,
//     scrub, tombstone GC).
//   - Throttle paces what sessions read and what repairs write (token
//     buckets of bytes and keys, and a busy-time budget in cores);
//     ThrottledReplica charges a replica's calls to them.
//   - Admission scales the throttles down when the foreground suffers
//     (Pebble's L0 sublevels and compaction debt, slow disk operations, a
//     sustained rise of foreground write latency measured against its own
//     noise) and up again when it recovers, never below the repair floor
//     (AdmissionConfig.MinScale), so repair never stops.
//
// The engine knows none of this: it offers hooks (Options.Hooks,
// Options.ObserveForeground), a throttle function (Options.Throttle) and a
// tombstone collector (engine.TombstoneGC.MarkSafe, Collect) that this
// package drives. Package plugin/node assembles all of it into a node.
package repair
