package node_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/plugin/node"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// TestNodesConvergeOverTLS: three nodes of the node type, bound on loopback
// with mutual TLS and each other as peers, diverge (keys only one holds,
// updates and deletes on either side) and converge through their repair
// loops alone; every session that repaired used symbol streams.
func TestNodesConvergeOverTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	certs := t.TempDir()
	ids := []record.ReplicaID{"n1", "n2", "n3"}
	if err := plugin.GenerateCerts(certs, ids, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	lis := make([]net.Listener, len(ids))
	for i := range ids {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis[i] = l
	}
	nodes := make([]*node.Node, len(ids))
	for i, id := range ids {
		tlsCfg, err := plugin.LoadTLSConfig(certs, id)
		if err != nil {
			t.Fatal(err)
		}
		var peers []node.Peer
		for j, p := range ids {
			if j != i {
				peers = append(peers, node.Peer{ID: p, Addr: lis[j].Addr().String()})
			}
		}
		n, err := node.Open(node.Config{Dir: t.TempDir(), Engine: engine.Options{ReplicaID: id}, Listener: lis[i],
			TLS: tlsCfg, Peers: peers, RepairInterval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = n
	}
	// Divergence: every node holds 300 common keys; each also holds 50 of
	// its own, updates 20 common keys and deletes 10.
	for _, n := range nodes {
		for k := range 300 {
			must(t, n.Engine().Put(ctx, fmt.Appendf(nil, "k%04d", k), []byte("v0"), nil))
		}
	}
	for i, n := range nodes {
		e := n.Engine()
		for k := range 50 {
			must(t, e.Put(ctx, fmt.Appendf(nil, "own-%d-%03d", i, k), []byte("v"), nil))
		}
		for k := range 20 {
			must(t, e.Put(ctx, fmt.Appendf(nil, "k%04d", 100*i+k), fmt.Appendf(nil, "v%d", i+1), nil))
		}
		for k := range 10 {
			must(t, e.Delete(ctx, fmt.Appendf(nil, "k%04d", 100*i+50+k), nil))
		}
	}
	done := make(chan error, len(nodes))
	rctx, stop := context.WithCancel(ctx)
	for _, n := range nodes {
		go func() { done <- n.Run(rctx) }()
	}
	defer func() {
		stop()
		for range nodes {
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
		for _, n := range nodes {
			if err := n.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		}
	}()
	var roots []reconcile.Fingerprint
	for {
		roots = roots[:0]
		for _, n := range nodes {
			h, err := n.Engine().RangeHash(ctx, reconcile.RangeHashRequest{Ranges: []reconcile.KeyRange{{}}})
			must(t, err)
			roots = append(roots, h[0].Fingerprint)
		}
		if roots[0] == roots[1] && roots[1] == roots[2] {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("not converged within a minute: roots %v", roots)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// 300 common keys (30 of them now tombstones, which the tree counts)
	// and 3×50 of their own.
	if want := uint64(300 + 150); roots[0].Count != want {
		t.Fatalf("converged on %d keys, want %d", roots[0].Count, want)
	}
	for i, n := range nodes {
		for k := range 20 {
			v, err := n.Engine().Get(ctx, fmt.Appendf(nil, "k%04d", 100*(len(nodes)-1)+k))
			if err != nil || string(v) != fmt.Sprint("v", len(nodes)) {
				t.Fatalf("node %d: key %d reads %q, %v", i, k, v, err)
			}
		}
		if _, err := n.Engine().Get(ctx, []byte("k0050")); !errors.Is(err, engine.ErrNotFound) {
			t.Fatalf("node %d: a deleted key reads %v", i, err)
		}
		repaired := 0
		for _, s := range n.LastSessions() {
			if s.Stats.KeysRepaired() == 0 {
				continue
			}
			repaired++
			if s.Stats.Method != reconcile.MethodSymbols {
				t.Errorf("node %d: a session with %s repaired %d keys by %q, want symbols", i, s.Peer, s.Stats.KeysRepaired(), s.Stats.Method)
			}
		}
		t.Logf("node %d: %d of its last %d sessions repaired", i, repaired, len(n.LastSessions()))
	}
}

// TestOpenRefusesBadConfig: a configuration Open cannot run fails with
// ErrInvalidConfig before anything is opened.
func TestOpenRefusesBadConfig(t *testing.T) {
	for _, cfg := range []node.Config{
		{},
		{Dir: t.TempDir(), Engine: engine.Options{ReplicaID: "a"}, RepairFloor: 1.5},
		{Dir: t.TempDir(), Engine: engine.Options{ReplicaID: "a"}, SessionMemory: -1},
		{Dir: t.TempDir(), Engine: engine.Options{ReplicaID: "a"}, Listen: "127.0.0.1:0"}, // no TLS
		{Dir: t.TempDir(), Engine: engine.Options{ReplicaID: "a"}, Insecure: true, Peers: []node.Peer{{ID: "", Addr: "127.0.0.1:1"}}},
	} {
		if n, err := node.Open(cfg); !errors.Is(err, node.ErrInvalidConfig) {
			if n != nil {
				n.Close()
			}
			t.Errorf("%+v: %v, want ErrInvalidConfig", cfg, err)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
