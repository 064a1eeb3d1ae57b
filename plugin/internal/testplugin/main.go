// Command testplugin is a minimal plugin binary for the plugin package's
// subprocess tests: it serves an engine in -dir through plugin.ServePlugin,
// as `pebble-ae plugin` does.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

func main() {
	dir := flag.String("dir", "", "engine directory")
	id := flag.String("id", "", "replica ID")
	mode := flag.String("mode", "lww", "write mode: lww or causal")
	leafSize := flag.Uint("leaf-size", 0, "expected keys per leaf (0: default)")
	flag.Parse()
	m, err := record.ParseMode(*mode)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	err = plugin.ServePlugin(*dir, &engine.Options{
		ReplicaID: record.ReplicaID(*id),
		Mode:      m,
		Tree:      merkle.Params{LeafSize: uint32(*leafSize)},
	}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
