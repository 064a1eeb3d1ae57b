package plugin_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// TestHealthFollowsRebuild: a node served over mutual TLS answers
// grpc.health.v1 SERVING while its partitions are ready, NOT_SERVING while
// a rebuild is forced, SERVING again once it is done, through the standard
// gRPC health client; an unknown service is NotFound.
func TestHealthFollowsRebuild(t *testing.T) {
	ctx := testCtx(t)
	certs := t.TempDir()
	if err := plugin.GenerateCerts(certs, []record.ReplicaID{"a", "ops"}); err != nil {
		t.Fatal(err)
	}
	e := openEngine(t, "a", record.ModeLWW)
	fill(t, e, "k", 200, 10)
	cfg, err := plugin.LoadTLSConfig(certs, "a")
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		opts := &plugin.ListenOptions{
			Roles: func(id record.ReplicaID) plugin.Role {
				return map[record.ReplicaID]plugin.Role{"ops": plugin.RoleReader}[id]
			},
			HealthInterval: 20 * time.Millisecond,
		}
		if err := plugin.ServeListener(sctx, e, lis, cfg, opts); err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })

	ops, err := plugin.LoadTLSConfig(certs, "ops")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(ops)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	waitFor := func(service string, want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
			if err == nil && resp.Status == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("health of %q: %v, %v; want %v", service, resp.GetStatus(), err, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("", healthpb.HealthCheckResponse_SERVING)
	waitFor(plugin.HealthService, healthpb.HealthCheckResponse_SERVING)
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.such.Service"}); status.Code(err) != codes.NotFound {
		t.Errorf("health of an unknown service: %v, want NotFound", err)
	}

	// A forced rebuild (the engine's background worker does not run it:
	// CheckpointInterval -1), then the rebuild itself.
	if err := e.Tree().MarkRebuild(ctx, -1); err != nil {
		t.Fatal(err)
	}
	waitFor("", healthpb.HealthCheckResponse_NOT_SERVING)
	waitFor(plugin.HealthService, healthpb.HealthCheckResponse_NOT_SERVING)
	if err := e.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor("", healthpb.HealthCheckResponse_SERVING)
}
