package engine

import (
	"os"
	"runtime"
)

// BackgroundProcs is the most CPU-bound background goroutines an engine
// opened with o runs at once: Pebble's compactions (the upper bound of
// Pebble.CompactionConcurrencyRange; 1 by default) and one memtable
// flush.
func BackgroundProcs(o *Options) int {
	upper := 1
	if o != nil && o.Pebble != nil && o.Pebble.CompactionConcurrencyRange != nil {
		_, upper = o.Pebble.CompactionConcurrencyRange()
	}
	return max(upper, 1) + 1
}

// ReserveProcs raises GOMAXPROCS by BackgroundProcs(o) in a process that
// serves an engine opened with o, unless the GOMAXPROCS environment
// variable is set (the operator's choice stands). It returns GOMAXPROCS
// before and after. Call it once, before the engine opens, in a process
// that exists to serve the engine (pebble-ae plugin does, through
// plugin.ServePlugin); an application linking the engine decides for its
// own process.
//
// Why: compactions and flushes are CPU-bound goroutines that run for
// milliseconds to seconds. With GOMAXPROCS at the number of cores, when
// they hold every P, a goroutine that serves a request (the gRPC
// transport's reader, the write handler) waits for Go's preemption, after
// 10 ms; with a P to spare it runs at once, and the kernel shares the
// cores between threads at its finer grain. A request that crosses two
// processes passes through several such goroutines in each. Measured on
// the 2-core VM, synced batches of 100 from 8 writers through the plugin
// (docs/benchmarks.md): 0.73-0.76 of in process with GOMAXPROCS 2 in the
// plugin, 0.83-0.91 with 4; the in-process side did not gain from 4.
func ReserveProcs(o *Options) (before, after int) {
	before = runtime.GOMAXPROCS(0)
	if os.Getenv("GOMAXPROCS") != "" {
		return before, before
	}
	after = before + BackgroundProcs(o)
	runtime.GOMAXPROCS(after)
	return before, after
}
