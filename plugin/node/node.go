package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/hooks"
	"github.com/pebble-ae/pebble-ae/internal/metrics"
	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"github.com/pebble-ae/pebble-ae/reconcile/repair"
)

// ErrInvalidConfig reports a Config that Open cannot run.
var ErrInvalidConfig = errors.New("node: invalid configuration")

// Peer is a replica the node repairs with, reached over the network: its
// replica ID (its certificate's common name) and its address.
type Peer struct {
	ID   record.ReplicaID
	Addr string
}

// AdmissionMode says what admission control does.
type AdmissionMode int

// Admission modes.
const (
	// AdmissionOn (the default) scales the throttles down when the
	// foreground suffers, never below Config.RepairFloor.
	AdmissionOn AdmissionMode = iota
	// AdmissionObserve measures the foreground and Pebble's signals (in
	// metrics and status) but scales nothing.
	AdmissionObserve
	// AdmissionOff runs no admission control.
	AdmissionOff
)

// Config configures a node. The zero value of every field but Dir and
// Engine.ReplicaID is a working default.
type Config struct {
	// Dir is the database directory.
	Dir string
	// Engine are the engine's options; ReplicaID is required. The node
	// sets FS (wrapped with disk-health checks under admission control;
	// default vfs.Default), Pebble's event listener, Throttle, Logger and
	// ObserveForeground, and appends its hooks to Hooks.
	Engine engine.Options

	// Listen is the address to serve the Replica service on, host:port
	// ("": no server unless Listener is set). Open binds it.
	Listen string
	// Listener, if set, is served instead of Listen: a caller that binds
	// every node of a cluster before configuring their peers (the demo,
	// tests). The node closes it.
	Listener net.Listener
	// TLS is the mutual TLS configuration of the server and of the
	// connections to peers (plugin.LoadTLSConfig). Nil requires Insecure,
	// which serves and dials plaintext on loopback addresses only.
	TLS      *tls.Config
	Insecure bool
	// Roles gives each client identity its roles (plugin.ListenOptions).
	// Nil: the Peers get plugin.RolePeer and no other identity connects.
	Roles func(record.ReplicaID) plugin.Role

	// Peers are the replicas the node repairs with, dialed on first use
	// and redialed after a failure (a node can start before its peers).
	Peers []Peer
	// Replicas are further peers reached another way (an in-process
	// replica in a benchmark).
	Replicas []repair.Peer

	// MetricsAddr, if set, serves Prometheus metrics on /metrics there.
	// Open binds it. MetricsListener, if set, is served instead (the
	// node closes it).
	MetricsAddr     string
	MetricsListener net.Listener

	// RepairInterval is the base interval between sessions per
	// (partition, peer), jittered and adaptive (default 10s). Scheduler,
	// if its Interval is set, replaces it.
	RepairInterval time.Duration
	Scheduler      repair.SchedulerConfig
	// LoopDelay delays the repair loop's first session after Run, so that
	// admission control learns the foreground's latency first.
	LoopDelay time.Duration
	// ScanBytesPerSec and ScanKeysPerSec throttle what background scans
	// and sessions read (default 64 MiB/s, keys unlimited);
	// WriteBytesPerSec the repair writes (default 32 MiB/s).
	ScanBytesPerSec, ScanKeysPerSec, WriteBytesPerSec float64
	// BusyFraction is the busy-time budget of the sessions' own work and
	// of repair writes, each, in cores (default
	// repair.DefaultLoopBusyFraction; negative: no budget).
	BusyFraction float64
	// Admission is what admission control does (default AdmissionOn);
	// AdmissionInterval how often it evaluates (default
	// repair.DefaultAdmissionInterval).
	Admission         AdmissionMode
	AdmissionInterval time.Duration
	// RepairFloor is the fraction of the throttles' rates admission
	// control never scales below, in (0,1] (default repair.DefaultMinScale);
	// RepairCeiling the multiple of them it lends background work while
	// the foreground leaves room, in [1, repair.MaxThrottleScale] (default
	// repair.DefaultMaxScale; 1: never above the configured rates).
	RepairFloor, RepairCeiling float64
	// GCGrace is the tombstone grace period (default
	// engine.DefaultGCGrace). Tombstone GC runs in LWW mode only.
	GCGrace time.Duration
	// SessionTimeout bounds one session (default 5m); SessionMemory is
	// the sessions' reconcile.SessionConfig.MaxPendingBytes (default
	// reconcile.DefaultMaxPendingBytes); SessionKeys about the most
	// differences one loop session reconciles (default
	// repair.DefaultLoopMaxSessionKeys; negative: no bound).
	SessionTimeout time.Duration
	SessionMemory  int64
	SessionKeys    int64
	// RebuildInterval, ScrubInterval and GCInterval are the intervals of
	// the loop's background tasks (default 10s, 24h, 1m).
	RebuildInterval, ScrubInterval, GCInterval time.Duration

	// Logger (default: discard).
	Logger *slog.Logger
	// OnSession, if set, is told of every session of the loop, after the
	// node's metrics and status.
	OnSession func(repair.SessionReport)
	// OnRound, if set, is told of every round of every loop session
	// (reconcile.SyncOptions.Progress: diagnostics; it must be quick).
	OnRound func(reconcile.Progress)
	// OnServing, if set, is called with the bound address once the server
	// serves.
	OnServing func(net.Addr)
}

func (c *Config) ensureDefaults() error {
	if c.Dir == "" {
		return fmt.Errorf("%w: no database directory", ErrInvalidConfig)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RepairInterval == 0 {
		c.RepairInterval = 10 * time.Second
	}
	if c.Scheduler.Interval == 0 {
		c.Scheduler.Interval = c.RepairInterval
	}
	if c.ScanBytesPerSec == 0 {
		c.ScanBytesPerSec = 64 << 20
	}
	if c.WriteBytesPerSec == 0 {
		c.WriteBytesPerSec = 32 << 20
	}
	switch {
	case c.BusyFraction == 0:
		c.BusyFraction = repair.DefaultLoopBusyFraction
	case c.BusyFraction < 0:
		c.BusyFraction = 0
	}
	if c.RepairFloor == 0 {
		c.RepairFloor = repair.DefaultMinScale
	}
	if c.RepairFloor < 0 || c.RepairFloor > 1 {
		return fmt.Errorf("%w: repair floor %v: want a fraction in (0,1]", ErrInvalidConfig, c.RepairFloor)
	}
	if c.RepairCeiling == 0 {
		c.RepairCeiling = repair.DefaultMaxScale
	}
	if c.RepairCeiling < 1 || c.RepairCeiling > repair.MaxThrottleScale {
		return fmt.Errorf("%w: repair ceiling %v: want a multiple in [1,%v]", ErrInvalidConfig, c.RepairCeiling, repair.MaxThrottleScale)
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 5 * time.Minute
	}
	if c.SessionMemory == 0 {
		c.SessionMemory = reconcile.DefaultMaxPendingBytes
	}
	if c.SessionMemory < 0 {
		return fmt.Errorf("%w: session memory %d: negative", ErrInvalidConfig, c.SessionMemory)
	}
	if c.SessionKeys == 0 {
		c.SessionKeys = repair.DefaultLoopMaxSessionKeys
	}
	if c.RebuildInterval == 0 {
		c.RebuildInterval = 10 * time.Second
	}
	if c.ScrubInterval == 0 {
		c.ScrubInterval = 24 * time.Hour
	}
	if c.GCInterval == 0 {
		c.GCInterval = time.Minute
	}
	if c.TLS == nil && !c.Insecure && (c.Listen != "" || c.Listener != nil || len(c.Peers) > 0) {
		return fmt.Errorf("%w: no TLS configuration (or Insecure on loopback)", ErrInvalidConfig)
	}
	for _, p := range c.Peers {
		if err := p.ID.Validate(); err != nil {
			return fmt.Errorf("%w: peer %q: %w", ErrInvalidConfig, p.Addr, err)
		}
	}
	return nil
}

// Node is a pebble-ae node: an engine, the Replica service over gRPC with
// its health service, a repair loop with every peer (throttles, admission
// control, tombstone GC, rebuild and scrub tasks), Prometheus metrics and
// the status and repair calls operators use. `pebble-ae serve`, the demo's
// served mode and the loop benchmark build their node with Open; an
// application that links pebble-ae gets the same node with one call.
//
// Open assembles it and opens the engine (writes may start at once); Run
// serves and repairs until its context ends; Close releases everything.
type Node struct {
	cfg         Config
	e           *engine.Engine
	scan, write *repair.Throttle
	adm         *repair.Admission
	gc          *engine.TombstoneGC
	metrics     *metrics.Metrics
	status      *repairer
	loop        *repair.Loop
	lazy        []*lazyPeer
	lis         net.Listener
	metricsLn   net.Listener
	listenOpts  plugin.ListenOptions
	closers     []io.Closer
}

// Open assembles a node from cfg: it validates cfg (ErrInvalidConfig),
// binds the listeners, opens the engine and builds the loop. Nothing
// serves or repairs until Run.
func Open(cfg Config) (_ *Node, err error) {
	if err := cfg.ensureDefaults(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	logger := cfg.Logger
	if n.scan, err = repair.NewThrottle("scan", repair.ThrottleConfig{BytesPerSec: cfg.ScanBytesPerSec, KeysPerSec: cfg.ScanKeysPerSec, BusyFraction: cfg.BusyFraction}); err != nil {
		return nil, err
	}
	if n.write, err = repair.NewThrottle("write", repair.ThrottleConfig{BytesPerSec: cfg.WriteBytesPerSec, BusyFraction: cfg.BusyFraction}); err != nil {
		return nil, err
	}
	n.metrics = metrics.New()
	n.metrics.WatchThrottles(n.scan, n.write)

	o := cfg.Engine
	o.Hooks = append([]hooks.Hook(nil), o.Hooks...)
	if o.Mode == 0 || o.Mode == record.ModeLWW {
		// Causal tombstones are kept (engine.TombstoneGC.Attach).
		if n.gc, err = engine.NewTombstoneGC(engine.GCOptions{Grace: cfg.GCGrace, Throttle: n.scan.Wait, Logger: logger, OnPurge: n.metrics.TombstonesPurged}); err != nil {
			return nil, err
		}
		o.Hooks = append(o.Hooks, n.gc.Hook())
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.Pebble == nil {
		o.Pebble = &pebble.Options{}
	}
	if cfg.Admission != AdmissionOff {
		throttles := []*repair.Throttle{n.scan, n.write}
		if cfg.Admission == AdmissionObserve {
			throttles = nil
		}
		n.adm, err = repair.NewAdmission(repair.AdmissionConfig{Throttles: throttles, Partitioner: o.Partitioner,
			Logger: logger, MinScale: cfg.RepairFloor, MaxScale: cfg.RepairCeiling, Interval: cfg.AdmissionInterval})
		if err != nil {
			return nil, err
		}
		n.metrics.WatchAdmission(n.adm)
		o.Hooks = append(o.Hooks, n.adm.Hook())
		o.Pebble.AddEventListener(n.adm.EventListener())
		fs, closer := engine.WithDiskHealthChecks(o.FS, engine.DefaultDiskSlowThreshold, n.adm.DiskSlow)
		o.FS = fs
		n.closers = append(n.closers, closer)
		o.ObserveForeground = n.adm.ObserveForeground
	}
	o.Throttle, o.Logger = n.scan.Wait, logger
	if n.e, err = engine.Open(cfg.Dir, &o); err != nil {
		return nil, err
	}
	if n.gc != nil {
		if err := n.gc.Attach(n.e); err != nil {
			return nil, err
		}
	}
	if n.adm != nil {
		n.adm.Attach(n.e)
	}
	n.metrics.WatchClockRefusals(n.e.ClockOffsetRefusals)
	n.status = &repairer{local: n.e, eng: n.e, peers: map[record.ReplicaID]reconcile.Replica{},
		throttles: []*repair.Throttle{n.scan, n.write}, adm: n.adm, maxPending: cfg.SessionMemory}

	// The listeners, so that a bad address fails Open, not Run.
	n.lis = cfg.Listener
	if n.lis == nil && cfg.Listen != "" {
		if n.lis, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("node: listen: %w", err)
		}
	}
	n.metricsLn = cfg.MetricsListener
	if n.metricsLn == nil && cfg.MetricsAddr != "" {
		if n.metricsLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return nil, fmt.Errorf("node: metrics: %w", err)
		}
	}
	n.listenOpts = plugin.ListenOptions{Insecure: cfg.Insecure, Ready: cfg.OnServing}
	n.listenOpts.Server.Repairer = n.status
	n.listenOpts.Server.Logger = logger
	roles := cfg.Roles
	if roles == nil {
		peers := map[record.ReplicaID]bool{}
		for _, p := range cfg.Peers {
			peers[p.ID] = true
		}
		roles = func(id record.ReplicaID) plugin.Role {
			if peers[id] {
				return plugin.RolePeer
			}
			return 0
		}
	}
	if cfg.TLS != nil {
		n.listenOpts.Roles = roles
	}

	// The repair loop, with every peer.
	var peers []repair.Peer
	for _, p := range cfg.Peers {
		lp := newLazyPeer(p, cfg.TLS, cfg.Insecure)
		n.lazy = append(n.lazy, lp)
		peers = append(peers, repair.Peer{ID: p.ID, Replica: lp})
	}
	peers = append(peers, cfg.Replicas...)
	for _, p := range peers {
		n.status.peers[p.ID] = p.Replica
	}
	if len(peers) == 0 {
		return n, nil
	}
	var signals func() repair.Signals
	if n.adm != nil && cfg.Admission == AdmissionOn {
		signals = n.adm.Signals
	}
	m, e, gc := n.metrics, n.e, n.gc
	tasks := []repair.Task{
		{Name: "rebuild", Interval: cfg.RebuildInterval, Large: true, Run: func(ctx context.Context) error { return e.RebuildNotReady(ctx, m.RebuildProgress) }},
		{Name: "scrub", Interval: cfg.ScrubInterval, Large: true, Run: func(ctx context.Context) error { _, err := e.Scrub(ctx, m.RebuildProgress); return err }},
	}
	if gc != nil {
		tasks = append(tasks, repair.Task{Name: "gc", Interval: cfg.GCInterval, Run: func(ctx context.Context) error { _, err := gc.Collect(ctx); return err }})
	}
	n.loop, err = repair.NewLoop(repair.LoopConfig{
		Local: e, Peers: peers, Logger: logger,
		Scheduler:      cfg.Scheduler,
		ScanThrottle:   n.scan,
		WriteThrottle:  n.write,
		Signals:        signals,
		SessionTimeout: cfg.SessionTimeout,
		MaxSessionKeys: cfg.SessionKeys,
		Sync:           reconcile.SyncOptions{Session: reconcile.SessionConfig{MaxPendingBytes: cfg.SessionMemory}, Progress: cfg.OnRound},
		OnSession: func(r repair.SessionReport) {
			m.ObserveSession(r)
			n.status.observe(r)
			if cfg.OnSession != nil {
				cfg.OnSession(r)
			}
		},
		OnTask: m.ObserveTask,
		OnFullRound: func(fr repair.FullRound) {
			m.ObserveFullRound(fr)
			if gc != nil {
				gc.MarkSafe(fr.Partition, fr.SafeBefore)
			}
		},
		Tasks: tasks,
	})
	if err != nil {
		return nil, err
	}
	m.WatchLoop(n.loop)
	n.status.setLoop(n.loop)
	return n, nil
}

// Engine returns the node's engine: the application's reads and writes.
func (n *Node) Engine() *engine.Engine { return n.e }

// Addr returns the address the Replica service is bound to (nil: none).
func (n *Node) Addr() net.Addr {
	if n.lis == nil {
		return nil
	}
	return n.lis.Addr()
}

// MetricsAddr returns the address metrics are served on (nil: none).
func (n *Node) MetricsAddr() net.Addr {
	if n.metricsLn == nil {
		return nil
	}
	return n.metricsLn.Addr()
}

// Loop returns the repair loop (nil without peers).
func (n *Node) Loop() *repair.Loop { return n.loop }

// Admission returns admission control (nil with AdmissionOff).
func (n *Node) Admission() *repair.Admission { return n.adm }

// Throttles returns the scan and write throttles.
func (n *Node) Throttles() (scan, write *repair.Throttle) { return n.scan, n.write }

// Metrics returns the node's Prometheus metrics.
func (n *Node) Metrics() *metrics.Metrics { return n.metrics }

// LastSessions returns the summaries of the node's last sessions (of the
// loop and on demand), as the Status call reports them.
func (n *Node) LastSessions() []plugin.SessionSummary { return n.status.LastSessions() }

// Run serves the Replica service (if the node listens), metrics, admission
// control and the repair loop (after Config.LoopDelay) until ctx ends,
// then stops them gracefully. It returns the server's error, or nil when
// ctx ended. Call it once.
func (n *Node) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	if n.adm != nil {
		wg.Add(1)
		go func() { defer wg.Done(); _ = n.adm.Run(ctx) }()
	}
	if n.metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", n.metrics.Handler())
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		ln := n.metricsLn
		n.metricsLn = nil // the server closes it
		wg.Add(2)
		go func() { defer wg.Done(); _ = srv.Serve(ln) }()
		go func() { defer wg.Done(); <-ctx.Done(); _ = srv.Close() }()
	}
	if n.loop != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if d := n.cfg.LoopDelay; d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return
				}
			}
			if err := n.loop.Run(ctx); err != nil && ctx.Err() == nil {
				n.cfg.Logger.Error("repair loop stopped", "err", err)
			}
		}()
	}
	if n.lis == nil {
		<-ctx.Done()
		return nil
	}
	lis := n.lis
	n.lis = nil // the server closes it
	err := plugin.ServeListener(ctx, n.e, lis, n.cfg.TLS, &n.listenOpts)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Close closes the peers' connections, the listeners Run did not take and
// the engine (see engine.Engine.Close). Call it after Run returned.
func (n *Node) Close() error {
	for _, p := range n.lazy {
		p.Close()
	}
	var errs []error
	for _, l := range []net.Listener{n.lis, n.metricsLn} {
		if l != nil {
			_ = l.Close()
		}
	}
	if n.e != nil {
		errs = append(errs, n.e.Close())
	}
	for _, c := range n.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
