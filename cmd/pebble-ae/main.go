// Command pebble-ae is active anti-entropy for Pebble: a demo of replicas
// converging, a node daemon and plugin, and tools to inspect, verify, repair
// and benchmark pebble-ae databases.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "pebble-ae: %v\n", oneLine(err))
		var ec exitCoder
		if errors.As(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}

// exitCoder is an error that chooses the process's exit code.
type exitCoder interface{ ExitCode() int }

type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }
func (e exitError) ExitCode() int { return e.code }

func oneLine(err error) string {
	s := err.Error()
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "pebble-ae",
		Short: "Active anti-entropy for Pebble",
		Long: `pebble-ae keeps an on-disk Merkle tree current with every write to a Pebble
database and repairs diverged replicas in the background, moving only the
records that differ.

Start with:  pebble-ae demo`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newDemoCmd(),
		newPutCmd(), newGetCmd(), newDelCmd(), newScanCmd(),
		newStatusCmd(), newVerifyCmd(), newRebuildCmd(), newFutureCmd(),
		newDiffCmd(), newRepairCmd(),
		newBenchCmd(),
		newDebugCmd(),
		newPluginCmd(), newServeCmd(), newCertsCmd(),
	)
	return root
}
