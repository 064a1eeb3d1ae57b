// Package campaign holds the reliability campaign of pebble-ae: a crash
// campaign that SIGKILLs real `pebble-ae serve` processes under write load
// and a running repair, fault injection through a loopback TCP proxy, and a
// bounded soak test with three nodes. The package's code is test support
// (a proxy, a ledger of acknowledged writes, node processes); the
// campaigns themselves are its tests:
//
//	go test ./internal/campaign                               # a few cycles
//	go test ./internal/campaign -run Crash -campaign.cycles=60 -v
//	go test ./internal/campaign -run Soak -campaign.soak=2m -v
//
// Results and how to read them are in docs/reliability.md.
//
// # Caveats
//
// The tests build cmd/pebble-ae with `go build` and listen on 127.0.0.1;
// they need a Go toolchain and loopback networking. Ports are chosen free
// before a node starts and reused across its restarts, so another process
// grabbing one in between fails the test (rare; rerun).
package campaign
