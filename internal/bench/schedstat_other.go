//go:build !linux

package bench

import "time"

// threadSchedStat is not measured on this system.
func threadSchedStat() (run, wait time.Duration, ok bool) { return 0, 0, false }
