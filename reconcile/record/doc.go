// Package record is pebble-ae's record model: the pure building blocks that
// sessions, the engine, the plugin and the tests share. It imports nothing
// of pebble-ae, Pebble or gRPC, and does no I/O.
//
//   - Record is the canonical binary form of everything stored for a key
//     (Record.Encode, DecodeRecord): one or more Siblings (values or
//     tombstones) with their Dots and HLC Timestamps, and in causal mode a
//     VersionVector context. Equal records encode to identical bytes, which
//     is what makes Merkle fingerprints comparable across replicas.
//   - HLC is a hybrid logical clock over an injected PhysicalClock; its
//     Timestamps order LWW writes. It never moves further than its maximum
//     offset beyond the physical clock (ErrClockOffset).
//   - VersionVector and Dot implement dotted version vectors (as in Riak's
//     DVV): CausalPut applies a client write with the causal context the
//     client read (EncodeContext, DecodeContext), and Sync merges two
//     replicas' records, keeping concurrent writes as siblings.
//   - Resolver reconciles two records of a key: LWW (the default mode,
//     ModeLWW), KeepSiblings (ModeCausal) or an application's ResolverFunc.
//     The engine uses the same resolver as its merge operator and when it
//     applies repaired records, so every replica converges to the same
//     record whatever order records arrive in.
//   - ReplicaID names a replica (a node, a certificate's common name).
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
package record
