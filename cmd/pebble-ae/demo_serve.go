package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/internal/units"
	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/plugin/node"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"github.com/pebble-ae/pebble-ae/reconcile/repair"
)

// demoRepairInterval is the served demo's base repair interval.
const demoRepairInterval = 200 * time.Millisecond

// demoConvergeTimeout bounds how long the served demo waits for its loops.
const demoConvergeTimeout = 2 * time.Minute

// demoCluster runs the demo's replicas as nodes (package plugin/node, the
// node pebble-ae serve runs): each bound on loopback with mutual TLS and
// every other replica as its peer.
type demoCluster struct {
	certs string
	addrs []string
	// lis holds each node's bound listener until its first open, so that
	// no other process takes the address in between.
	lis   []net.Listener
	out   io.Writer
	nodes []*node.Node

	mu sync.Mutex // serializes the session lines
}

func newDemoCluster(certs string, replicas int, out io.Writer) (*demoCluster, error) {
	ids := make([]record.ReplicaID, replicas)
	for i := range ids {
		ids[i] = record.ReplicaID(fmt.Sprintf("r%d", i+1))
	}
	if err := plugin.GenerateCerts(certs, ids, "127.0.0.1"); err != nil {
		return nil, err
	}
	c := &demoCluster{certs: certs, addrs: make([]string, replicas), lis: make([]net.Listener, replicas), out: out, nodes: make([]*node.Node, replicas)}
	// Bind every node's address first: each is the others' peer.
	for i := range c.addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			c.closeListeners()
			return nil, err
		}
		c.addrs[i], c.lis[i] = l.Addr().String(), l
	}
	return c, nil
}

// open opens replica i as a node on its address (the same after a
// restart, so its peers find it again). It does not run yet.
func (c *demoCluster) open(i int, dir string, o *engine.Options) (*node.Node, error) {
	tlsCfg, err := plugin.LoadTLSConfig(c.certs, o.ReplicaID)
	if err != nil {
		return nil, err
	}
	var peers []node.Peer
	for j, a := range c.addrs {
		if j != i {
			peers = append(peers, node.Peer{ID: record.ReplicaID(fmt.Sprintf("r%d", j+1)), Addr: a})
		}
	}
	lis := c.lis[i] // the first open serves the listener bound above
	c.lis[i] = nil
	n, err := node.Open(node.Config{
		Dir: dir, Engine: *o, Listen: c.addrs[i], Listener: lis, TLS: tlsCfg, Peers: peers,
		RepairInterval: demoRepairInterval,
		OnSession: func(r repair.SessionReport) {
			if r.Stats.KeysRepaired() == 0 {
				return
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			fmt.Fprintf(c.out, "  %s with %s, partition %d: %d keys repaired (%s, %d rounds, %s of metadata, %s)\n",
				o.ReplicaID, r.Peer, r.Partition, r.Stats.KeysRepaired(), r.Stats.Method, r.Stats.Rounds,
				units.Bytes(r.Stats.BytesMetadata()), r.Stats.Duration.Round(time.Millisecond))
		},
	})
	if err != nil {
		if lis != nil {
			_ = lis.Close()
		}
		return nil, fmt.Errorf("node %s: %w", o.ReplicaID, err)
	}
	c.nodes[i] = n
	return n, nil
}

// closeListeners closes the listeners no node has taken yet.
func (c *demoCluster) closeListeners() {
	for i, l := range c.lis {
		if l != nil {
			_ = l.Close()
			c.lis[i] = nil
		}
	}
}

// converge runs every node until all replicas' roots are equal (or the
// timeout), then stops them.
func (c *demoCluster) converge(ctx context.Context, reps []*demoNode) error {
	ctx, cancel := context.WithTimeout(ctx, demoConvergeTimeout)
	defer cancel()
	rctx, stop := context.WithCancel(ctx)
	errs := make(chan error, len(c.nodes))
	for _, n := range c.nodes {
		go func() { errs <- n.Run(rctx) }()
	}
	start := time.Now()
	var err error
	for {
		var equal bool
		if equal, err = rootsEqual(ctx, reps); err != nil || equal {
			break
		}
		select {
		case <-ctx.Done():
			err = fmt.Errorf("the repair loops did not converge the replicas within %s", demoConvergeTimeout)
		case <-time.After(50 * time.Millisecond):
			continue
		}
		break
	}
	stop()
	for range c.nodes {
		if rerr := <-errs; rerr != nil && err == nil {
			err = rerr
		}
	}
	if err == nil {
		fmt.Fprintf(c.out, "  converged by the loops alone in %s\n", time.Since(start).Round(time.Millisecond))
	}
	return err
}

// rootsEqual reports whether every replica has the same fingerprint in
// every partition.
func rootsEqual(ctx context.Context, reps []*demoNode) (bool, error) {
	var first []reconcile.Fingerprint
	for i, n := range reps {
		info, err := n.rep.Info(ctx)
		if err != nil {
			return false, err
		}
		var fps []reconcile.Fingerprint
		for _, p := range info.Partitions {
			h, err := n.rep.RangeHash(ctx, reconcile.RangeHashRequest{Partition: p.ID, Ranges: []reconcile.KeyRange{p.Range}})
			if err != nil {
				return false, err
			}
			fps = append(fps, h[0].Fingerprint)
		}
		if i == 0 {
			first = fps
			continue
		}
		for j := range fps {
			if fps[j] != first[j] {
				return false, nil
			}
		}
	}
	return true, nil
}
