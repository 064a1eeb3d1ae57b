package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/internal/units"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// kvTarget is where put, get, del and scan go: the database in --dir, or a
// served node (--addr) through the plugin client; both are an engine.KV.
type kvTarget struct {
	f    dbFlags
	rf   remoteFlags
	dir  string
	addr string
}

func (k *kvTarget) register(fs *pflag.FlagSet) {
	k.f.register(fs)
	k.rf.register(fs)
	fs.StringVar(&k.dir, "dir", "", "database directory")
	fs.StringVar(&k.addr, "addr", "", "a served node instead, as id=host:port (with --certs and --as, or --insecure on loopback)")
}

// open returns the target's engine.KV and its closer.
func (k *kvTarget) open(cmd *cobra.Command) (engine.KV, func(), error) {
	if k.addr != "" {
		if k.dir != "" {
			return nil, nil, fmt.Errorf("pass --dir or --addr, not both")
		}
		c, err := k.rf.dial(cmd.Context(), k.addr)
		if err != nil {
			return nil, nil, err
		}
		return c, func() { _ = c.Close() }, nil
	}
	e, err := k.f.open(cmd.Context(), k.dir)
	if err != nil {
		return nil, nil, err
	}
	return e, func() { _ = e.Close() }, nil
}

func newPutCmd() *cobra.Command {
	var t kvTarget
	var nosync bool
	c := &cobra.Command{
		Use:     "put KEY VALUE",
		Short:   "Write a value, into a database directory or a served node",
		Example: "  pebble-ae put --dir /tmp/r1 user:1 alice\n  pebble-ae put --addr n1=127.0.0.1:7001 --certs /tmp/certs --as app user:1 alice",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kv, closeKV, err := t.open(cmd)
			if err != nil {
				return err
			}
			defer closeKV()
			wo := &engine.WriteOptions{Sync: !nosync}
			return kv.Put(cmd.Context(), []byte(args[0]), []byte(args[1]), wo)
		},
	}
	t.register(c.Flags())
	c.Flags().BoolVar(&nosync, "nosync", false, "do not sync the write-ahead log")
	return c
}

func newGetCmd() *cobra.Command {
	t := kvTarget{f: dbFlags{existing: true}}
	var asJSON bool
	c := &cobra.Command{
		Use:     "get KEY",
		Short:   "Read a key's value (or its whole record with --json), locally or from a served node",
		Example: "  pebble-ae get --dir /tmp/r1 user:1\n  pebble-ae get --dir /tmp/r1 --json user:1\n  pebble-ae get --addr n1=127.0.0.1:7001 --certs /tmp/certs --as ops user:1",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kv, closeKV, err := t.open(cmd)
			if err != nil {
				return err
			}
			defer closeKV()
			if asJSON {
				if e, ok := kv.(*engine.Engine); ok {
					rec, err := e.GetRecord(cmd.Context(), []byte(args[0]))
					if err != nil {
						return err
					}
					return printJSON(rec)
				}
				// A served node gives the application's view: the live
				// versions and the causal context (causal mode), or the
				// value (LWW).
				vs, err := kv.GetVersions(cmd.Context(), []byte(args[0]))
				if errors.Is(err, engine.ErrWrongMode) {
					v, err := kv.Get(cmd.Context(), []byte(args[0]))
					if err != nil {
						return err
					}
					return printJSON(map[string]string{"key": args[0], "value": string(v)})
				}
				if err != nil {
					return err
				}
				return printJSON(vs)
			}
			v, err := kv.Get(cmd.Context(), []byte(args[0]))
			if err != nil {
				return err
			}
			fmt.Println(string(v))
			return nil
		},
	}
	t.register(c.Flags())
	c.Flags().BoolVar(&asJSON, "json", false, "print the decoded record (siblings, timestamps, dots; from a served node: its versions and causal context)")
	return c
}

func newDelCmd() *cobra.Command {
	t := kvTarget{f: dbFlags{existing: true}}
	c := &cobra.Command{
		Use:     "del KEY",
		Short:   "Delete a key (writes a tombstone that replicates), locally or on a served node",
		Example: "  pebble-ae del --dir /tmp/r1 user:1\n  pebble-ae del --addr n1=127.0.0.1:7001 --certs /tmp/certs --as app user:1",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kv, closeKV, err := t.open(cmd)
			if err != nil {
				return err
			}
			defer closeKV()
			return kv.Delete(cmd.Context(), []byte(args[0]), nil)
		},
	}
	t.register(c.Flags())
	return c
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// statusJSON is `status --json`, the same shape for a local database and a
// served node: hashes in hex, the mode by name; local status adds the tree's
// counters and the future records, a served node its background work and
// last sessions.
type statusJSON struct {
	Replica        string            `json:"replica"`
	Mode           string            `json:"mode"`
	Partitions     []partitionStatus `json:"partitions"`
	MaxClockOffset string            `json:"max_clock_offset,omitempty"`
	FutureRecords  *int              `json:"future_records,omitempty"`
	TreeStats      *merkle.Stats     `json:"tree_stats,omitempty"`
	Background     []string          `json:"background,omitempty"`
	LastSessions   []sessionStatus   `json:"last_sessions,omitempty"`
	Process        *processStatus    `json:"process,omitempty"`
}

// processStatus describes a served node's process in `status`.
type processStatus struct {
	PID        int    `json:"pid"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	NumCPU     int    `json:"num_cpu"`
	GoVersion  string `json:"go_version"`
}

// sessionStatus is one of a served node's last sessions in `status`.
type sessionStatus struct {
	Peer         string    `json:"peer"`
	Partition    uint32    `json:"partition"`
	Outcome      string    `json:"outcome"`
	Method       string    `json:"method,omitempty"`
	Rounds       int       `json:"rounds"`
	Bytes        uint64    `json:"bytes"`
	KeysRepaired uint64    `json:"keys_repaired"`
	Quarantined  uint64    `json:"quarantined,omitempty"`
	Error        string    `json:"error,omitempty"`
	Finished     time.Time `json:"finished"`
}

// partitionStatus is one partition in `status`.
type partitionStatus struct {
	ID          int    `json:"id"`
	Start       string `json:"start"`
	End         string `json:"end"`
	Ready       bool   `json:"ready"`
	Root        string `json:"root"`
	Keys        uint64 `json:"keys"`
	Leaves      int    `json:"leaves"`
	DirtyLeaves int    `json:"dirty_leaves"`
}

func newStatusCmd() *cobra.Command {
	f := dbFlags{existing: true}
	var rf remoteFlags
	var dir, addr string
	var asJSON bool
	c := &cobra.Command{
		Use:     "status",
		Short:   "Show each partition's tree: readiness, root fingerprint, keys, leaves",
		Example: "  pebble-ae status --dir /tmp/r1\n  pebble-ae status --dir /tmp/r1 --json\n  pebble-ae status --addr n2=127.0.0.1:7002 --certs /tmp/certs --as n1",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if addr != "" {
				return remoteStatus(cmd, &rf, addr, asJSON)
			}
			e, err := f.open(cmd.Context(), dir)
			if err != nil {
				return err
			}
			defer e.Close()
			var out []partitionStatus
			for _, p := range e.Tree().Partitions() {
				ps := partitionStatus{ID: p.ID, Start: fmt.Sprintf("%q", p.Start), End: fmt.Sprintf("%q", p.End), Ready: p.Ready, Leaves: p.Leaves, DirtyLeaves: p.DirtyLeaves}
				if p.Ready {
					fp, err := e.Tree().RangeFingerprint(cmd.Context(), p.ID, merkle.Range{})
					if err != nil {
						return err
					}
					h := fp.Short()
					ps.Root, ps.Keys = hex.EncodeToString(h[:]), fp.Count
				}
				out = append(out, ps)
			}
			// Records stamped in the future (a full scan, like verify's).
			future, err := e.FutureRecords(cmd.Context(), func(engine.FutureRecord) error { return nil })
			if err != nil {
				return err
			}
			if asJSON {
				ts := e.Tree().Stats()
				return printJSON(statusJSON{Replica: string(e.ReplicaID()), Mode: e.Mode().String(), Partitions: out, TreeStats: &ts,
					FutureRecords: &future, MaxClockOffset: e.MaxClockOffset().String()})
			}
			fmt.Printf("replica %s, mode %s\n", e.ReplicaID(), e.Mode())
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PARTITION\tRANGE\tREADY\tROOT\tKEYS\tLEAVES")
			for _, p := range out {
				fmt.Fprintf(tw, "%d\t[%s, %s)\t%t\t%s\t%d\t%d\n", p.ID, p.Start, p.End, p.Ready, p.Root, p.Keys, p.Leaves)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if future > 0 {
				fmt.Printf("future records: %d stamped beyond this clock plus the maximum offset (%s); other replicas refuse them: see pebble-ae future\n", future, e.MaxClockOffset())
			}
			return nil
		},
	}
	f.register(c.Flags())
	rf.register(c.Flags())
	c.Flags().StringVar(&dir, "dir", "", "database directory")
	c.Flags().StringVar(&addr, "addr", "", "a served node instead, as id=host:port (shows its last sessions too)")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// remoteStatus prints a served node's status through its Status RPC.
func remoteStatus(cmd *cobra.Command, rf *remoteFlags, addr string, asJSON bool) error {
	c, err := rf.dial(cmd.Context(), addr)
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := c.Status(cmd.Context(), true)
	if err != nil {
		return err
	}
	if asJSON {
		js := statusJSON{Replica: string(st.ID), Mode: st.Mode.String(), Partitions: []partitionStatus{}, Background: st.Background}
		if p := st.Process; p.PID != 0 {
			js.Process = &processStatus{PID: p.PID, GOMAXPROCS: p.GOMAXPROCS, NumCPU: p.NumCPU, GoVersion: p.GoVersion}
		}
		for _, p := range st.Partitions {
			ps := partitionStatus{ID: int(p.ID), Start: fmt.Sprintf("%q", p.Range.Start), End: fmt.Sprintf("%q", p.Range.End), Ready: p.Ready, Leaves: int(p.Leaves), DirtyLeaves: int(p.DirtyLeaves)}
			if p.Root != nil {
				ps.Root, ps.Keys = hex.EncodeToString(p.Root.Hash[:]), p.Root.Count
			}
			js.Partitions = append(js.Partitions, ps)
		}
		for _, s := range st.LastSessions {
			outcome := "in-sync"
			switch {
			case s.Err != "":
				outcome = "failed"
			case s.Stats.KeysRepaired() > 0:
				outcome = "repaired"
			}
			js.LastSessions = append(js.LastSessions, sessionStatus{Peer: string(s.Peer), Partition: s.Partition, Outcome: outcome, Method: string(s.Stats.Method),
				Rounds: s.Stats.Rounds, Bytes: s.Stats.BytesTotal(), KeysRepaired: s.Stats.KeysRepaired(), Quarantined: s.Stats.Quarantined, Error: s.Err, Finished: s.Finished})
		}
		return printJSON(js)
	}
	fmt.Printf("replica %s, mode %s\n", st.ID, st.Mode)
	if p := st.Process; p.PID != 0 {
		fmt.Printf("process %d, %s, GOMAXPROCS %d on %d CPUs\n", p.PID, p.GoVersion, p.GOMAXPROCS, p.NumCPU)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tRANGE\tREADY\tROOT\tKEYS\tLEAVES\tDIRTY")
	for _, p := range st.Partitions {
		root, keys := "-", uint64(0)
		if p.Root != nil {
			root, keys = hex.EncodeToString(p.Root.Hash[:]), p.Root.Count
		}
		fmt.Fprintf(tw, "%d\t%s\t%t\t%s\t%d\t%d\t%d\n", p.ID, p.Range, p.Ready, root, keys, p.Leaves, p.DirtyLeaves)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, b := range st.Background {
		fmt.Println(b)
	}
	if len(st.LastSessions) > 0 {
		fmt.Println("last sessions:")
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PEER\tPARTITION\tOUTCOME\tMETHOD\tROUNDS\tBYTES\tREPAIRED\tFINISHED")
		for _, s := range st.LastSessions {
			outcome := "ok"
			if s.Err != "" {
				outcome = s.Err
			} else if s.Stats.KeysRepaired() > 0 {
				outcome = "repaired"
			}
			if q := s.Stats.Quarantined; q > 0 {
				outcome += fmt.Sprintf(", %d quarantined", q)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\t%d\t%s\n", s.Peer, s.Partition, outcome, s.Stats.Method, s.Stats.Rounds, units.Bytes(s.Stats.BytesTotal()), s.Stats.KeysRepaired(), s.Finished.Format(time.RFC3339))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func newVerifyCmd() *cobra.Command {
	f := dbFlags{existing: true}
	c := &cobra.Command{
		Use:     "verify DIR",
		Short:   "Recompute the tree from the data and report every mismatch (exit 1 if any)",
		Example: "  pebble-ae verify /tmp/r1",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := f.open(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer e.Close()
			if err := waitReadyWithProgress(cmd, e); err != nil {
				return err
			}
			bar := newProgress(cmd.ErrOrStderr(), "verify")
			ms, err := e.VerifyWithProgress(cmd.Context(), func(done, total int) { bar.bar(done, total, "partitions") })
			bar.done()
			if err != nil {
				return err
			}
			for _, m := range ms {
				fmt.Println(m)
			}
			if len(ms) > 0 {
				return fmt.Errorf("%d tree mismatches", len(ms))
			}
			future, err := printFutureRecords(cmd, e)
			if err != nil {
				return err
			}
			if future > 0 {
				return fmt.Errorf("the tree matches the data, but %d records are stamped beyond this clock plus the maximum offset (%s): other replicas refuse them, and they win over every later write here; see pebble-ae future", future, e.MaxClockOffset())
			}
			var keys uint64
			for _, p := range e.Tree().Partitions() {
				fp, err := e.Tree().RangeFingerprint(cmd.Context(), p.ID, merkle.Range{})
				if err != nil {
					return err
				}
				keys += fp.Count
			}
			fmt.Printf("ok: %d keys, tree matches the data\n", keys)
			return nil
		},
	}
	f.register(c.Flags())
	return c
}

func newRebuildCmd() *cobra.Command {
	f := dbFlags{existing: true}
	c := &cobra.Command{
		Use:     "rebuild DIR",
		Short:   "Discard and rebuild the tree from the data, with progress",
		Example: "  pebble-ae rebuild /tmp/r1\n  pebble-ae rebuild --leaf-size 128 --rebuild-on-change /tmp/r1",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := f.open(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer e.Close()
			if err := e.Tree().MarkRebuild(cmd.Context(), -1); err != nil {
				return err
			}
			bar := newProgress(cmd.ErrOrStderr(), "rebuild")
			err = e.Tree().Rebuild(cmd.Context(), func(part int, keys uint64) {
				bar.set(fmt.Sprintf("partition %d: %d keys", part, keys))
			})
			bar.done()
			if err != nil {
				return err
			}
			fmt.Println("rebuilt")
			return nil
		},
	}
	f.register(c.Flags())
	return c
}

func waitReadyWithProgress(cmd *cobra.Command, e *engine.Engine) error {
	return e.WaitReady(cmd.Context())
}

func newScanCmd() *cobra.Command {
	f := dbFlags{existing: true}
	var rf remoteFlags
	var dir, addr, start, end string
	var limit int
	var versions, asJSON, keysOnly bool
	c := &cobra.Command{
		Use:   "scan",
		Short: "List the live keys (and values) of a key range, locally or from a served node",
		Long: `scan prints the live keys of [--start, --end) in key order, from one
consistent snapshot, at most --limit of them (0: all), and, when it stops at
the limit, the key the next page starts at. It runs the application's Scan
call (engine.KV): on the database in --dir, or on a served node (--addr)
through the same Scan RPC an application's plugin client uses.`,
		Example: `  pebble-ae scan --dir /tmp/r1
  pebble-ae scan --dir /tmp/r1 --start user: --end user\; --limit 10
  pebble-ae scan --addr n2=127.0.0.1:7002 --certs /tmp/certs --as n1 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var kv engine.KV
			if addr != "" {
				c, err := rf.dial(cmd.Context(), addr)
				if err != nil {
					return err
				}
				defer c.Close()
				kv = c
			} else {
				e, err := f.open(cmd.Context(), dir)
				if err != nil {
					return err
				}
				defer e.Close()
				kv = e
			}
			return runScan(cmd, kv, engine.ScanRequest{Start: []byte(start), End: []byte(end), Limit: limit, Versions: versions}, asJSON, keysOnly)
		},
	}
	f.register(c.Flags())
	rf.register(c.Flags())
	c.Flags().StringVar(&dir, "dir", "", "database directory")
	c.Flags().StringVar(&addr, "addr", "", "a served node instead, as id=host:port")
	c.Flags().StringVar(&start, "start", "", "first key (inclusive; default: the first key)")
	c.Flags().StringVar(&end, "end", "", "bound (exclusive; default: the last key)")
	c.Flags().IntVar(&limit, "limit", 0, "most keys to print (0: all)")
	c.Flags().BoolVar(&versions, "versions", false, "print every live sibling and the causal context (causal mode)")
	c.Flags().BoolVar(&keysOnly, "keys-only", false, "print keys only")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object a key (and a last one with next, if any)")
	return c
}

// scanLine is one key of `scan --json`.
type scanLine struct {
	Key      string   `json:"key"`
	Value    *string  `json:"value,omitempty"`
	Versions []string `json:"versions,omitempty"`
	Context  string   `json:"context,omitempty"`
}

// runScan prints a scan of kv (the same call for a local engine and a
// served node).
func runScan(cmd *cobra.Command, kv engine.KV, req engine.ScanRequest, asJSON, keysOnly bool) error {
	out := bufio.NewWriter(cmd.OutOrStdout())
	defer out.Flush()
	enc := json.NewEncoder(out)
	next, err := kv.Scan(cmd.Context(), req, func(it engine.Item) error {
		if asJSON {
			l := scanLine{Key: string(it.Key)}
			if it.Found && !keysOnly {
				v := string(it.Value)
				l.Value = &v
			}
			for _, v := range it.Versions {
				l.Versions = append(l.Versions, string(v))
			}
			if len(it.Context) > 0 {
				l.Context = hex.EncodeToString(it.Context)
			}
			return enc.Encode(l)
		}
		switch {
		case keysOnly:
			_, err := fmt.Fprintf(out, "%q\n", it.Key)
			return err
		case req.Versions:
			_, err := fmt.Fprintf(out, "%q\t%q\tcontext %x\n", it.Key, it.Versions, it.Context)
			return err
		default:
			_, err := fmt.Fprintf(out, "%q\t%q\n", it.Key, it.Value)
			return err
		}
	})
	if err != nil {
		return err
	}
	if next != nil {
		if asJSON {
			return enc.Encode(map[string]string{"next": string(next)})
		}
		fmt.Fprintf(out, "(more: next page --start %q)\n", next)
	}
	return nil
}
