// Package plugin serves a pebble-ae replica over gRPC and reaches one: the
// pebbleae.v1.Replica service (proto/pebbleae/v1/replica.proto, generated
// code in gen/pebbleae/v1), a server adapter over *engine.Engine and a
// Client that implements reconcile.Replica and engine.KV, the
// application's key-value interface that *engine.Engine implements too. The
// same service runs over three transports:
//
//   - in process: InProcess(e, ...) over gRPC's bufconn (real framing,
//     encoding and limits, no sockets);
//   - as a hashicorp/go-plugin subprocess: the host calls Open(ctx, path,
//     args...) and the plugin binary (`pebble-ae plugin`) calls ServePlugin
//     or Serve. gRPC only, AutoMTLS, optional SHA-256 checksum of the
//     binary (OpenOptions.Checksum), hclog logging, the plugin dies with its
//     host on Linux (PR_SET_PDEATHSIG), Ping detects a dead plugin and
//     Restart starts a new one;
//   - over the network: ListenAndServe(ctx, e, addr, tlsConfig, ...) and
//     Dial(ctx, addr, tlsConfig, wantPeerID, ...) with mutual TLS.
//     GenerateCerts makes a CA and node certificates; LoadTLSConfig loads
//     them.
//
// # Identity
//
// A node's replica ID is the Subject Common Name of its certificate. Dial
// refuses a server whose certificate does not chain to the CA or does not
// name wantPeerID, and checks that the replica answers Info with that ID;
// a server requires a client certificate from the CA and, with
// ListenOptions.AllowPeer, an accepted replica ID; it refuses to start with
// a certificate naming another replica than its engine. Plaintext needs an
// explicit Insecure option and a loopback address, on both sides.
//
// # Errors
//
// errors.go is the one place where Go errors become status codes and back.
// The server sends every sentinel the error matched (engine.ErrBadRequest,
// merkle.ErrInvalidRange, ...) by name in a google.rpc.ErrorInfo detail;
// the client returns an *Error that matches them with errors.Is, so
// errors.Is(err, engine.ErrNotFound) works across the wire. Codes:
// INVALID_ARGUMENT (malformed requests: inverted ranges, fan-out or depth
// out of range, bad keys, undecodable records), NOT_FOUND (absent key,
// unknown partition), RESOURCE_EXHAUSTED (too many keys or ranges, value or
// message too large; also matches ErrLimitExceeded), FAILED_PRECONDITION
// (tree not ready, wrong write mode), UNAVAILABLE (engine closed, plugin
// dead, connection broken; matches ErrUnavailable), DEADLINE_EXCEEDED and
// CANCELED (match the context errors), UNIMPLEMENTED (Repair without a
// repair loop: ErrRepairUnavailable), INTERNAL (a recovered panic:
// ErrInternal). A rejected request changes nothing.
//
// # Limits
//
// Messages are bounded on both sides (DefaultMaxMessageSize, 64 MiB; the
// go-plugin server is configured too, its gRPC default being 4 MiB).
// Requests carry at most engine.MaxKeysPerRequest keys and
// engine.MaxRanges ranges. A Write over the message limit fails before it
// is sent (ErrLimitExceeded); stream it with a Loader instead. Flow
// control windows are DefaultWindowSize (8 MiB) a stream, so that a Scan's
// server runs ahead of its client. RangeScan streams one page in chunks of at most
// ServerOptions.ScanChunkBytes, reading records from the engine 64 at a
// time, and ends a page early (more = true) at ServerOptions.MaxScanBytes.
// Record-carrying messages of at least CompressAbove bytes (default 32 KiB)
// are gzip-compressed: Fetch answers and RangeScan pages by the server,
// Apply requests by the client.
//
// # The application's store
//
// Client implements engine.KV with the same RPCs whatever the transport
// (see store.go): Write (a WriteBatch in one call, atomic on the replica:
// one Pebble batch, one pass of the write hooks; its writes packed in one
// bytes field), WriteSession (the same batches on one long-lived stream,
// one at a time, each acknowledged with its own error: what the client
// uses for Put, Delete and Write, since a stream message costs less than a
// call; session.go), WriteStream (bulk loads through a Loader: messages of
// about 1 MiB, each atomic, paced by gRPC's flow control, the last one
// synced), GetMany (many keys from one snapshot, with versions in causal
// mode) and Scan (a user key range from one snapshot, server-streamed in
// packed chunks of ServerOptions.StoreScanChunkBytes, 4 MiB, sent by a
// second goroutine while the first reads on, with a limit and a
// pagination token). Put, Delete and
// Write calls of concurrent callers are grouped into shared calls while
// four synced (two unsynced) are in flight (group commit across the RPC
// layer, coalesce.go).
// A host that takes an engine.KV runs unchanged in process (an
// *engine.Engine) and out of process (a *Client from Open): see
// Example_store. The CLI's scan uses the same Scan call.
//
// # Bytes on the wire
//
// Client.WireStats counts, with a gRPC stats handler, the protobuf bytes
// plus the 5-byte message header of every message (Payload*, what the
// reconcile wire model predicts: the messages follow it field for field)
// and the same after compression (Wire*). Without compression a session's
// measured payload equals its Stats.BytesTotal() (see
// TestWireBytesMatchSessionAccounting).
//
// # Caveats
//
//   - The parent-death signal is delivered when the host thread that
//     started the plugin exits; do not call Open from a goroutine locked to
//     its OS thread (runtime.LockOSThread) that later exits.
//   - A plugin killed with SIGKILL loses its writes that were not synced
//     (engine.NoSync); the tree itself is crash-consistent and recovers on
//     Restart.
//   - RangeScan pages of several chunks (and pages read from the engine in
//     sub-pages) are not one snapshot: writes racing a scan may or may not
//     appear, as with separate pages. Sessions tolerate this.
//   - A client's rights come from ListenOptions.Roles (Role: peer, writer,
//     reader); without Roles every accepted identity may call every
//     method, writes included. The serve command always sets Roles.
//   - A Scan is one snapshot for the whole call; its pages (limit and the
//     returned next key) are separate calls and separate snapshots.
//   - A Loader's load is not atomic as a whole: each message is. After a
//     failure the messages before the refused one stay applied.
//
// Regenerate the code with generate.sh (buf and local protoc-gen-go /
// protoc-gen-go-grpc, see buf.gen.yaml); the mocks with go generate
// ./plugin/mock.
package plugin

//go:generate sh generate.sh
