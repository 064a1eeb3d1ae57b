// Package fuzz holds the fuzz targets of pebble-ae: every decoder and every
// algebraic law the replicas rely on to converge.
//
// The targets live in _test.go files; this package has no other code. Their
// seed corpora (the f.Add calls, each commented with what it exercises, plus
// testdata/fuzz/<Target>/ for crashers found by fuzzing) run as ordinary
// tests under `go test ./fuzz`. To fuzz one target:
//
//	go test ./fuzz -run '^$' -fuzz '^FuzzRecordCodec$' -fuzztime 1m
//
// Targets:
//
//   - FuzzRecordCodec: DecodeRecord never panics, and accepts exactly the
//     canonical encodings of valid records, in format 1 or 2 (decode then
//     encode in the input's format is the identity on accepted bytes; the
//     other format decodes to the same record).
//   - FuzzRecordRoundTrip: records built from fuzz input survive
//     encode/decode unchanged, and encode canonically.
//   - FuzzSyncLaws: Sync (and the KeepSiblings resolver) is commutative,
//     associative and idempotent.
//   - FuzzVersionVectorMergeLaws: Merge is a join; Compare agrees with
//     Descends.
//   - FuzzContextCodec: DecodeContext never panics and accepts exactly
//     canonical contexts; contexts round-trip.
//   - FuzzHLCMonotonic: HLC timestamps strictly increase, stay at or above
//     physical time, pass every adopted remote timestamp, and never adopt a
//     remote timestamp beyond the maximum offset.
//   - FuzzTreeOps: programs of sets, deletes, range deletions, batches,
//     checkpoints, reopens, rebuilds and range queries on a real Pebble
//     tree, checked against a model and Verify.
//   - FuzzSession: the session state machine fed arbitrary, malformed or
//     lying answers never panics and never applies an unjustified write.
//   - FuzzGRPCWireRequests, FuzzGRPCStructuredRequests: every gRPC request
//     type through the server's validation against real engines (the
//     application's Write with its packed writes, GetMany and Scan
//     included).
//   - FuzzParsePeers, FuzzParseSplits: the CLI's structured flags.
//
// fuzz/run.sh runs every target of the module for a given duration each.
//
// # Caveats
//
// Fuzzing runs until stopped or -fuzztime expires; crashers are written to
// testdata/fuzz and must be committed with the fix so they run as seeds.
package fuzz
