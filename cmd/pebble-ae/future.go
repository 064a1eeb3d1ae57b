package main

import (
	"fmt"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"github.com/spf13/cobra"
)

// newFutureCmd is the operator's tool for records stamped in the future.
func newFutureCmd() *cobra.Command {
	f := dbFlags{existing: true}
	var dir string
	var drop, restamp bool
	c := &cobra.Command{
		Use:   "future",
		Short: "List records stamped beyond this clock plus the maximum offset, and drop or restamp them",
		Long: `future scans a stopped node's database for records stamped further ahead of
its clock than --max-clock-offset: records written while a clock was wrong,
or before the clock guard existed. Other replicas refuse such records (their
sessions report them as quarantined), and here they win last-writer-wins over
every later write until the clock catches up.

Without flags it lists them (exit 1 if there are any). --drop removes each
one from this replica only (a local deletion, not a replicated delete):
anti-entropy then brings back the version the other replicas hold, which is
right when they hold the acknowledged writes. --restamp rewrites each (LWW
mode only) with the same value, or tombstone, stamped now by this replica:
right when this replica alone holds the key, wrong when others hold later
acknowledged writes (the restamped record wins over them).`,
		Example: "  pebble-ae future --dir /tmp/n3\n  pebble-ae future --dir /tmp/n3 --drop",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if drop && restamp {
				return fmt.Errorf("--drop and --restamp exclude each other")
			}
			e, err := f.open(cmd.Context(), dir)
			if err != nil {
				return err
			}
			defer e.Close()
			if restamp && e.Mode() != record.ModeLWW {
				return fmt.Errorf("--restamp rewrites LWW records; this replica is in %s mode (use --drop)", e.Mode())
			}
			var found []engine.FutureRecord
			if _, err := e.FutureRecords(cmd.Context(), func(r engine.FutureRecord) error {
				found = append(found, r)
				return nil
			}); err != nil {
				return err
			}
			for _, r := range found {
				fmt.Printf("%q: stamped %s ahead (%s)\n", r.Key, r.Ahead.Round(time.Millisecond), time.Unix(0, r.Record.MaxWallTime()).UTC().Format(time.RFC3339))
				switch {
				case drop:
					err = e.DropRecord(cmd.Context(), r.Key, nil)
				case restamp:
					w := r.Record.Winner()
					if w.Tombstone {
						err = e.Delete(cmd.Context(), r.Key, nil)
					} else {
						err = e.Put(cmd.Context(), r.Key, w.Value, nil)
					}
				}
				if err != nil {
					return fmt.Errorf("%q: %w", r.Key, err)
				}
			}
			switch {
			case len(found) == 0:
				fmt.Printf("no records stamped beyond this clock plus %s\n", e.MaxClockOffset())
			case drop:
				fmt.Printf("dropped %d records from this replica\n", len(found))
			case restamp:
				fmt.Printf("restamped %d records\n", len(found))
			default:
				return fmt.Errorf("%d records stamped beyond this clock plus %s (--drop or --restamp deals with them)", len(found), e.MaxClockOffset())
			}
			return nil
		},
	}
	f.register(c.Flags())
	c.Flags().StringVar(&dir, "dir", "", "database directory (of a stopped node)")
	c.Flags().BoolVar(&drop, "drop", false, "remove each record from this replica (anti-entropy brings back the other replicas' versions)")
	c.Flags().BoolVar(&restamp, "restamp", false, "rewrite each record stamped now (LWW only)")
	return c
}

// printFutureRecords prints the records of e stamped in the future and
// returns how many there are.
func printFutureRecords(cmd *cobra.Command, e *engine.Engine) (int, error) {
	return e.FutureRecords(cmd.Context(), func(r engine.FutureRecord) error {
		fmt.Fprintf(cmd.OutOrStdout(), "future record %q: stamped %s ahead of this clock\n", r.Key, r.Ahead.Round(time.Millisecond))
		return nil
	})
}
