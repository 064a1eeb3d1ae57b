// Package units formats quantities for people: the CLI's output and a
// node's status lines.
package units

import "fmt"

// Bytes formats b in B, KiB or MiB: "512 B", "12.5 KiB", "40.0 MiB".
func Bytes(b uint64) string {
	switch {
	case b >= 10<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 10<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}
