package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/spf13/cobra"
)

// recordingDryRun is a dryRun that remembers the keys it would write.
type recordingDryRun struct {
	reconcile.Replica
	keys map[uint32][][]byte
}

func (d *recordingDryRun) Apply(ctx context.Context, part uint32, entries []reconcile.Entry) error {
	for _, e := range entries {
		d.keys[part] = append(d.keys[part], append([]byte(nil), e.Key...))
	}
	return nil
}

type diffReport struct {
	A, B       string          `json:"-"`
	Partitions []diffPartition `json:"partitions"`
	Stats      reconcile.Stats `json:"-"`
	Rounds     int             `json:"rounds"`
	Bytes      uint64          `json:"bytes"`
}

type diffPartition struct {
	ID      uint32   `json:"id"`
	BehindA []string `json:"keys_behind_on_a"`
	BehindB []string `json:"keys_behind_on_b"`
}

func newDiffCmd() *cobra.Command {
	var f dbFlags
	var asJSON bool
	var svg string
	c := &cobra.Command{
		Use:   "diff A B",
		Short: "Compare two replicas without repairing: differing partitions and keys",
		Example: `  pebble-ae diff /tmp/r1 /tmp/r2
  pebble-ae diff --svg heatmap.svg /tmp/r1 /tmp/r2`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			a, b, closeAll, err := openPair(ctx, &f, args[0], args[1])
			if err != nil {
				return err
			}
			defer closeAll()
			ra := &recordingDryRun{Replica: a, keys: map[uint32][][]byte{}}
			rb := &recordingDryRun{Replica: b, keys: map[uint32][][]byte{}}
			all, err := reconcile.SyncAll(ctx, ra, rb, reconcile.SyncOptions{})
			if err != nil {
				return err
			}
			rep := diffReport{}
			for _, s := range all {
				rep.Rounds += s.Rounds
				rep.Bytes += s.BytesTotal()
				p := diffPartition{ID: s.Partition}
				for _, k := range ra.keys[s.Partition] {
					p.BehindA = append(p.BehindA, string(k))
				}
				for _, k := range rb.keys[s.Partition] {
					p.BehindB = append(p.BehindB, string(k))
				}
				sort.Strings(p.BehindA)
				sort.Strings(p.BehindB)
				rep.Partitions = append(rep.Partitions, p)
			}
			if svg != "" {
				if err := writeHeatmap(ctx, svg, a, b); err != nil {
					return err
				}
			}
			if asJSON {
				return printJSON(rep)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PARTITION\tA BEHIND\tB BEHIND\tFIRST KEY\tLAST KEY")
			differ := 0
			for _, p := range rep.Partitions {
				keys := append(append([]string{}, p.BehindA...), p.BehindB...)
				sort.Strings(keys)
				first, last := "-", "-"
				if len(keys) > 0 {
					first, last = fmt.Sprintf("%q", keys[0]), fmt.Sprintf("%q", keys[len(keys)-1])
					differ++
				}
				fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\n", p.ID, len(p.BehindA), len(p.BehindB), first, last)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d of %d partitions differ (%d rounds, %s compared)\n", differ, len(rep.Partitions), rep.Rounds, human(rep.Bytes))
			return nil
		},
	}
	f.register(c.Flags())
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().StringVar(&svg, "svg", "", "write a heatmap of the trees' divergence to this SVG file")
	return c
}

func newRepairCmd() *cobra.Command {
	var f dbFlags
	c := &cobra.Command{
		Use:     "repair A B",
		Short:   "Run one anti-entropy session between two replicas now",
		Example: "  pebble-ae repair /tmp/r1 /tmp/r2",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			a, b, closeAll, err := openPair(ctx, &f, args[0], args[1])
			if err != nil {
				return err
			}
			defer closeAll()
			bar := newProgress(cmd.ErrOrStderr(), "repair")
			st, err := syncAllProgress(ctx, a, b, bar, false)
			bar.done()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ROUNDS\tBYTES\tMETADATA\tRECORDS\tREPAIRED A\tREPAIRED B\tCONVERGED\tTIME")
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%t\t%s\n", st.Rounds, human(st.BytesTotal()), human(st.BytesMetadata()), human(st.BytesRecords()),
				st.A.KeysRepaired, st.B.KeysRepaired, st.Converged, st.Duration.Round(time.Millisecond))
			return tw.Flush()
		},
	}
	f.register(c.Flags())
	return c
}

// openPair opens two replica directories with the same tree flags. The
// replica IDs come from the directories' names unless --id is given.
func openPair(ctx context.Context, f *dbFlags, da, db string) (reconcile.Replica, reconcile.Replica, func(), error) {
	fa, fb := *f, *f
	if fa.id == "local" {
		fa.id, fb.id = "a", "b"
	}
	a, err := fa.open(ctx, da)
	if err != nil {
		return nil, nil, nil, err
	}
	b, err := fb.open(ctx, db)
	if err != nil {
		a.Close()
		return nil, nil, nil, err
	}
	if err := a.WaitReady(ctx); err != nil {
		return nil, nil, nil, err
	}
	if err := b.WaitReady(ctx); err != nil {
		return nil, nil, nil, err
	}
	return a, b, func() { a.Close(); b.Close() }, nil
}

// writeHeatmap draws each partition as a row of cells, one per child range
// of A's tree (up to 256), coloured by whether B's fingerprint of the same
// range differs, and how much.
func writeHeatmap(ctx context.Context, path string, a, b reconcile.Replica) error {
	info, err := a.Info(ctx)
	if err != nil {
		return err
	}
	const cell, width = 4, 256
	var body bytes.Buffer
	y := 30
	for _, p := range info.Partitions {
		rh, err := a.RangeHash(ctx, reconcile.RangeHashRequest{Partition: p.ID, Ranges: []reconcile.KeyRange{p.Range}, Fanout: width, Depth: 1})
		if err != nil {
			return err
		}
		kids := rh[0].Children
		if len(kids) == 0 {
			kids = []reconcile.Child{{Range: p.Range, Fingerprint: rh[0].Fingerprint}}
		}
		ranges := make([]reconcile.KeyRange, len(kids))
		for i, k := range kids {
			ranges[i] = k.Range
		}
		other, err := b.RangeHash(ctx, reconcile.RangeHashRequest{Partition: p.ID, Ranges: ranges})
		if err != nil {
			return err
		}
		fmt.Fprintf(&body, `<text x="4" y="%d" font-size="10">partition %d</text>`+"\n", y-4, p.ID)
		for i, k := range kids {
			fill := "#2e9e44"
			title := "equal"
			if other[i].Fingerprint != k.Fingerprint {
				d := int64(k.Fingerprint.Count) - int64(other[i].Fingerprint.Count)
				fill, title = "#d73027", fmt.Sprintf("differs (keys %d vs %d)", k.Fingerprint.Count, other[i].Fingerprint.Count)
				if d == 0 {
					fill = "#fc8d59"
				}
			}
			fmt.Fprintf(&body, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"><title>[%s, %s): %s</title></rect>`+"\n",
				4+i*cell, y, cell, 16, fill, xmlEscape(string(k.Range.Start)), xmlEscape(string(k.Range.End)), title)
		}
		y += 36
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&out, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">`+"\n", 8+width*cell, y, 8+width*cell, y)
	fmt.Fprintf(&out, `<text x="4" y="14" font-size="12">pebble-ae diff: one cell per key range of the tree, in key order; green equal, red different</text>`+"\n")
	out.Write(body.Bytes())
	out.WriteString("</svg>\n")
	return os.WriteFile(path, out.Bytes(), 0o644)
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(fmt.Sprintf("%q", s)))
	return b.String()
}

var _ io.Writer = (*bytes.Buffer)(nil)
