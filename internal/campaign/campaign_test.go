package campaign

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/internal/loopback"
	"github.com/pebble-ae/pebble-ae/plugin"
)

var (
	flagCycles = flag.Int("campaign.cycles", 10, "SIGKILL cycles of TestCrashCampaign")
	flagSeed   = flag.Uint64("campaign.seed", 0, "seed of the campaigns (0: from the clock; printed)")
	flagSoak   = flag.Duration("campaign.soak", 0, "duration of the load phase of TestSoak (0: skip the soak)")
)

var binPath string

// TestMain builds the pebble-ae binary once; the campaigns run it as real
// processes.
func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "pebble-ae-campaign-")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "pebble-ae")
	if out, err := exec.Command("go", "build", "-o", binPath, "github.com/pebble-ae/pebble-ae/cmd/pebble-ae").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		panic("build: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func seed(t *testing.T) uint64 {
	s := *flagSeed
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -campaign.seed=%d)", s, s)
	return s
}

// run runs the binary and returns its combined output and exit code.
func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(binPath, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return string(out), 0
}

// cluster is a set of serve nodes, each peering with every other through
// peerAddr (a direct address or a proxy).
type cluster struct {
	t     *testing.T
	certs string
	nodes []*Node
}

// newCluster generates certificates and configures (not starts) n nodes;
// peerAddr(from, to) is the address node from dials for node to.
func newCluster(t *testing.T, n int, interval time.Duration, peerAddr func(from, to int, addrs []string) string) *cluster {
	tmp := t.TempDir()
	c := &cluster{t: t, certs: filepath.Join(tmp, "certs")}
	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprintf("n%d", i+1))
	}
	if out, code := run(t, "certs", "--dir", c.certs, "--ids", strings.Join(append(ids, "client"), ",")); code != 0 {
		t.Fatalf("certs: %s", out)
	}
	addrs, err := loopback.FreeAddrs(n)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		var peers []string
		for j := range n {
			if j != i {
				peers = append(peers, ids[j]+"="+peerAddr(i, j, addrs))
			}
		}
		c.nodes = append(c.nodes, &Node{
			Bin: binPath, ID: ids[i], Dir: filepath.Join(tmp, ids[i]), Addr: addrs[i], Certs: c.certs,
			Peers: strings.Join(peers, ","), RepairInterval: interval, Roles: "client=all",
		})
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.Kill()
		}
		if t.Failed() {
			for _, n := range c.nodes {
				out := n.Output()
				if len(out) > 4000 {
					out = "..." + out[len(out)-4000:]
				}
				t.Logf("output of %s:\n%s", n.ID, out)
			}
		}
	})
	return c
}

func (c *cluster) start(i int) {
	if err := c.nodes[i].Start(); err != nil {
		c.t.Fatal(err)
	}
}

// clientAs is the identity the test's client uses to reach node i: one with
// every role (--roles client=all), since the test writes, reads the status
// and runs sessions itself.
func (c *cluster) clientAs(i int) string { return "client" }

func (c *cluster) dial(ctx context.Context, i int) *plugin.Client {
	cl, err := c.nodes[i].Dial(ctx, c.clientAs(i))
	if err != nil {
		c.t.Fatalf("%s: %v", c.nodes[i].ID, err)
	}
	return cl
}

// verify runs `pebble-ae verify` on node i's directory (the node must be
// stopped) and returns "" or the failure.
func (c *cluster) verify(i int) string {
	n := c.nodes[i]
	out, code := run(c.t, "verify", "--id", n.ID, n.Dir)
	if code != 0 || !strings.Contains(out, "tree matches the data") {
		return fmt.Sprintf("verify %s: exit %d: %s", n.ID, code, out)
	}
	return ""
}

// load writes and deletes keys through the nodes with a ledger. Each key
// has a home node it is always written to, and one writer goroutine, so a
// key's writes are sequential and timestamped by one HLC: a later write
// always wins, on every replica.
type load struct {
	c      *cluster
	ledger *Ledger
	// pause: writers hold it shared per write; checks take it exclusively.
	pause   sync.RWMutex
	stop    atomic.Bool
	wg      sync.WaitGroup
	seq     atomic.Uint64
	deletes float64
}

// startLoad starts writers goroutines over keysPerWriter keys each.
func startLoad(ctx context.Context, c *cluster, writers, keysPerWriter int, deletes float64, seed uint64) *load {
	l := &load{c: c, ledger: NewLedger(), deletes: deletes}
	for w := range writers {
		l.wg.Add(1)
		go l.writer(ctx, w, keysPerWriter, rand.New(rand.NewPCG(seed, uint64(w))))
	}
	return l
}

func (l *load) writer(ctx context.Context, w, nkeys int, rng *rand.Rand) {
	defer l.wg.Done()
	clients := make([]*plugin.Client, len(l.c.nodes))
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	for !l.stop.Load() && ctx.Err() == nil {
		k := rng.IntN(nkeys)
		home := k % len(l.c.nodes)
		key := fmt.Sprintf("w%02d/%s/%05d", w, l.c.nodes[home].ID, k)
		op := Op{Value: fmt.Appendf(nil, "%s#%d", key, l.seq.Add(1))}
		if rng.Float64() < l.deletes {
			op = Op{Delete: true}
		}
		l.pause.RLock()
		if clients[home] == nil {
			dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			c, err := l.c.nodes[home].Dial(dctx, l.c.clientAs(home))
			cancel()
			if err != nil {
				l.pause.RUnlock()
				time.Sleep(20 * time.Millisecond)
				continue
			}
			clients[home] = c
		}
		idx := l.ledger.Begin(key, op)
		var err error
		if op.Delete {
			err = clients[home].Delete(ctx, []byte(key), nil) // nil: Sync
		} else {
			err = clients[home].Put(ctx, []byte(key), op.Value, nil) // nil: Sync
		}
		l.ledger.Done(key, idx, err == nil)
		l.pause.RUnlock()
		if err != nil {
			clients[home].Close()
			clients[home] = nil
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// halt stops the writers and waits for them.
func (l *load) halt() {
	l.stop.Store(true)
	l.wg.Wait()
}

// checkNode checks every ledger key homed on node i (or every key, with
// all) against node i's records; the caller pauses the load. It returns
// the number of keys checked and the violations.
func (l *load) checkNode(ctx context.Context, i int, all bool) (int, []string) {
	var keys []string
	for _, k := range l.ledger.Keys() {
		if all || strings.Contains(k, "/"+l.c.nodes[i].ID+"/") {
			keys = append(keys, k)
		}
	}
	cl := l.c.dial(ctx, i)
	defer cl.Close()
	states, err := Fetch(ctx, cl, keys)
	if err != nil {
		return 0, []string{fmt.Sprintf("%s: fetch: %v", l.c.nodes[i].ID, err)}
	}
	var bad []string
	for _, k := range keys {
		if err := l.ledger.Check(k, states[k]); err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", l.c.nodes[i].ID, err))
		}
	}
	return len(keys), bad
}

// converge waits until every node's roots are equal, up to timeout, and
// returns how long it took.
func (c *cluster) converge(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	clients := make([]*plugin.Client, len(c.nodes))
	for i := range c.nodes {
		clients[i] = c.dial(ctx, i)
		defer clients[i].Close()
	}
	var last []string
	for time.Since(start) < timeout {
		last = last[:0]
		for _, cl := range clients {
			r, err := Roots(ctx, cl)
			if err != nil {
				r = err.Error()
			}
			last = append(last, r)
		}
		equal := true
		for _, r := range last[1:] {
			equal = equal && r == last[0]
		}
		if equal {
			return time.Since(start), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start), fmt.Errorf("no convergence within %v: roots %q", timeout, last)
}

// TestCrashCampaign runs two serve nodes over mutual TLS with a repair
// running between them and a client writing and deleting with Sync under
// a ledger, and SIGKILLs a random node at random moments. After each kill:
// `pebble-ae verify` on the crashed directory (tree equals the data), a
// restart, and the ledger checked on the restarted node (every write it
// acknowledged is there, or a later one). At the end the load stops, the
// nodes must converge (equal roots) and both must satisfy the whole
// ledger, and a clean stop must verify.
func TestCrashCampaign(t *testing.T) {
	rng := rand.New(rand.NewPCG(seed(t), 1))
	c := newCluster(t, 2, 100*time.Millisecond, func(_, to int, addrs []string) string { return addrs[to] })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	for i := range c.nodes {
		c.start(i)
	}
	for i := range c.nodes {
		c.dial(ctx, i).Close()
	}
	l := startLoad(ctx, c, 4, 200, 0.1, rng.Uint64())
	var mismatches, lost, checked int
	cycles := *flagCycles
	start := time.Now()
	for cycle := range cycles {
		time.Sleep(time.Duration(50+rng.IntN(450)) * time.Millisecond)
		victim := rng.IntN(len(c.nodes))
		c.nodes[victim].Kill()
		if msg := c.verify(victim); msg != "" {
			mismatches++
			t.Errorf("cycle %d: %s", cycle, msg)
		}
		c.start(victim)
		l.pause.Lock()
		n, bad := l.checkNode(ctx, victim, false)
		l.pause.Unlock()
		checked += n
		lost += len(bad)
		for _, b := range bad[:min(len(bad), 10)] {
			t.Errorf("cycle %d: lost acknowledged write: %s", cycle, b)
		}
	}
	l.halt()
	acked, failed := l.ledger.Counts()
	took, err := c.converge(ctx, 60*time.Second)
	if err != nil {
		t.Error(err)
	}
	keys := 0
	for i := range c.nodes {
		n, bad := l.checkNode(ctx, i, true)
		keys = n
		lost += len(bad)
		for _, b := range bad[:min(len(bad), 10)] {
			t.Errorf("after convergence: %s", b)
		}
	}
	for i, n := range c.nodes {
		if err := n.Stop(); err != nil {
			t.Errorf("%s: clean stop: %v", n.ID, err)
		}
		if msg := c.verify(i); msg != "" {
			mismatches++
			t.Error(msg)
		}
	}
	t.Logf("crash campaign: %d SIGKILL cycles in %v; %d writes acknowledged, %d failed (node down); %d keys; "+
		"%d per-cycle key checks; lost acknowledged writes: %d; tree mismatches: %d; converged %v after the load stopped",
		cycles, time.Since(start).Round(time.Millisecond), acked, failed, keys, checked, lost, mismatches, took.Round(time.Millisecond))
}
