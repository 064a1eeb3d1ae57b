//go:build unix

package bench

import "syscall"

// processCPUSeconds returns the CPU time (user + system) the process has
// used so far, on every thread: the foreground loop's and Pebble's
// background flushes and compactions alike.
func processCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
