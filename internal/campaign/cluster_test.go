package campaign

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
)

// TestThreeNodesConvergeAfterOutage runs three `pebble-ae serve` nodes over
// mutual TLS on loopback. One is stopped while the other two take writes,
// updates and deletes; it is restarted, and the repair loops alone (no
// repair command) bring all three to identical roots and records. Every
// session that repaired something used the symbol streams, as the served
// node's log lines say. (During the base fill, sessions with an empty side
// descend the trees by design.)
func TestThreeNodesConvergeAfterOutage(t *testing.T) {
	c := newCluster(t, 3, 100*time.Millisecond, func(_, to int, addrs []string) string { return addrs[to] })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for i := range c.nodes {
		c.start(i)
	}
	// A common base, then n3 goes down.
	n1 := c.dial(ctx, 0)
	defer n1.Close()
	for i := range 300 {
		if err := n1.Put(ctx, fmt.Appendf(nil, "k%03d", i), []byte("base"), engine.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.converge(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.nodes[2].Stop(); err != nil {
		t.Fatal(err)
	}
	// While n3 is down: new keys, updates and deletes on n1 and n2.
	n2 := c.dial(ctx, 1)
	defer n2.Close()
	want := map[string]string{}
	for i := range 300 {
		want[fmt.Sprintf("k%03d", i)] = "base"
	}
	for i := range 200 {
		w, k := n1, fmt.Sprintf("k%03d", i)
		if i%2 == 1 {
			w = n2
		}
		var err error
		switch i % 4 {
		case 0, 1:
			err = w.Put(ctx, []byte(k), []byte("updated"), nil)
			want[k] = "updated"
		case 2:
			err = w.Delete(ctx, []byte(k), nil)
			delete(want, k)
		case 3:
			k = fmt.Sprintf("new%03d", i)
			err = w.Put(ctx, []byte(k), []byte("new"), nil)
			want[k] = "new"
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// Sessions from here on: during the base fill a replica was empty,
	// and sessions with an empty side descend the trees by design (every
	// record differs; set reconciliation would name them all).
	var before []int
	for _, n := range c.nodes {
		before = append(before, len(n.Output()))
	}
	c.start(2)
	took, err := c.converge(ctx, 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("converged %v after the restart", took.Round(time.Millisecond))
	for i := range c.nodes {
		cl := c.dial(ctx, i)
		for k, v := range want {
			got, err := cl.Get(ctx, []byte(k))
			if err != nil || string(got) != v {
				t.Fatalf("%s: %q = %q, %v; want %q", c.nodes[i].ID, k, got, err, v)
			}
		}
		for j := 2; j < 200; j += 4 {
			k := fmt.Sprintf("k%03d", j)
			if _, err := cl.Get(ctx, []byte(k)); err == nil {
				t.Fatalf("%s: deleted key %q is back", c.nodes[i].ID, k)
			}
		}
		cl.Close()
	}
	// Every session that repaired something reports its method: symbols.
	repaired := regexp.MustCompile(`msg="anti-entropy session repaired divergence".*`)
	sessions := 0
	for i, n := range c.nodes {
		out := n.Output() // kept across restarts
		for _, line := range repaired.FindAllString(out[min(before[i], len(out)):], -1) {
			sessions++
			if !strings.Contains(line, "method=symbols ") {
				t.Errorf("%s: a session did not use symbol streams: %s", n.ID, line)
			}
		}
	}
	if sessions == 0 {
		t.Fatal("no session repaired anything after the restart")
	}
	t.Logf("%d repairing sessions after the restart, all with symbol streams", sessions)
}
