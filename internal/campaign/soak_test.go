package campaign

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile"
)

// maxSoakRounds bounds the repair rounds after the soak: one round is a
// session between every pair of nodes, so one round suffices without
// concurrent writes; the bound leaves room for a session the background
// loops cut short.
const maxSoakRounds = 3

// TestSoak (opt-in: -campaign.soak=DURATION) runs three serve nodes whose
// peer links go through loopback proxies, a client writing and deleting
// with a ledger, and random events for DURATION: SIGKILL and restart,
// SIGTERM and restart, and partitions of one node from the others (its
// proxies refuse and reset connections). Then the partitions heal, the
// load stops, and the nodes must converge within maxSoakRounds rounds of
// pairwise sessions; every node must satisfy the ledger; a clean stop must
// verify.
func TestSoak(t *testing.T) {
	if *flagSoak <= 0 {
		t.Skip("opt-in: -campaign.soak=DURATION")
	}
	rng := rand.New(rand.NewPCG(seed(t), 2))
	const n = 3
	var proxies [n][n]*Proxy
	c := newCluster(t, n, 200*time.Millisecond, func(from, to int, addrs []string) string {
		p, err := NewProxy(addrs[to])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		proxies[from][to] = p
		return p.Addr()
	})
	ctx, cancel := context.WithTimeout(context.Background(), *flagSoak+10*time.Minute)
	defer cancel()
	for i := range n {
		c.start(i)
	}
	partition := func(i int, refuse bool) {
		for j := range n {
			if j != i {
				proxies[i][j].SetFault(Fault{Refuse: refuse})
				proxies[j][i].SetFault(Fault{Refuse: refuse})
			}
		}
	}
	l := startLoad(ctx, c, 6, 300, 0.25, rng.Uint64())
	var kills, terms, partitions int
	start := time.Now()
	for time.Since(start) < *flagSoak {
		time.Sleep(time.Duration(200+rng.IntN(1000)) * time.Millisecond)
		i := rng.IntN(n)
		switch rng.IntN(3) {
		case 0:
			kills++
			c.nodes[i].Kill()
			time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
			c.start(i)
		case 1:
			terms++
			if err := c.nodes[i].Stop(); err != nil {
				t.Errorf("%s: SIGTERM: %v", c.nodes[i].ID, err)
			}
			c.start(i)
		case 2:
			partitions++
			partition(i, true)
			time.Sleep(time.Duration(500+rng.IntN(2000)) * time.Millisecond)
			partition(i, false)
		}
	}
	l.halt()
	acked, failed := l.ledger.Counts()

	// Bounded convergence: rounds of pairwise sessions, run from here.
	clients := make([]*plugin.Client, n)
	for i := range n {
		clients[i] = c.dial(ctx, i)
		defer clients[i].Close()
	}
	rounds, converged := 0, false
	for !converged && rounds < maxSoakRounds {
		rounds++
		for i := range n {
			j := (i + 1) % n
			if _, err := reconcile.SyncAll(ctx, clients[i], clients[j], reconcile.SyncOptions{}); err != nil {
				t.Logf("round %d: session %s-%s: %v", rounds, c.nodes[i].ID, c.nodes[j].ID, err)
			}
		}
		converged = true
		r0, err := Roots(ctx, clients[0])
		must(t, err)
		for _, cl := range clients[1:] {
			r, err := Roots(ctx, cl)
			must(t, err)
			converged = converged && r == r0
		}
	}
	if !converged {
		t.Errorf("no convergence within %d rounds", maxSoakRounds)
	}
	lost, keys := 0, 0
	for i := range n {
		k, bad := l.checkNode(ctx, i, true)
		keys = k
		lost += len(bad)
		for _, b := range bad[:min(len(bad), 10)] {
			t.Errorf("ledger: %s", b)
		}
	}
	mismatches := 0
	for i, nd := range c.nodes {
		if err := nd.Stop(); err != nil {
			t.Errorf("%s: clean stop: %v", nd.ID, err)
		}
		if msg := c.verify(i); msg != "" {
			mismatches++
			t.Error(msg)
		}
	}
	var refused, resets int64
	for i := range n {
		for j := range n {
			if p := proxies[i][j]; p != nil {
				refused += p.Refused.Load()
				resets += p.Resets.Load()
			}
		}
	}
	t.Logf("soak %v: %d SIGKILL, %d SIGTERM restarts, %d partitions (%d connections refused, %d reset); "+
		"%d writes acknowledged (25%% deletes), %d failed; %d keys; converged in %d round(s) (bound %d): %v; "+
		"ledger violations: %d; tree mismatches: %d",
		*flagSoak, kills, terms, partitions, refused, resets, acked, failed, keys, rounds, maxSoakRounds, converged, lost, mismatches)
}
