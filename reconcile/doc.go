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
// # Records
//
// The records sessions move, their clocks, version vectors and resolvers
// are the record model of package reconcile/record, which this package and
// the engine share. Sessions compare fingerprints of encoded records and
// resolve the records that differ with the resolver both replicas use.
//
// # Operations
//
// Running sessions continuously (the scheduler, the throttles, the repair
// loop, admission control and tombstone GC) is package reconcile/repair's
// work, above the engine; this package does no I/O of its own.
package reconcile
