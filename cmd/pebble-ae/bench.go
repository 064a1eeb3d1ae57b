package main

import (
	"fmt"

	"github.com/pebble-ae/pebble-ae/internal/bench"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/spf13/cobra"
)

func newBenchCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "bench",
		Short: "Measure pebble-ae against its baselines, side by side in one run",
	}
	c.AddCommand(newBenchWriteCmd(), newBenchRebuildCmd())
	return c
}

func newBenchWriteCmd() *cobra.Command {
	var cfg bench.WriteConfig
	var mode string
	var asJSON bool
	c := &cobra.Command{
		Use:   "write",
		Short: "Write path: engine Put vs raw Pebble Set (LWW) or Get+Set (causal)",
		Example: `  pebble-ae bench write --keys 1000000 --json
  pebble-ae bench write --keys 200000 --mode causal`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := reconcile.ParseMode(mode)
			if err != nil {
				return err
			}
			cfg.Mode = m
			res, err := bench.Write(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(res)
			}
			fmt.Printf("%s write path, %d keys (%d-byte keys, %d-byte values, batches of %d, NoSync)\n", res.Mode, res.Keys, cfg.KeySize, cfg.ValueSize, res.BatchSize)
			fmt.Printf("  engine:  %10.0f ops/s\n  %s: %10.0f ops/s\n  ratio:   %10.3f\n", res.EngineOpsPerSec, res.Baseline, res.PebbleOpsPerSec, res.Ratio)
			return nil
		},
	}
	c.Flags().IntVar(&cfg.Keys, "keys", 1_000_000, "number of writes")
	c.Flags().IntVar(&cfg.KeySize, "key-size", 16, "key size in bytes")
	c.Flags().IntVar(&cfg.ValueSize, "value-size", 100, "value size in bytes")
	c.Flags().IntVar(&cfg.BatchSize, "batch", 100, "writes per batch (LWW)")
	c.Flags().StringVar(&mode, "mode", "lww", "write mode: lww or causal")
	c.Flags().StringVar(&cfg.Dir, "dir", "", "scratch directory (default: a temporary directory)")
	c.Flags().Uint64Var(&cfg.Seed, "seed", 1, "seed of the keys")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func newBenchRebuildCmd() *cobra.Command {
	var cfg bench.RebuildConfig
	var asJSON bool
	c := &cobra.Command{
		Use:     "rebuild",
		Short:   "Tree rebuild speed vs a plain Pebble scan + BLAKE3 loop over the same data",
		Example: "  pebble-ae bench rebuild --keys 1000000 --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := bench.Rebuild(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(res)
			}
			fmt.Printf("rebuild of %d keys\n  tree rebuild:     %10.0f keys/s\n  scan + BLAKE3:    %10.0f keys/s\n  ratio:            %10.3f\n  tree memory:      %d bytes (%d leaves, %.1f bytes/key)\n",
				res.Keys, res.KeysPerSec, res.ScanHashKeysPerSec, res.Ratio, res.TreeMemoryBytes, res.Leaves, float64(res.TreeMemoryBytes)/float64(res.Keys))
			return nil
		},
	}
	c.Flags().IntVar(&cfg.Keys, "keys", 1_000_000, "number of keys")
	c.Flags().Uint32Var(&cfg.LeafSize, "leaf-size", 0, "expected keys per leaf (default 64)")
	c.Flags().StringVar(&cfg.Dir, "dir", "", "scratch directory (default: a temporary directory)")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}
