package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/internal/units"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"github.com/spf13/cobra"
)

type demoConfig struct {
	keys     int
	replicas int
	seed     uint64
	dir      string
	keep     bool
	plugin   bool
	serve    bool
}

func newDemoCmd() *cobra.Command {
	var cfg demoConfig
	c := &cobra.Command{
		Use:   "demo",
		Short: "Watch three replicas diverge (outage, partition, deletes) and converge",
		Long: `demo runs replicas in a temporary directory through a story:

  1. every replica takes the initial load (a quorum write of all keys);
  2. the last replica goes down; new keys, updates and deletes are acknowledged
     by the others (W=2 of N=3) and never reach it;
  3. a network partition splits the first two replicas, and both sides accept
     different updates of the same keys;
  4. the downed replica comes back with its stale data.

It prints each replica's root fingerprints, runs anti-entropy sessions between
every pair (with a progress bar), prints what each session cost next to a naive
full comparison, and checks with a full scan that all replicas hold identical
records. It exits non-zero if they do not.

With --serve the replicas are nodes as pebble-ae serve runs them (package
plugin/node: the Replica service on loopback with mutual TLS, certificates
generated in the directory, each replica the others' peer): after the story,
nothing but their repair loops converges them.`,
		Example: "  pebble-ae demo\n  pebble-ae demo --keys 100000 --replicas 5 --seed 7\n  pebble-ae demo --serve",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), cfg)
		},
	}
	c.Flags().IntVar(&cfg.keys, "keys", 20000, "keys in the initial load")
	c.Flags().IntVar(&cfg.replicas, "replicas", 3, "number of replicas (at least 2)")
	c.Flags().Uint64Var(&cfg.seed, "seed", 1, "seed of the scenario")
	c.Flags().StringVar(&cfg.dir, "dir", "", "directory for the replicas (default: a temporary directory, removed afterwards)")
	c.Flags().BoolVar(&cfg.keep, "keep", false, "keep the replicas' directories")
	c.Flags().BoolVar(&cfg.plugin, "plugin", false, "run the replicas as plugin subprocesses of this binary (gRPC over go-plugin)")
	c.Flags().BoolVar(&cfg.serve, "serve", false, "run the replicas as served nodes (mutual TLS on loopback) that converge through their repair loops")
	return c
}

// demoSplits are the demo's partition split points: four partitions.
var demoSplits = [][]byte{[]byte("key:25"), []byte("key:50"), []byte("key:75")}

func demoKey(i int) []byte { return []byte(fmt.Sprintf("key:%08d", i%100*1000000+i/100)) }

// demoNode is one replica of the demo: in-process (the engine itself) or a
// plugin subprocess (a gRPC client), used only through reconcile.Replica.
type demoNode struct {
	id    record.ReplicaID
	dir   string
	rep   reconcile.Replica
	close func() error
	clock *record.HLC // the coordinator clock of writes this node takes
}

func runDemo(ctx context.Context, out, errw io.Writer, cfg demoConfig) error {
	if cfg.replicas < 2 {
		return fmt.Errorf("--replicas must be at least 2")
	}
	if cfg.keys < 10 {
		return fmt.Errorf("--keys must be at least 10")
	}
	if cfg.plugin && cfg.serve {
		return fmt.Errorf("--plugin and --serve: choose one")
	}
	dir := cfg.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "pebble-ae-demo-")
		if err != nil {
			return err
		}
		dir = d
		if !cfg.keep {
			defer os.RemoveAll(d)
		}
	}
	start := time.Now()
	rng := rand.New(rand.NewPCG(cfg.seed, 0xdeadbeef))
	pn, _ := merkle.SplitPoints(demoSplits)
	splitsFlag := make([]string, len(demoSplits))
	for i, s := range demoSplits {
		splitsFlag[i] = string(s)
	}
	engineOpts := func(id record.ReplicaID) *engine.Options {
		return &engine.Options{ReplicaID: id, Partitioner: pn, CheckpointInterval: -1}
	}
	nodes := make([]*demoNode, cfg.replicas)
	var served *demoCluster
	if cfg.serve {
		var err error
		if served, err = newDemoCluster(filepath.Join(dir, "certs"), cfg.replicas, out); err != nil {
			return err
		}
		defer served.closeListeners()
	}
	open := func(i int) error {
		n := nodes[i]
		if n == nil {
			id := record.ReplicaID(fmt.Sprintf("r%d", i+1))
			n = &demoNode{id: id, dir: filepath.Join(dir, string(id)), clock: record.NewHLC(nil)}
			nodes[i] = n
		}
		if served != nil {
			nd, err := served.open(i, n.dir, engineOpts(n.id))
			if err != nil {
				return err
			}
			n.rep, n.close = nd.Engine(), nd.Close
			return nil
		}
		if cfg.plugin {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			c, err := plugin.Open(ctx, exe, "plugin", "--dir", n.dir, "--id", string(n.id), "--splits", strings.Join(splitsFlag, ","))
			if err != nil {
				return fmt.Errorf("start plugin %s: %w", n.id, err)
			}
			n.rep, n.close = c, c.Close
			return nil
		}
		e, err := engine.Open(n.dir, engineOpts(n.id))
		if err != nil {
			return err
		}
		n.rep, n.close = e, e.Close
		return nil
	}
	for i := range nodes {
		if err := open(i); err != nil {
			return err
		}
	}
	defer func() {
		for _, n := range nodes {
			if n != nil && n.close != nil {
				n.close()
			}
		}
	}()
	how := "in-process engines"
	switch {
	case cfg.plugin:
		how = "plugin subprocesses (gRPC, AutoMTLS)"
	case cfg.serve:
		how = "served nodes (mutual TLS on loopback, repair loops)"
	}
	fmt.Fprintf(out, "pebble-ae demo: %d replicas as %s in %s, seed %d\n\n", cfg.replicas, how, dir, cfg.seed)

	value := func(tag string, i int) []byte { return []byte(fmt.Sprintf("%s-%d-%x", tag, i, rng.Uint32())) }
	// A write is coordinated by one replica: it stamps the record once (its
	// HLC, its ID) and replicates that same record to the targets, as a
	// Dynamo-style coordinator does; the targets merge it (Apply).
	type write struct {
		key, value []byte
		tombstone  bool
	}
	replicate := func(coord *demoNode, targets []*demoNode, ws []write) error {
		byPart := map[uint32][]reconcile.Entry{}
		for _, w := range ws {
			rec := record.NewLWW(coord.id, coord.clock.Now(), w.value, w.tombstone)
			p := uint32(pn.Partition(w.key))
			byPart[p] = append(byPart[p], reconcile.Entry{Key: w.key, Record: rec.Encode()})
		}
		for _, n := range targets {
			for p, ents := range byPart {
				if err := n.rep.Apply(ctx, p, ents); err != nil {
					return fmt.Errorf("write to %s: %w", n.id, err)
				}
			}
		}
		return nil
	}

	// 1. Initial load on every replica.
	fmt.Fprintf(out, "1. initial load: %d keys written to all %d replicas\n", cfg.keys, cfg.replicas)
	const chunk = 1000
	for lo := 0; lo < cfg.keys; lo += chunk {
		var ws []write
		for i := lo; i < min(lo+chunk, cfg.keys); i++ {
			ws = append(ws, write{key: demoKey(i), value: value("v1", i)})
		}
		if err := replicate(nodes[0], nodes, ws); err != nil {
			return err
		}
	}

	// 2. The last replica is down: writes reach only the others.
	down := cfg.replicas - 1
	up := nodes[:down]
	if err := nodes[down].close(); err != nil {
		return err
	}
	nodes[down].close = nil
	newKeys, updates, deletes := max(cfg.keys/20, 1), max(cfg.keys/40, 1), max(cfg.keys/100, 1)
	fmt.Fprintf(out, "2. r%d is down: %d new keys, %d updates and %d deletes acknowledged by the other %d\n", down+1, newKeys, updates, deletes, len(up))
	var ws []write
	for i := 0; i < newKeys; i++ {
		ws = append(ws, write{key: demoKey(cfg.keys + i), value: value("new", i)})
	}
	for i := 0; i < updates; i++ {
		ws = append(ws, write{key: demoKey(rng.IntN(cfg.keys)), value: value("v2", i)})
	}
	for i := 0; i < deletes; i++ {
		ws = append(ws, write{key: demoKey(rng.IntN(cfg.keys)), tombstone: true})
	}
	if err := replicate(up[0], up, ws); err != nil {
		return err
	}

	// 3. A partition between the first two replicas: both sides accept
	// different updates of the same keys.
	conflicts := max(cfg.keys/200, 1)
	fmt.Fprintf(out, "3. partition r1 | r2: %d keys updated differently on both sides (last writer wins)\n", conflicts)
	for side := 0; side < 2 && side < len(up); side++ {
		crng := rand.New(rand.NewPCG(cfg.seed, 42))
		var ws []write
		for i := 0; i < conflicts; i++ {
			ws = append(ws, write{key: demoKey(crng.IntN(cfg.keys)), value: []byte(fmt.Sprintf("partition-side-r%d-%d", side+1, i))})
		}
		if err := replicate(up[side], up[side:side+1], ws); err != nil {
			return err
		}
	}

	// 4. The downed replica comes back.
	if err := open(down); err != nil {
		return err
	}
	fmt.Fprintf(out, "4. r%d restarts with its stale data\n\n", down+1)

	if err := printRoots(ctx, out, nodes); err != nil {
		return err
	}

	if served != nil {
		// The nodes serve and repair; nothing else runs a session.
		fmt.Fprintf(out, "\nthe nodes' repair loops (every %s per partition and peer, jittered):\n", demoRepairInterval)
		if err := served.converge(ctx, nodes); err != nil {
			return err
		}
		fmt.Fprintln(out)
		if err := printRoots(ctx, out, nodes); err != nil {
			return err
		}
		return finishDemo(ctx, out, nodes, engineOpts, start)
	}

	// Anti-entropy between every pair.
	fmt.Fprintf(out, "\nanti-entropy sessions:\n")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pair\trounds\tbytes\tmetadata\trecords\tkeys repaired\ttime\tnaive bytes\tnaive rounds\t")
	for i := 0; i < len(nodes); i++ {
		for j := i + 1; j < len(nodes); j++ {
			a, b := nodes[i], nodes[j]
			pair := fmt.Sprintf("%s <-> %s", a.id, b.id)
			naive, err := dryRunStats(ctx, a.rep, b.rep, true)
			if err != nil {
				return fmt.Errorf("naive session %s: %w", pair, err)
			}
			bar := newProgress(errw, pair)
			st, err := syncAllProgress(ctx, a.rep, b.rep, bar, false, 0)
			bar.done()
			if err != nil {
				return fmt.Errorf("session %s: %w", pair, err)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\t%d\t\n", pair, st.Rounds, units.Bytes(st.BytesTotal()), units.Bytes(st.BytesMetadata()),
				units.Bytes(st.BytesRecords()), st.KeysRepaired(), st.Duration.Round(time.Millisecond), units.Bytes(naive.BytesTotal()), naive.Rounds)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out)
	if err := printRoots(ctx, out, nodes); err != nil {
		return err
	}

	return finishDemo(ctx, out, nodes, engineOpts, start)
}

// finishDemo closes every replica (plugins exit, nodes stop) and checks
// the directories themselves: a full scan of every replica, and every tree
// verified.
func finishDemo(ctx context.Context, out io.Writer, nodes []*demoNode, engineOpts func(record.ReplicaID) *engine.Options, start time.Time) error {
	engines := make([]*engine.Engine, len(nodes))
	for i, n := range nodes {
		if err := n.close(); err != nil {
			return err
		}
		n.close = nil
		e, err := engine.Open(n.dir, engineOpts(n.id))
		if err != nil {
			return err
		}
		defer e.Close()
		engines[i] = e
	}
	count, err := compareFullScans(engines)
	if err != nil {
		return exitError{code: 2, err: fmt.Errorf("NOT converged: %w", err)}
	}
	for _, e := range engines {
		ms, err := e.Verify(ctx)
		if err != nil {
			return err
		}
		if len(ms) > 0 {
			return exitError{code: 2, err: fmt.Errorf("tree of %s does not match its data: %s", e.ReplicaID(), ms[0])}
		}
	}
	fmt.Fprintf(out, "\nconverged: all %d replicas hold identical records (%d keys, tombstones included), trees verified, in %s\n",
		len(nodes), count, time.Since(start).Round(time.Millisecond))
	return nil
}

func printRoots(ctx context.Context, out io.Writer, nodes []*demoNode) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	info, err := nodes[0].rep.Info(ctx)
	if err != nil {
		return err
	}
	header := "replica"
	for _, p := range info.Partitions {
		header += fmt.Sprintf("\tpartition %d root (keys)", p.ID)
	}
	fmt.Fprintln(tw, header)
	for _, n := range nodes {
		line := string(n.id)
		for _, p := range info.Partitions {
			rh, err := n.rep.RangeHash(ctx, reconcile.RangeHashRequest{Partition: p.ID, Ranges: []reconcile.KeyRange{p.Range}})
			if err != nil {
				return err
			}
			line += fmt.Sprintf("\t%s (%d)", hex.EncodeToString(rh[0].Fingerprint.Hash[:6]), rh[0].Fingerprint.Count)
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

// syncAllProgress runs a session over every partition, drawing progress.
// syncAllProgress runs SyncAll between a and b, reporting on bar (if not
// nil); maxPending is SessionConfig.MaxPendingBytes (0: the default).
func syncAllProgress(ctx context.Context, a, b reconcile.Replica, bar *progress, naive bool, maxPending int64) (reconcile.Stats, error) {
	info, err := a.Info(ctx)
	if err != nil {
		return reconcile.Stats{}, err
	}
	total := len(info.Partitions)
	done := 0
	opts := reconcile.SyncOptions{Progress: func(p reconcile.Progress) {
		if p.Done {
			done++
		}
		if bar != nil {
			bar.bar(done, total, fmt.Sprintf("partitions, %d rounds", p.Stats.Rounds))
		}
	}}
	if naive {
		opts.Session.Method = reconcile.MethodNaive
		opts.Session.ScanLimit = engine.MaxKeysPerRequest
	}
	opts.Session.MaxPendingBytes = maxPending
	all, err := reconcile.SyncAll(ctx, a, b, opts)
	var sum reconcile.Stats
	for i, s := range all {
		if i == 0 {
			sum = s
			continue
		}
		sum = sum.Add(s)
	}
	return sum, err
}

// dryRun wraps a replica so that a session writes nothing to it: Apply and
// ApplyAndHash only count the entries (and remember their keys, if keys is
// set). Used to measure what a session would cost, and by diff.
type dryRun struct {
	reconcile.Replica
	applied int
	keys    map[uint32][][]byte
}

func (d *dryRun) Apply(ctx context.Context, part uint32, entries []reconcile.Entry) error {
	d.applied += len(entries)
	if d.keys != nil {
		for _, e := range entries {
			d.keys[part] = append(d.keys[part], append([]byte(nil), e.Key...))
		}
	}
	return nil
}

// ApplyAndHash writes nothing either: it counts like Apply and returns the
// fingerprints of the unchanged replica.
func (d *dryRun) ApplyAndHash(ctx context.Context, part uint32, entries []reconcile.Entry, ranges []reconcile.KeyRange) ([]reconcile.RangeHash, error) {
	_ = d.Apply(ctx, part, entries)
	return d.Replica.RangeHash(ctx, reconcile.RangeHashRequest{Partition: part, Ranges: ranges})
}

func dryRunStats(ctx context.Context, a, b reconcile.Replica, naive bool) (reconcile.Stats, error) {
	return syncAllProgress(ctx, &dryRun{Replica: a}, &dryRun{Replica: b}, nil, naive, 0)
}

// compareFullScans reads every user record of every replica and checks they
// are byte-identical. It returns the number of keys.
func compareFullScans(reps []*engine.Engine) (int, error) {
	iters := make([]*merkle.UserIter, len(reps))
	for i, e := range reps {
		it, err := merkle.NewUserIter(context.Background(), e.DB(), nil, nil)
		if err != nil {
			return 0, err
		}
		defer it.Close()
		iters[i] = it
		it.First()
	}
	n := 0
	for {
		valid := iters[0].Valid()
		for i, it := range iters[1:] {
			if it.Valid() != valid {
				return n, fmt.Errorf("%s and %s hold different numbers of keys", reps[0].ReplicaID(), reps[i+1].ReplicaID())
			}
			if valid && (!bytes.Equal(it.Key(), iters[0].Key()) || !bytes.Equal(it.Value(), iters[0].Value())) {
				return n, fmt.Errorf("%s and %s differ at key %q", reps[0].ReplicaID(), reps[i+1].ReplicaID(), iters[0].Key())
			}
		}
		if !valid {
			return n, nil
		}
		n++
		for _, it := range iters {
			it.Next()
		}
	}
}
