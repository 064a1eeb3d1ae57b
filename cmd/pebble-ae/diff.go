package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pebble-ae/pebble-ae/internal/cliflags"
	"github.com/pebble-ae/pebble-ae/internal/units"
	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

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
	f := dbFlags{existing: true}
	var rf remoteFlags
	var asJSON bool
	var svg string
	c := &cobra.Command{
		Use:   "diff A B",
		Short: "Compare two replicas without repairing: differing partitions and keys",
		Example: `  pebble-ae diff /tmp/r1 /tmp/r2
  pebble-ae diff --svg heatmap.svg /tmp/r1 /tmp/r2
  pebble-ae diff --certs /tmp/certs --as n1 n2=127.0.0.1:7002 n3=127.0.0.1:7003`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			a, b, closeAll, err := openPair(ctx, &f, &rf, args[0], args[1])
			if err != nil {
				return err
			}
			defer closeAll()
			ra := &dryRun{Replica: a, keys: map[uint32][][]byte{}}
			rb := &dryRun{Replica: b, keys: map[uint32][][]byte{}}
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
			fmt.Fprintf(cmd.OutOrStdout(), "%d of %d partitions differ (%d rounds, %s compared)\n", differ, len(rep.Partitions), rep.Rounds, units.Bytes(rep.Bytes))
			return nil
		},
	}
	f.register(c.Flags())
	rf.register(c.Flags())
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().StringVar(&svg, "svg", "", "write a heatmap of the trees' divergence to this SVG file")
	return c
}

func newRepairCmd() *cobra.Command {
	var f dbFlags
	var rf remoteFlags
	var maxPending int64
	c := &cobra.Command{
		Use:     "repair A B",
		Short:   "Run one anti-entropy session between two replicas now",
		Example: "  pebble-ae repair /tmp/r1 /tmp/r2\n  pebble-ae repair --certs /tmp/certs --as n1 /tmp/n1 n2=127.0.0.1:7002",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if maxPending < 0 {
				return fmt.Errorf("--session-memory %d: negative", maxPending)
			}
			a, b, closeAll, err := openPair(ctx, &f, &rf, args[0], args[1])
			if err != nil {
				return err
			}
			defer closeAll()
			bar := newProgress(cmd.ErrOrStderr(), "repair")
			st, err := syncAllProgress(ctx, a, b, bar, false, maxPending)
			bar.done()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ROUNDS\tBYTES\tMETADATA\tRECORDS\tREPAIRED A\tREPAIRED B\tCONVERGED\tTIME")
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%t\t%s\n", st.Rounds, units.Bytes(st.BytesTotal()), units.Bytes(st.BytesMetadata()), units.Bytes(st.BytesRecords()),
				st.A.KeysRepaired, st.B.KeysRepaired, st.Converged, st.Duration.Round(time.Millisecond))
			if err := tw.Flush(); err != nil {
				return err
			}
			if st.Quarantined > 0 {
				keys := make([]string, len(st.QuarantinedKeys))
				for i, k := range st.QuarantinedKeys {
					keys[i] = fmt.Sprintf("%q", k)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "quarantined: %d records stamped beyond a replica's clock plus its maximum offset, not applied (%s); see pebble-ae future\n",
					st.Quarantined, strings.Join(keys, " "))
			}
			return nil
		},
	}
	f.register(c.Flags())
	rf.register(c.Flags())
	c.Flags().Int64Var(&maxPending, "session-memory", reconcile.DefaultMaxPendingBytes, sessionMemoryUsage)
	return c
}

// sessionMemoryUsage is the help of repair's and serve's --session-memory.
const sessionMemoryUsage = "bytes of records a session holds before it applies its writes; it lists and fetches at most this/256 keys a round"

// remoteFlags select how diff, repair and status reach a replica given as
// id=host:port instead of a directory.
type remoteFlags struct {
	certs    string
	as       string
	insecure bool
}

func (r *remoteFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&r.certs, "certs", "", "for id=host:port replicas: directory with ca.crt and this client's certificate")
	fs.StringVar(&r.as, "as", "", "for id=host:port replicas: the certificate (replica ID) this client presents")
	fs.BoolVar(&r.insecure, "insecure", false, "for id=host:port replicas on loopback: plaintext")
}

// isRemote reports whether arg names a served replica (id=host:port)
// rather than a directory.
func isRemote(arg string) bool {
	id, addr, ok := strings.Cut(arg, "=")
	if !ok || id == "" || strings.ContainsAny(id, "/\\") {
		return false
	}
	_, _, err := net.SplitHostPort(addr)
	return err == nil
}

// dialRemote connects to a served replica given as id=host:port.
func (r *remoteFlags) dial(ctx context.Context, arg string) (*plugin.Client, error) {
	ps, err := cliflags.ParsePeers(arg)
	if err != nil {
		return nil, err
	}
	var cfg *tls.Config
	if !r.insecure {
		if r.certs == "" || r.as == "" {
			return nil, fmt.Errorf("replica %s: pass --certs and --as (or --insecure on loopback)", arg)
		}
		if cfg, err = plugin.LoadTLSConfig(r.certs, record.ReplicaID(r.as)); err != nil {
			return nil, err
		}
	}
	return plugin.Dial(ctx, ps[0].Addr, cfg, ps[0].ID, &plugin.DialOptions{Insecure: r.insecure})
}

// openEndpoint opens a replica given as a directory (an engine, with the
// tree flags) or as id=host:port (a gRPC client).
func openEndpoint(ctx context.Context, f dbFlags, r *remoteFlags, arg string) (reconcile.Replica, func(), error) {
	if isRemote(arg) {
		c, err := r.dial(ctx, arg)
		if err != nil {
			return nil, nil, err
		}
		return c, func() { c.Close() }, nil
	}
	e, err := f.open(ctx, arg)
	if err != nil {
		return nil, nil, err
	}
	if err := e.WaitReady(ctx); err != nil {
		e.Close()
		return nil, nil, err
	}
	return e, func() { e.Close() }, nil
}

// openPair opens two replicas (directories or id=host:port). Directories
// get replica IDs "a" and "b" unless --id is given.
func openPair(ctx context.Context, f *dbFlags, r *remoteFlags, da, db string) (reconcile.Replica, reconcile.Replica, func(), error) {
	if da == db || (!isRemote(da) && !isRemote(db) && filepath.Clean(da) == filepath.Clean(db)) {
		return nil, nil, nil, fmt.Errorf("arguments A and B are the same replica (%s)", da)
	}
	fa, fb := *f, *f
	if fa.id == "local" {
		fa.id, fb.id = "a", "b"
	}
	a, closeA, err := openEndpoint(ctx, fa, r, da)
	if err != nil {
		return nil, nil, nil, err
	}
	b, closeB, err := openEndpoint(ctx, fb, r, db)
	if err != nil {
		closeA()
		return nil, nil, nil, err
	}
	return a, b, func() { closeA(); closeB() }, nil
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
