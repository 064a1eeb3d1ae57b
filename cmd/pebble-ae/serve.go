package main

import (
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/internal/cliflags"
	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/plugin/node"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"github.com/pebble-ae/pebble-ae/reconcile/repair"
	"github.com/spf13/cobra"
)

type serveFlags struct {
	db             dbFlags
	dir, listen    string
	peers, certs   string
	clients        string
	writers        string
	roles          string
	metricsAddr    string
	insecure       bool
	admission      bool
	interval       time.Duration
	scanBytes      float64
	writeBytes     float64
	busyFraction   float64
	repairFloor    float64
	repairCeiling  float64
	gcGrace        time.Duration
	logLevel       string
	sessionTimeout time.Duration
	sessionMemory  int64
	sessionKeys    int64
}

func newServeCmd() *cobra.Command {
	var f serveFlags
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run a node: serve the Replica service over mutual TLS and repair with peers",
		Long: `serve opens a database, serves the Replica gRPC service on --listen with
mutual TLS (the peer's replica ID must be its certificate's common name; plain
text only with --insecure, and only on loopback), and runs the repair loop
with every peer: jittered adaptive scheduling, token-bucket throttling of
scans and repair writes, admission control from Pebble's metrics and
foreground latency, a background rebuild/scrub worker and tombstone GC.
Prometheus metrics are served on --metrics.`,
		Example: `  pebble-ae certs --dir /tmp/certs --ids n1,n2
  pebble-ae serve --dir /tmp/n1 --id n1 --listen 127.0.0.1:7001 --certs /tmp/certs --peers n2=127.0.0.1:7002 --metrics 127.0.0.1:9101
  pebble-ae serve --dir /tmp/n2 --id n2 --listen 127.0.0.1:7002 --certs /tmp/certs --peers n1=127.0.0.1:7001`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runServe(cmd, &f) },
	}
	f.db.register(c.Flags())
	fl := c.Flags()
	fl.StringVar(&f.dir, "dir", "", "database directory")
	fl.StringVar(&f.listen, "listen", "", "address to serve on, host:port")
	fl.StringVar(&f.peers, "peers", "", "peers to repair with: id=host:port,...")
	fl.StringVar(&f.certs, "certs", "", "directory with ca.crt and <id>.crt/.key (see pebble-ae certs)")
	fl.StringVar(&f.clients, "clients", "", "comma-separated certificate IDs of operators' tools, with the read-only reader role: Info, Status, RangeHash, RangeScan, Get, GetMany, GetVersions, Scan, Repair")
	fl.StringVar(&f.roles, "roles", "", "more roles for certificate IDs: id=role+role,... with roles peer, writer, reader or all (a test harness that both replicates and writes, say)")
	fl.StringVar(&f.writers, "writers", "", "comma-separated certificate IDs with the writer role (the application: Put, Delete, PutContext, Write, WriteStream, WriteSession, Get, GetMany, GetVersions, Scan, Info); peers (--peers) get the peer role (the replication RPCs)")
	fl.StringVar(&f.metricsAddr, "metrics", "", "serve Prometheus /metrics on this address (host:port)")
	fl.BoolVar(&f.insecure, "insecure", false, "plaintext gRPC; refused on non-loopback addresses")
	fl.BoolVar(&f.admission, "admission", true, "scale background work down when foreground work suffers")
	fl.DurationVar(&f.interval, "repair-interval", 10*time.Second, "base interval between sessions per (partition, peer); jittered and adaptive")
	fl.Float64Var(&f.scanBytes, "scan-bytes-per-sec", 64<<20, "throttle of what background scans and sessions read")
	fl.Float64Var(&f.writeBytes, "write-bytes-per-sec", 32<<20, "throttle of repair writes")
	fl.Float64Var(&f.busyFraction, "busy-fraction", repair.DefaultLoopBusyFraction, "busy-time budget of sessions' work (their reads and decoding) and of repair writes, each, in cores (0: none); admission control scales it")
	fl.Float64Var(&f.repairFloor, "repair-floor", repair.DefaultMinScale, "the repair floor: the fraction of the throttles' rates (and busy-time budgets) admission control never scales background work below, so repair never stops under overload, in (0,1]")
	fl.Float64Var(&f.repairCeiling, "repair-ceiling", repair.DefaultMaxScale, "the ceiling: the multiple of the throttles' rates (and busy-time budgets) admission control raises background work to while the foreground leaves room, at least 1 (1: never above the configured rates)")
	fl.DurationVar(&f.gcGrace, "gc-grace", engine.DefaultGCGrace, "tombstone grace period (tombstones are purged only after it and two full repair rounds)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.DurationVar(&f.sessionTimeout, "session-timeout", 5*time.Minute, "bound on one session (0: ten times the longest repair interval, at least 1m)")
	fl.Int64Var(&f.sessionMemory, "session-memory", reconcile.DefaultMaxPendingBytes, sessionMemoryUsage)
	fl.Int64Var(&f.sessionKeys, "session-keys", repair.DefaultLoopMaxSessionKeys, "about the most differences one repair-loop session reconciles: a larger repair proceeds in sessions that each finish and apply their part (negative: no bound)")
	return c
}

func runServe(cmd *cobra.Command, f *serveFlags) error {
	ctx := cmd.Context()
	if f.listen == "" {
		return fmt.Errorf("--listen is required")
	}
	if f.dir == "" {
		return fmt.Errorf("no database directory: pass --dir")
	}
	if f.repairFloor <= 0 || f.repairFloor > 1 {
		return fmt.Errorf("--repair-floor %v: want a fraction in (0,1]", f.repairFloor)
	}
	if f.busyFraction < 0 {
		return fmt.Errorf("--busy-fraction: busy fraction %v is negative (0: no budget)", f.busyFraction)
	}
	if f.repairCeiling < 1 || f.repairCeiling > repair.MaxThrottleScale {
		return fmt.Errorf("--repair-ceiling %v: want a multiple in [1,%v]", f.repairCeiling, repair.MaxThrottleScale)
	}
	if f.sessionMemory < 0 {
		return fmt.Errorf("--session-memory %d: negative", f.sessionMemory)
	}
	ps, err := cliflags.ParsePeers(f.peers)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level})).With("node", f.db.id)

	o, err := f.db.options()
	if err != nil {
		return err
	}
	busy := f.busyFraction
	if busy == 0 {
		busy = -1 // --busy-fraction 0: no budget
	}
	cfg := node.Config{
		Dir: f.dir, Engine: *o, Insecure: f.insecure,
		RepairInterval: f.interval, ScanBytesPerSec: f.scanBytes, WriteBytesPerSec: f.writeBytes, BusyFraction: busy,
		RepairFloor: f.repairFloor, RepairCeiling: f.repairCeiling, GCGrace: f.gcGrace, SessionTimeout: f.sessionTimeout, SessionMemory: f.sessionMemory,
		SessionKeys: f.sessionKeys, Logger: logger,
		OnSession: func(r repair.SessionReport) {
			if r.Stats.KeysRepaired() > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "repair %s partition %d: %d keys repaired\n", r.Peer, r.Partition, r.Stats.KeysRepaired())
			}
		},
		OnServing: func(a net.Addr) { fmt.Fprintf(cmd.OutOrStdout(), "serving %s on %s\n", f.db.id, a) },
	}
	if !f.admission {
		cfg.Admission = node.AdmissionOff
	}
	for _, p := range ps {
		cfg.Peers = append(cfg.Peers, node.Peer{ID: p.ID, Addr: p.Addr})
	}
	if !f.insecure {
		if f.certs == "" {
			return fmt.Errorf("--certs is required (or --insecure on loopback)")
		}
		if cfg.TLS, err = plugin.LoadTLSConfig(f.certs, record.ReplicaID(f.db.id)); err != nil {
			return err
		}
		roles, err := nodeRoles(ps, f.clients, f.writers, f.roles)
		if err != nil {
			return err
		}
		for id, r := range roles {
			logger.Debug("client role", "id", id, "roles", r)
		}
		cfg.Roles = func(id record.ReplicaID) plugin.Role { return roles[id] }
	}
	// The listeners are bound here, so that a bad address names its flag.
	if cfg.Listener, err = net.Listen("tcp", f.listen); err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	if f.metricsAddr != "" {
		if cfg.MetricsListener, err = net.Listen("tcp", f.metricsAddr); err != nil {
			cfg.Listener.Close()
			return fmt.Errorf("--metrics: %w", err)
		}
	}
	// Spare Ps for the engine's compaction and flush, so that a request
	// never waits behind them for Go's preemption (engine.ReserveProcs).
	before, after := engine.ReserveProcs(&cfg.Engine)
	n, err := node.Open(cfg)
	if err != nil {
		return err
	}
	logger.Info("GOMAXPROCS", "before", before, "after", after, "cpus", runtime.NumCPU())
	if a := n.MetricsAddr(); a != nil {
		fmt.Fprintf(cmd.OutOrStdout(), "metrics on http://%s/metrics\n", a)
	}
	err = n.Run(ctx)
	if cerr := n.Close(); err == nil {
		err = cerr
	}
	return err
}

// nodeRoles returns the roles of each client identity a node accepts:
// peers get RolePeer, --clients RoleReader (read-only), --writers
// RoleWriter, --roles what it names; an ID in several lists gets each of
// their roles.
func nodeRoles(peers []cliflags.Peer, clients, writers, extra string) (map[record.ReplicaID]plugin.Role, error) {
	roles := map[record.ReplicaID]plugin.Role{}
	for _, p := range peers {
		roles[p.ID] |= plugin.RolePeer
	}
	for _, l := range []struct {
		flag, list string
		role       plugin.Role
	}{{"--clients", clients, plugin.RoleReader}, {"--writers", writers, plugin.RoleWriter}} {
		for _, id := range strings.Split(l.list, ",") {
			if id = strings.TrimSpace(id); id == "" {
				continue
			}
			if err := record.ReplicaID(id).Validate(); err != nil {
				return nil, fmt.Errorf("%s: %w", l.flag, err)
			}
			roles[record.ReplicaID(id)] |= l.role
		}
	}
	for _, item := range strings.Split(extra, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		id, names, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("--roles %q: want id=role+role", item)
		}
		if err := record.ReplicaID(id).Validate(); err != nil {
			return nil, fmt.Errorf("--roles: %w", err)
		}
		for _, n := range strings.Split(names, "+") {
			r, ok := map[string]plugin.Role{"peer": plugin.RolePeer, "writer": plugin.RoleWriter, "reader": plugin.RoleReader, "all": plugin.RoleAll}[n]
			if !ok {
				return nil, fmt.Errorf("--roles %q: unknown role %q (peer, writer, reader, all)", item, n)
			}
			roles[record.ReplicaID(id)] |= r
		}
	}
	return roles, nil
}
