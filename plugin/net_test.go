package plugin_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
)

// node is one served replica on 127.0.0.1.
type node struct {
	id   record.ReplicaID
	e    *engine.Engine
	addr string
}

// serveNode serves a new engine for id over mutual TLS on 127.0.0.1 until
// the test ends; only the given peers may connect.
func serveNode(t *testing.T, certDir string, id record.ReplicaID, peers ...record.ReplicaID) *node {
	t.Helper()
	e := openEngine(t, id, record.ModeLWW)
	cfg, err := plugin.LoadTLSConfig(certDir, id)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[record.ReplicaID]bool{}
	for _, p := range peers {
		allowed[p] = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := plugin.ServeListener(ctx, e, lis, cfg, &plugin.ListenOptions{AllowPeer: func(p record.ReplicaID) bool { return allowed[p] }}); err != nil {
			t.Errorf("serve %s: %v", id, err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return &node{id: id, e: e, addr: lis.Addr().String()}
}

func dialNode(t *testing.T, certDir string, as record.ReplicaID, n *node) *plugin.Client {
	t.Helper()
	cfg, err := plugin.LoadTLSConfig(certDir, as)
	if err != nil {
		t.Fatal(err)
	}
	c, err := plugin.Dial(testCtx(t), n.addr, cfg, n.id, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestMutualTLS: three nodes on 127.0.0.1 converge after divergence;
// clients without a certificate, with one from another CA, with a
// non-peer identity, or dialing for the wrong replica ID are refused.
func TestMutualTLS(t *testing.T) {
	ctx := testCtx(t)
	certs, otherCA := t.TempDir(), t.TempDir()
	ids := []record.ReplicaID{"a", "b", "c"}
	if err := plugin.GenerateCerts(certs, append(ids, "mallory")); err != nil {
		t.Fatal(err)
	}
	if err := plugin.GenerateCerts(otherCA, []record.ReplicaID{"a"}); err != nil {
		t.Fatal(err)
	}
	nodes := map[record.ReplicaID]*node{}
	for _, id := range ids {
		nodes[id] = serveNode(t, certs, id, ids...)
	}
	a := nodes["a"]

	good, err := plugin.LoadTLSConfig(certs, "b")
	if err != nil {
		t.Fatal(err)
	}
	noCert := &tls.Config{RootCAs: good.RootCAs}
	foreign, err := plugin.LoadTLSConfig(otherCA, "a")
	if err != nil {
		t.Fatal(err)
	}
	// A client cert from the other CA, trusting the right CA for the server.
	foreignClient := foreign.Clone()
	foreignClient.RootCAs = good.RootCAs
	mallory, err := plugin.LoadTLSConfig(certs, "mallory")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		want record.ReplicaID
		is   error
	}{
		{"no client certificate", noCert, "a", plugin.ErrUnavailable},
		{"client certificate from another CA", foreignClient, "a", plugin.ErrUnavailable},
		{"server from another CA", foreign, "a", plugin.ErrPeerIdentity},
		{"client not a peer", mallory, "a", plugin.ErrUnavailable},
		{"wrong replica ID", good, "b", plugin.ErrPeerIdentity},
	} {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := plugin.Dial(dctx, a.addr, tc.cfg, tc.want, nil)
		cancel()
		if err == nil {
			_ = c.Close()
			t.Errorf("%s: connected", tc.name)
			continue
		}
		if !errors.Is(err, tc.is) {
			t.Errorf("%s: %v, want an error matching %v", tc.name, err, tc.is)
		}
		t.Logf("%s: refused: %v", tc.name, err)
	}

	// Plaintext: refused off loopback, on both sides.
	if err := plugin.ListenAndServe(ctx, a.e, "0.0.0.0:0", nil, &plugin.ListenOptions{Insecure: true}); !errors.Is(err, plugin.ErrInsecureAddress) {
		t.Errorf("plaintext listen on 0.0.0.0: %v", err)
	}
	if err := plugin.ListenAndServe(ctx, a.e, "127.0.0.1:0", nil, nil); !errors.Is(err, plugin.ErrInsecureAddress) {
		t.Errorf("plaintext listen without Insecure: %v", err)
	}
	if _, err := plugin.Dial(ctx, "192.0.2.1:7000", nil, "a", &plugin.DialOptions{Insecure: true}); !errors.Is(err, plugin.ErrInsecureAddress) {
		t.Errorf("plaintext dial off loopback: %v", err)
	}
	// A server refuses to present another replica's certificate.
	bcfg, _ := plugin.LoadTLSConfig(certs, "b")
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := plugin.ServeListener(ctx, a.e, lis, bcfg, nil); !errors.Is(err, plugin.ErrPeerIdentity) {
		t.Errorf("serving a with b's certificate: %v", err)
	}

	// Divergence: each node gets its own keys and some shared keys
	// written differently; then pairwise sessions from a's side converge.
	clients := map[record.ReplicaID]*plugin.Client{}
	for _, id := range ids {
		clients[id] = dialNode(t, certs, "a", nodes[id])
		fill(t, clients[id], "own-"+string(id)+"-", 100, 40)
		fill(t, clients[id], "shared-", 50, 20+len(id))
	}
	for round := 0; round < 2; round++ {
		for _, pair := range [][2]record.ReplicaID{{"a", "b"}, {"b", "c"}, {"a", "c"}} {
			if _, err := reconcile.SyncPartition(ctx, clients[pair[0]], clients[pair[1]], 0, reconcile.SyncOptions{}); err != nil {
				t.Fatalf("session %s-%s: %v", pair[0], pair[1], err)
			}
		}
	}
	var roots []reconcile.Fingerprint
	for _, id := range ids {
		st, err := clients[id].Status(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		roots = append(roots, *st.Partitions[0].Root)
	}
	if roots[0] != roots[1] || roots[1] != roots[2] || roots[0].Count != 350 {
		t.Fatalf("nodes did not converge: %v", roots)
	}
	if ws := clients["a"].WireStats(); ws.Wire() == 0 {
		t.Fatal("no bytes counted")
	}
}

// TestInsecureLoopbackAndReflection: plaintext on 127.0.0.1 with the
// explicit option works, and server reflection lists the service.
func TestInsecureLoopbackAndReflection(t *testing.T) {
	ctx := testCtx(t)
	e := openEngine(t, "a", record.ModeLWW)
	addrCh := make(chan net.Addr, 1)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- plugin.ListenAndServe(sctx, e, "127.0.0.1:0", nil, &plugin.ListenOptions{Insecure: true, Ready: func(a net.Addr) { addrCh <- a }})
	}()
	addr := (<-addrCh).String()
	c, err := plugin.Dial(ctx, addr, nil, "a", &plugin.DialOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, []byte("k"), []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := plugin.Dial(ctx, addr, nil, "zz", &plugin.DialOptions{Insecure: true}); !errors.Is(err, plugin.ErrPeerIdentity) {
		t.Fatalf("dial for the wrong replica: %v", err)
	}
	_ = c.Close()

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range resp.GetListServicesResponse().GetService() {
		found = found || s.GetName() == "pebbleae.v1.Replica"
	}
	if !found {
		t.Fatalf("reflection does not list pebbleae.v1.Replica: %v", resp)
	}
	_ = conn.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestDrainWriteSessions: a served node stops gracefully while a client
// keeps a write session open (Drain ends it; the stop does not wait out a
// one-hour shutdown timeout), and the client's next write fails with
// ErrUnavailable instead of hanging.
func TestDrainWriteSessions(t *testing.T) {
	ctx := testCtx(t)
	e := openEngine(t, "a", record.ModeLWW)
	addrCh := make(chan net.Addr, 1)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- plugin.ListenAndServe(sctx, e, "127.0.0.1:0", nil, &plugin.ListenOptions{
			Insecure: true, ShutdownTimeout: time.Hour, Ready: func(a net.Addr) { addrCh <- a },
		})
	}()
	c, err := plugin.Dial(ctx, (<-addrCh).String(), nil, "a", &plugin.DialOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Put(ctx, []byte("k"), []byte("v"), nil); err != nil { // opens the session
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, []byte("k2"), []byte("v"), nil); !errors.Is(err, plugin.ErrUnavailable) {
		t.Fatalf("Put after the server stopped: %v, want ErrUnavailable", err)
	}
	if v, err := e.Get(ctx, []byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("k = %q, %v", v, err)
	}
}
