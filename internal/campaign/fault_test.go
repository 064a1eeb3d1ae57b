package campaign

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// servedEngine is an engine served over mutual TLS on a fixed loopback
// address, restartable (engine closed and reopened) in place.
type servedEngine struct {
	t      *testing.T
	id     record.ReplicaID
	dir    string
	addr   string
	tls    *tls.Config
	e      *engine.Engine
	cancel context.CancelFunc
	done   chan error
}

func openEngine(t *testing.T, dir string, id record.ReplicaID) *engine.Engine {
	e, err := engine.Open(dir, &engine.Options{ReplicaID: id})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (s *servedEngine) start() {
	s.e = openEngine(s.t, s.dir, s.id)
	var lis net.Listener
	var err error
	for range 50 {
		if lis, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.addr = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan error, 1)
	go func() {
		s.done <- plugin.ServeListener(ctx, s.e, lis, s.tls, &plugin.ListenOptions{ShutdownTimeout: 10 * time.Millisecond})
	}()
}

// stop stops serving (in-flight calls are cut after 10ms) and closes the
// engine.
func (s *servedEngine) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	if err := <-s.done; err != nil {
		s.t.Errorf("serve %s: %v", s.id, err)
	}
	if err := s.e.Close(); err != nil {
		s.t.Errorf("close %s: %v", s.id, err)
	}
	s.cancel = nil
}

// diverge writes n keys only to a, n only to b, and n to both with
// different values, under prefix.
func diverge(t *testing.T, a, b *engine.Engine, prefix string, n int) {
	ctx := context.Background()
	for _, side := range []struct {
		e    *engine.Engine
		name string
	}{{a, "a"}, {b, "b"}} {
		bt := side.e.NewBatch()
		for i := range n {
			must(t, bt.Put(fmt.Appendf(nil, "%s/only-%s/%05d", prefix, side.name, i), fmt.Appendf(nil, "value-%d-%0100d", i, 0)))
			must(t, bt.Put(fmt.Appendf(nil, "%s/both/%05d", prefix, i), fmt.Appendf(nil, "%s-%d", side.name, i)))
		}
		must(t, bt.Commit(ctx, engine.NoSync))
		bt.Close()
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// cleanFailure reports whether err is one of the typed errors a session
// over a faulty network may end with.
func cleanFailure(err error) bool {
	for _, target := range []error{
		plugin.ErrUnavailable, context.DeadlineExceeded, context.Canceled,
		reconcile.ErrNotConverged, reconcile.ErrBadPeerAnswer,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

func roots(t *testing.T, r reconcile.Replica) string {
	info, err := r.Info(context.Background())
	must(t, err)
	s := ""
	for _, p := range info.Partitions {
		hs, err := r.RangeHash(context.Background(), reconcile.RangeHashRequest{Partition: p.ID, Ranges: []reconcile.KeyRange{{}}})
		must(t, err)
		s += fmt.Sprintf("%d:%v;", p.ID, hs[0].Fingerprint)
	}
	return s
}

// TestFaultInjection runs anti-entropy sessions from replica a to replica
// b through a loopback TCP proxy in front of b's mutual-TLS server, with
// one fault per case: refused connections, delays beyond the deadline,
// connections reset mid-stream, every connection reset during a session,
// and b restarted mid-session. Each faulty session must fail with a typed
// error (or succeed) and leave both trees verifying; the next session
// without the fault must converge.
func TestFaultInjection(t *testing.T) {
	tmp := t.TempDir()
	certs := filepath.Join(tmp, "certs")
	must(t, plugin.GenerateCerts(certs, []record.ReplicaID{"a", "b"}, "127.0.0.1"))
	tlsA, err := plugin.LoadTLSConfig(certs, "a")
	must(t, err)
	tlsB, err := plugin.LoadTLSConfig(certs, "b")
	must(t, err)
	ea := openEngine(t, filepath.Join(tmp, "a"), "a")
	defer ea.Close()
	b := &servedEngine{t: t, id: "b", dir: filepath.Join(tmp, "b"), addr: "127.0.0.1:0", tls: tlsB}
	b.start()
	defer b.stop()
	proxy, err := NewProxy(b.addr)
	must(t, err)
	defer proxy.Close()

	session := func(timeout time.Duration) ([]reconcile.Stats, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c, err := plugin.Dial(ctx, proxy.Addr(), tlsA, "b", nil)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		// Small chunks so that a session spans many messages.
		return reconcile.SyncAll(ctx, ea, c, reconcile.SyncOptions{Session: reconcile.SessionConfig{ApplyLimit: 50, ScanLimit: 100}})
	}
	for i, tc := range []struct {
		name   string
		fault  Fault
		during func() // run concurrently with the faulty session
		// mustFail: the fault cannot let a session through.
		mustFail bool
	}{
		{name: "refused connections", fault: Fault{Refuse: true}, mustFail: true},
		{name: "delay past the deadline", fault: Fault{Delay: 150 * time.Millisecond}, mustFail: true},
		{name: "delay past the deadline, mid-session", fault: Fault{Delay: 300 * time.Millisecond, DelayAfter: 2 << 10}, mustFail: true},
		{name: "5ms delay per chunk", fault: Fault{Delay: 5 * time.Millisecond}},
		{name: "reset after 4 KiB", fault: Fault{ResetAfter: 4 << 10}, mustFail: true},
		{name: "reset after 64 KiB", fault: Fault{ResetAfter: 64 << 10}, mustFail: true},
		{name: "all connections reset mid-session", fault: Fault{Delay: time.Millisecond}, during: func() {
			time.Sleep(30 * time.Millisecond)
			proxy.ResetAll()
		}},
		{name: "peer restarted mid-session", fault: Fault{Delay: time.Millisecond}, during: func() {
			time.Sleep(30 * time.Millisecond)
			b.stop()
			b.start()
		}},
		{name: "partition while dialed", fault: Fault{Delay: time.Millisecond}, during: func() {
			time.Sleep(20 * time.Millisecond)
			proxy.SetFault(Fault{Refuse: true})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.t = t
			diverge(t, ea, b.e, fmt.Sprintf("case%d", i), 1500)
			proxy.SetFault(tc.fault)
			done := make(chan struct{})
			if tc.during != nil {
				go func() { defer close(done); tc.during() }()
			} else {
				close(done)
			}
			_, err := session(time.Second)
			<-done
			switch {
			case err == nil && tc.mustFail:
				t.Errorf("session through %q succeeded", tc.name)
			case err != nil && !cleanFailure(err):
				t.Errorf("session through %q: untyped error: %v", tc.name, err)
			}
			t.Logf("faulty session: %v", err)
			proxy.SetFault(Fault{})
			for _, e := range []*engine.Engine{ea, b.e} {
				ms, err := e.Verify(context.Background())
				must(t, err)
				if len(ms) > 0 {
					t.Errorf("%s: tree mismatches after the faulty session: %v", e.ReplicaID(), ms)
				}
			}
			stats, err := session(30 * time.Second)
			if err != nil {
				t.Fatalf("session after the fault: %v", err)
			}
			var repaired uint64
			for _, s := range stats {
				repaired += s.KeysRepaired()
			}
			if ra, rb := roots(t, ea), roots(t, b.e); ra != rb {
				t.Fatalf("not converged after a clean session: %s vs %s", ra, rb)
			}
			t.Logf("clean session repaired %d keys; converged", repaired)
		})
	}
	t.Logf("proxy: %d connections accepted, %d refused, %d reset", proxy.Accepted.Load(), proxy.Refused.Load(), proxy.Resets.Load())
}
