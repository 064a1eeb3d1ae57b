//go:build linux

package bench

import (
	"fmt"
	"os"
	"time"
)

// threadSchedStat returns, for the calling OS thread, the time it has run
// on a CPU and the time it has waited, runnable, for one
// (/proc/thread-self/schedstat). The caller must be locked to its thread
// (runtime.LockOSThread) for the figures to be its own.
func threadSchedStat() (run, wait time.Duration, ok bool) {
	b, err := os.ReadFile("/proc/thread-self/schedstat")
	if err != nil {
		return 0, 0, false
	}
	var r, w, slices int64
	if _, err := fmt.Sscan(string(b), &r, &w, &slices); err != nil {
		return 0, 0, false
	}
	return time.Duration(r), time.Duration(w), true
}
