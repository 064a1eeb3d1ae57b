package plugin_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/plugin"
	pb "github.com/pebble-ae/pebble-ae/plugin/gen/pebbleae/v1"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// serveWithRoles serves a new engine for id over mutual TLS on 127.0.0.1
// with the given roles until the test ends.
func serveWithRoles(t *testing.T, certDir string, id record.ReplicaID, roles map[record.ReplicaID]plugin.Role) *node {
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
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := plugin.ServeListener(ctx, e, lis, cfg, &plugin.ListenOptions{Roles: func(p record.ReplicaID) plugin.Role { return roles[p] }}); err != nil {
			t.Errorf("serve %s: %v", id, err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return &node{id: id, e: e, addr: lis.Addr().String()}
}

// TestRolesOverMutualTLS: over real mutual TLS on loopback, an operator's
// certificate (the reader role, what serve's --clients gives) is refused
// Apply, Put, Delete and the other replication and write RPCs with
// PERMISSION_DENIED (plugin.ErrPermissionDenied) and changes nothing; it may
// call Info, Status, RangeHash, RangeScan and reads. A peer may replicate
// but not write as the application; a writer may write but not Apply.
func TestRolesOverMutualTLS(t *testing.T) {
	ctx := testCtx(t)
	certs := t.TempDir()
	if err := plugin.GenerateCerts(certs, []record.ReplicaID{"n1", "peer", "ops", "app", "nobody"}); err != nil {
		t.Fatal(err)
	}
	n := serveWithRoles(t, certs, "n1", map[record.ReplicaID]plugin.Role{
		"peer": plugin.RolePeer, "ops": plugin.RoleReader, "app": plugin.RoleWriter,
	})
	if err := n.e.Put(ctx, []byte("k"), []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	rec := record.NewLWW("peer", record.Timestamp{WallTime: 1}, []byte("x"), false).Encode()
	entries := []reconcile.Entry{{Key: []byte("applied"), Record: rec}}
	calls := map[string]func(c *plugin.Client) error{
		"Info":        func(c *plugin.Client) error { _, err := c.Info(ctx); return err },
		"Status":      func(c *plugin.Client) error { _, err := c.Status(ctx, true); return err },
		"Get":         func(c *plugin.Client) error { _, err := c.Get(ctx, []byte("k")); return err },
		"GetVersions": func(c *plugin.Client) error { _, err := c.GetVersions(ctx, []byte("k")); return err },
		"RangeHash": func(c *plugin.Client) error {
			_, err := c.RangeHash(ctx, reconcile.RangeHashRequest{Ranges: []reconcile.KeyRange{{}}})
			return err
		},
		"RangeScan": func(c *plugin.Client) error {
			_, err := c.RangeScan(ctx, reconcile.RangeScanRequest{WithRecords: true})
			return err
		},
		"Fetch": func(c *plugin.Client) error { _, err := c.Fetch(ctx, 0, [][]byte{[]byte("k")}); return err },
		"Apply": func(c *plugin.Client) error { return c.Apply(ctx, 0, entries) },
		"FetchByHash": func(c *plugin.Client) error {
			_, err := c.FetchByHash(ctx, reconcile.FetchByHashRequest{Ranges: []reconcile.KeyRange{{}}, IDs: []uint64{1}})
			return err
		},
		"Symbols": func(c *plugin.Client) error { // a server stream
			s, err := c.OpenSymbols(ctx, reconcile.SymbolsRequest{Ranges: []reconcile.KeyRange{{}}, Max: 64})
			if err != nil {
				return err
			}
			defer s.Close()
			_, err = s.Next(ctx)
			return err
		},
		"Put":    func(c *plugin.Client) error { return c.Put(ctx, []byte("put"), []byte("v"), nil) },
		"Delete": func(c *plugin.Client) error { return c.Delete(ctx, []byte("k"), nil) },
	}
	allowed := map[record.ReplicaID][]string{
		"ops":  {"Info", "Status", "Get", "GetVersions", "RangeHash", "RangeScan"},
		"peer": {"Info", "RangeHash", "RangeScan", "Fetch", "Apply", "FetchByHash", "Symbols"},
		"app":  {"Info", "Get", "GetVersions", "Put", "Delete"},
	}
	// Denied calls first, so that the DB they are checked against holds
	// only "k".
	for _, phase := range []string{"denied", "allowed"} {
		for _, as := range []record.ReplicaID{"ops", "peer", "app"} {
			c := dialNode(t, certs, as, n)
			for name, call := range calls {
				ok := false
				for _, a := range allowed[as] {
					ok = ok || a == name
				}
				if (phase == "allowed") != ok {
					continue
				}
				err := call(c)
				denied := status.Code(err) == codes.PermissionDenied || errors.Is(err, plugin.ErrPermissionDenied)
				if ok && denied {
					t.Errorf("%s %s: refused: %v", as, name, err)
				}
				if !ok {
					t.Logf("%s %s: %v", as, name, err)
					if !denied || !errors.Is(err, plugin.ErrPermissionDenied) {
						t.Errorf("%s %s: %v, want PERMISSION_DENIED (plugin.ErrPermissionDenied)", as, name, err)
					}
					for _, k := range []string{"applied", "put"} {
						if _, err := n.e.Get(ctx, []byte(k)); !errors.Is(err, engine.ErrNotFound) {
							t.Errorf("%s %s: the refused call wrote %q", as, name, k)
						}
					}
					if _, err := n.e.Get(ctx, []byte("k")); err != nil {
						t.Errorf("%s %s: the refused call deleted k: %v", as, name, err)
					}
				}
			}
		}
	}
	// The repair trigger is the reader's: without a repair loop it is
	// UNIMPLEMENTED for ops, PERMISSION_DENIED for the others.
	for as, want := range map[record.ReplicaID]codes.Code{"ops": codes.Unimplemented, "peer": codes.PermissionDenied, "app": codes.PermissionDenied} {
		_, err := dialNode(t, certs, as, n).Repair(ctx, "peer", nil, false)
		if got := status.Code(err); got != want && !(want == codes.Unimplemented && errors.Is(err, plugin.ErrRepairUnavailable)) &&
			!(want == codes.PermissionDenied && errors.Is(err, plugin.ErrPermissionDenied)) {
			t.Errorf("%s Repair: %v, want %s", as, err, want)
		}
	}
	// An identity without a role cannot connect at all.
	cfg, err := plugin.LoadTLSConfig(certs, "nobody")
	if err != nil {
		t.Fatal(err)
	}
	if c, err := plugin.Dial(ctx, n.addr, cfg, "n1", nil); err == nil {
		_ = c.Close()
		t.Error("an identity without a role connected")
	}
}

// TestEveryMethodHasRoles: every method of the Replica service is in the
// role table, so that an RPC a later proto adds is not left refused to
// everybody (or, worse, open) by accident.
func TestEveryMethodHasRoles(t *testing.T) {
	for _, m := range pb.Replica_ServiceDesc.Methods {
		if _, ok := plugin.MethodRoles("/" + pb.Replica_ServiceDesc.ServiceName + "/" + m.MethodName); !ok {
			t.Errorf("method %s has no roles (plugin/roles.go)", m.MethodName)
		}
	}
	for _, s := range pb.Replica_ServiceDesc.Streams {
		if _, ok := plugin.MethodRoles("/" + pb.Replica_ServiceDesc.ServiceName + "/" + s.StreamName); !ok {
			t.Errorf("stream %s has no roles (plugin/roles.go)", s.StreamName)
		}
	}
}
