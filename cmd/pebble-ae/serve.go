package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/hooks"
	"github.com/pebble-ae/pebble-ae/internal/cliflags"
	"github.com/pebble-ae/pebble-ae/internal/metrics"
	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile"
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
	fl.Float64Var(&f.busyFraction, "busy-fraction", reconcile.DefaultLoopBusyFraction, "busy-time budget of sessions' work (their reads and decoding) and of repair writes, each, in cores (0: none); admission control scales it")
	fl.Float64Var(&f.repairFloor, "repair-floor", engine.DefaultMinScale, "the repair floor: the fraction of the throttles' rates (and busy-time budgets) admission control never scales background work below, so repair never stops under overload, in (0,1]")
	fl.Float64Var(&f.repairCeiling, "repair-ceiling", engine.DefaultMaxScale, "the ceiling: the multiple of the throttles' rates (and busy-time budgets) admission control raises background work to while the foreground leaves room, at least 1 (1: never above the configured rates)")
	fl.DurationVar(&f.gcGrace, "gc-grace", engine.DefaultGCGrace, "tombstone grace period (tombstones are purged only after it and two full repair rounds)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.DurationVar(&f.sessionTimeout, "session-timeout", 5*time.Minute, "bound on one session (0: ten times the longest repair interval, at least 1m)")
	fl.Int64Var(&f.sessionMemory, "session-memory", reconcile.DefaultMaxPendingBytes, sessionMemoryUsage)
	fl.Int64Var(&f.sessionKeys, "session-keys", reconcile.DefaultLoopMaxSessionKeys, "about the most differences one repair-loop session reconciles: a larger repair proceeds in sessions that each finish and apply their part (negative: no bound)")
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
	if f.repairCeiling < 1 || f.repairCeiling > reconcile.MaxThrottleScale {
		return fmt.Errorf("--repair-ceiling %v: want a multiple in [1,%v]", f.repairCeiling, reconcile.MaxThrottleScale)
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

	// Throttles, admission control, GC, metrics.
	scan, err := reconcile.NewThrottle("scan", reconcile.ThrottleConfig{BytesPerSec: f.scanBytes, BusyFraction: f.busyFraction})
	if err != nil {
		return err
	}
	write, err := reconcile.NewThrottle("write", reconcile.ThrottleConfig{BytesPerSec: f.writeBytes, BusyFraction: f.busyFraction})
	if err != nil {
		return err
	}
	o, err := f.db.options()
	if err != nil {
		return err
	}
	m := metrics.New()
	m.WatchThrottles(scan, write)
	gc, err := engine.NewTombstoneGC(engine.GCOptions{Grace: f.gcGrace, Throttle: scan.Wait, Logger: logger, OnPurge: m.TombstonesPurged})
	if err != nil {
		return err
	}
	var adm *engine.Admission
	hs := []hooks.Hook{gc.Hook()}
	po := &pebble.Options{}
	fs := vfs.Default
	if f.admission {
		adm, err = engine.NewAdmission(engine.AdmissionConfig{Throttles: []*reconcile.Throttle{scan, write}, Partitioner: o.Partitioner, Logger: logger, MinScale: f.repairFloor, MaxScale: f.repairCeiling})
		if err != nil {
			return err
		}
		m.WatchAdmission(adm)
		hs = append(hs, adm.Hook())
		po.AddEventListener(adm.EventListener())
		var fsCloser interface{ Close() error }
		fs, fsCloser = engine.WithDiskHealthChecks(vfs.Default, engine.DefaultDiskSlowThreshold, adm.DiskSlow)
		defer fsCloser.Close()
		o.ObserveForeground = adm.ObserveForeground
	}
	o.FS, o.Pebble, o.Hooks, o.Throttle, o.Logger = fs, po, hs, scan.Wait, logger
	e, err := engine.Open(f.dir, o)
	if err != nil {
		return err
	}
	defer e.Close()
	if err := gc.Attach(e); err != nil {
		return err
	}
	if adm != nil {
		adm.Attach(e)
		go func() { _ = adm.Run(ctx) }()
	}

	// The gRPC service; its Repair and Status calls are backed by the node.
	m.WatchClockRefusals(e.ClockOffsetRefusals)
	rep := &nodeRepairer{local: e, eng: e, peers: map[reconcile.ReplicaID]reconcile.Replica{}, throttles: []*reconcile.Throttle{scan, write}, adm: adm, maxPending: f.sessionMemory}
	var tlsCfg *tls.Config
	lopts := &plugin.ListenOptions{Insecure: f.insecure}
	lopts.Server.Repairer = rep
	lopts.Server.Logger = logger
	if !f.insecure {
		if f.certs == "" {
			return fmt.Errorf("--certs is required (or --insecure on loopback)")
		}
		if tlsCfg, err = plugin.LoadTLSConfig(f.certs, e.ReplicaID()); err != nil {
			return err
		}
		roles, err := nodeRoles(ps, f.clients, f.writers, f.roles)
		if err != nil {
			return err
		}
		for id, r := range roles {
			logger.Debug("client role", "id", id, "roles", r)
		}
		lopts.Roles = func(id reconcile.ReplicaID) plugin.Role { return roles[id] }
	}
	// Everything that can refuse the configuration does so before the node
	// starts serving: the metrics listener and the repair loop.
	var metricsLn net.Listener
	if f.metricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", f.metricsAddr); err != nil {
			return fmt.Errorf("--metrics: %w", err)
		}
		defer metricsLn.Close()
	}
	// The repair loop (started once the node serves).
	var loop *reconcile.Loop
	if len(ps) > 0 {
		peers := make([]reconcile.Peer, len(ps))
		for i, p := range ps {
			peers[i] = reconcile.Peer{ID: p.ID, Replica: newLazyPeer(p, tlsCfg, f.insecure)}
			rep.peers[p.ID] = peers[i].Replica
		}
		defer func() {
			for _, p := range peers {
				p.Replica.(*lazyPeer).Close()
			}
		}()
		var signals func() reconcile.Signals
		if adm != nil {
			signals = adm.Signals
		}
		loop, err = reconcile.NewLoop(reconcile.LoopConfig{
			Local: e, Peers: peers, Logger: logger,
			Scheduler:      reconcile.SchedulerConfig{Interval: f.interval},
			ScanThrottle:   scan,
			WriteThrottle:  write,
			Signals:        signals,
			SessionTimeout: f.sessionTimeout,
			MaxSessionKeys: f.sessionKeys,
			Sync:           reconcile.SyncOptions{Session: reconcile.SessionConfig{MaxPendingBytes: f.sessionMemory}},
			OnSession: func(r reconcile.SessionReport) {
				m.ObserveSession(r)
				rep.observe(r)
				if r.Stats.KeysRepaired() > 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "repair %s partition %d: %d keys repaired\n", r.Peer, r.Partition, r.Stats.KeysRepaired())
				}
			},
			OnTask:      m.ObserveTask,
			OnFullRound: func(fr reconcile.FullRound) { m.ObserveFullRound(fr); gc.FullRound(fr) },
			Tasks: []reconcile.Task{
				{Name: "rebuild", Interval: 10 * time.Second, Large: true, Run: func(ctx context.Context) error { return e.RebuildNotReady(ctx, m.RebuildProgress) }},
				{Name: "scrub", Interval: 24 * time.Hour, Large: true, Run: func(ctx context.Context) error { _, err := e.Scrub(ctx, m.RebuildProgress); return err }},
				{Name: "gc", Interval: time.Minute, Run: func(ctx context.Context) error { _, err := gc.Collect(ctx); return err }},
			},
		})
		if err != nil {
			return err
		}
		m.WatchLoop(loop)
		rep.setLoop(loop)
	}
	ready := make(chan net.Addr, 1)
	lopts.Ready = func(a net.Addr) { ready <- a }
	serveErr := make(chan error, 1)
	go func() { serveErr <- plugin.ListenAndServe(ctx, e, f.listen, tlsCfg, lopts) }()
	select {
	case a := <-ready:
		fmt.Fprintf(cmd.OutOrStdout(), "serving %s on %s\n", e.ReplicaID(), a)
	case err := <-serveErr:
		return err
	}
	var wg sync.WaitGroup
	if metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", m.Handler())
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		fmt.Fprintf(cmd.OutOrStdout(), "metrics on http://%s/metrics\n", metricsLn.Addr())
		wg.Add(1)
		go func() { defer wg.Done(); _ = srv.Serve(metricsLn) }()
		go func() { <-ctx.Done(); _ = srv.Close() }()
	}
	if loop != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := loop.Run(ctx); err != nil && ctx.Err() == nil {
				logger.Error("repair loop stopped", "err", err)
			}
		}()
	}
	err = <-serveErr
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// nodeRoles returns the roles of each client identity a node accepts:
// peers get RolePeer, --clients RoleReader (read-only), --writers
// RoleWriter, --roles what it names; an ID in several lists gets each of
// their roles.
func nodeRoles(peers []cliflags.Peer, clients, writers, extra string) (map[reconcile.ReplicaID]plugin.Role, error) {
	roles := map[reconcile.ReplicaID]plugin.Role{}
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
			if err := reconcile.ReplicaID(id).Validate(); err != nil {
				return nil, fmt.Errorf("%s: %w", l.flag, err)
			}
			roles[reconcile.ReplicaID(id)] |= l.role
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
		if err := reconcile.ReplicaID(id).Validate(); err != nil {
			return nil, fmt.Errorf("--roles: %w", err)
		}
		for _, n := range strings.Split(names, "+") {
			r, ok := map[string]plugin.Role{"peer": plugin.RolePeer, "writer": plugin.RoleWriter, "reader": plugin.RoleReader, "all": plugin.RoleAll}[n]
			if !ok {
				return nil, fmt.Errorf("--roles %q: unknown role %q (peer, writer, reader, all)", item, n)
			}
			roles[reconcile.ReplicaID(id)] |= r
		}
	}
	return roles, nil
}

// lazyPeer is a remote replica reached over the network, dialed on first
// use and redialed after a failure, so a node can start before its peers.
type lazyPeer struct {
	peer     cliflags.Peer
	tls      *tls.Config
	insecure bool

	mu     sync.Mutex
	client *plugin.Client
}

func newLazyPeer(p cliflags.Peer, cfg *tls.Config, insecure bool) *lazyPeer {
	return &lazyPeer{peer: p, tls: cfg, insecure: insecure}
}

func (l *lazyPeer) get(ctx context.Context) (*plugin.Client, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.client != nil {
		return l.client, nil
	}
	c, err := plugin.Dial(ctx, l.peer.Addr, l.tls, l.peer.ID, &plugin.DialOptions{Insecure: l.insecure})
	if err != nil {
		return nil, err
	}
	l.client = c
	return c, nil
}

// done drops the client after a transport failure, so the next call dials.
func (l *lazyPeer) done(c *plugin.Client, err error) error {
	if err != nil && errors.Is(err, plugin.ErrUnavailable) {
		l.mu.Lock()
		if l.client == c {
			l.client = nil
			_ = c.Close()
		}
		l.mu.Unlock()
	}
	return err
}

func (l *lazyPeer) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.client != nil {
		_ = l.client.Close()
		l.client = nil
	}
}

func (l *lazyPeer) Info(ctx context.Context) (reconcile.Info, error) {
	c, err := l.get(ctx)
	if err != nil {
		return reconcile.Info{}, err
	}
	info, err := c.Info(ctx)
	return info, l.done(c, err)
}

func (l *lazyPeer) RangeHash(ctx context.Context, req reconcile.RangeHashRequest) ([]reconcile.RangeHash, error) {
	c, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	r, err := c.RangeHash(ctx, req)
	return r, l.done(c, err)
}

func (l *lazyPeer) RangeScan(ctx context.Context, req reconcile.RangeScanRequest) (reconcile.RangeScanResult, error) {
	c, err := l.get(ctx)
	if err != nil {
		return reconcile.RangeScanResult{}, err
	}
	r, err := c.RangeScan(ctx, req)
	return r, l.done(c, err)
}

func (l *lazyPeer) Fetch(ctx context.Context, part uint32, keys [][]byte) ([]reconcile.Entry, error) {
	c, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	r, err := c.Fetch(ctx, part, keys)
	return r, l.done(c, err)
}

func (l *lazyPeer) Apply(ctx context.Context, part uint32, entries []reconcile.Entry) error {
	c, err := l.get(ctx)
	if err != nil {
		return err
	}
	return l.done(c, c.Apply(ctx, part, entries))
}

func (l *lazyPeer) RangeSketch(ctx context.Context, req reconcile.RangeSketchRequest) (reconcile.RangeSketchResult, error) {
	c, err := l.get(ctx)
	if err != nil {
		return reconcile.RangeSketchResult{}, err
	}
	r, err := c.RangeSketch(ctx, req)
	return r, l.done(c, err)
}

func (l *lazyPeer) FetchByHash(ctx context.Context, req reconcile.FetchByHashRequest) ([]reconcile.Entry, error) {
	c, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	r, err := c.FetchByHash(ctx, req)
	return r, l.done(c, err)
}

func (l *lazyPeer) ApplyAndHash(ctx context.Context, part uint32, entries []reconcile.Entry, ranges []reconcile.KeyRange) ([]reconcile.RangeHash, error) {
	c, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	r, err := c.ApplyAndHash(ctx, part, entries, ranges)
	return r, l.done(c, err)
}

// OpenSymbols implements reconcile.SymbolStreamer: without it, every
// session of a served node fell back to fixed-size sketches, which scan
// the partition on both sides, instead of the symbol streams the engine
// serves from its entry index.
func (l *lazyPeer) OpenSymbols(ctx context.Context, req reconcile.SymbolsRequest) (reconcile.SymbolStream, error) {
	c, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	s, err := c.OpenSymbols(ctx, req)
	return s, l.done(c, err)
}

// lazyPeer is every kind of replica the plugin client is (a capability it
// forgot would silently change what a served node's sessions do).
var (
	_ reconcile.Replica        = (*lazyPeer)(nil)
	_ reconcile.Sketcher       = (*lazyPeer)(nil)
	_ reconcile.ApplyConfirmer = (*lazyPeer)(nil)
	_ reconcile.SymbolStreamer = (*lazyPeer)(nil)
)
