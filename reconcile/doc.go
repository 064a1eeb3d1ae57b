// Package reconcile is the anti-entropy core of pebble-ae: it decides what
// two replicas must exchange to converge and how their records reconcile. It
// imports neither Pebble nor gRPC; it reaches replicas only through its own
// small Replica interface, which the engine implements in-process and the
// plugin client implements over the network.
//
// # Sessions
//
// An anti-entropy session compares one partition of two replicas. Like
// etcd's raft, it is a pure state machine: it takes replica answers and
// returns the next requests and writes, with no time, goroutines or network
// inside. It compares root fingerprints (one round trip when the replicas
// agree), descends only into differing key ranges, exchanges (key, digest)
// lists at small ranges, fetches only the records that differ, resolves them
// and writes only to the side that is behind.
//
// # Records, clocks and causality
//
// The pure building blocks the session, the engine and the plugin share:
//
//   - Record is the canonical binary form of everything stored for a key
//     (Record.Encode, DecodeRecord): one or more Siblings (values or
//     tombstones) with their Dots and HLC Timestamps, and in causal mode a
//     VersionVector context. Equal records encode to identical bytes, which
//     is what makes Merkle fingerprints comparable across replicas.
//   - HLC is a hybrid logical clock over an injected PhysicalClock; its
//     Timestamps order LWW writes.
//   - VersionVector and Dot implement dotted version vectors (as in Riak's
//     DVV): CausalPut applies a client write with the causal context the
//     client read (EncodeContext, DecodeContext), and Sync merges two
//     replicas' records, keeping concurrent writes as siblings.
//   - Resolver reconciles two records of a key: LWW (the default mode,
//     ModeLWW), KeepSiblings (ModeCausal) or an application's ResolverFunc.
//     The engine uses the same resolver as its merge operator and when it
//     applies repaired records, so every replica converges to the same
//     record whatever order records arrive in.
//
// Errors wrap the sentinel errors of errors.go (ErrMalformedRecord,
// ErrMalformedContext, ...), to be tested with errors.Is. Records and
// version vectors are values shared by reference: no function of this
// package mutates its arguments. HLC is safe for concurrent use; everything
// else is safe for concurrent reads.
//
// # Caveats
//
//   - LWW loses concurrent writes by design: of two writes to one key the
//     one with the greater (timestamp, replica ID) survives. Use ModeCausal
//     when concurrent updates must be kept.
//   - HLC state is not persisted. After a restart with a physical clock
//     behind the last issued timestamp, a replica may issue timestamps below
//     its own earlier writes (which then win). Update the clock with the
//     greatest persisted timestamp at startup to avoid it.
//   - A remote timestamp more than the maximum clock offset ahead is not
//     adopted by HLC.Update; a record stamped by a replica with a
//     far-future clock keeps winning LWW until physical time catches up.
//   - Causal contexts are opaque to clients but not authenticated: a client
//     that forges a context can supersede siblings it never read, or keep
//     siblings it did read. It can only affect its own writes' keys.
//   - Siblings accumulate while writers keep writing without the latest
//     context; nothing bounds their number. Applications should read
//     before writing in causal mode and resolve siblings they see.
//   - Dots are counted per key and per replica ID. A replica that loses its
//     data must come back under a new ReplicaID, or its new writes may
//     reuse dots that other replicas already hold.
//   - DecodeRecord returns Values that alias its input: keep the input
//     unmodified while the record is used (Pebble values are only valid
//     until the iterator moves: copy them first).
package reconcile
