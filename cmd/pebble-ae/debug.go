package main

import (
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/tool"
	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"github.com/spf13/cobra"
)

func newDebugCmd() *cobra.Command {
	c := &cobra.Command{
		Use:     "debug",
		Short:   "Low-level inspection tools",
		Example: "  pebble-ae debug pebble db lsm /tmp/r1",
	}
	// Pebble's own tool, with the engine's merger registered so its
	// commands (db scan, db lsm, sstable ...) work on pebble-ae directories.
	t := tool.New(tool.Mergers(engine.Merger(record.KeepSiblings{}, nil)), tool.DefaultComparer(pebble.DefaultComparer))
	p := &cobra.Command{
		Use:     "pebble",
		Short:   "Pebble's inspection tool (db, sstable, wal, manifest ...) with pebble-ae's merger",
		Example: "  pebble-ae debug pebble db lsm /tmp/r1\n  pebble-ae debug pebble db scan /tmp/r1",
	}
	for _, sub := range t.Commands {
		p.AddCommand(sub)
	}
	c.AddCommand(p)
	return c
}
