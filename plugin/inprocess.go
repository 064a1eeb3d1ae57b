package plugin

import (
	"context"
	"errors"
	"net"

	"github.com/pebble-ae/pebble-ae/engine"
	pb "github.com/pebble-ae/pebble-ae/plugin/gen/pebbleae/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
)

// inProcessBuffer is the size of the in-memory pipe of InProcess.
const inProcessBuffer = 1 << 20

// InProcess serves e over an in-memory connection (gRPC's bufconn: real
// gRPC framing, encoding and limits, no sockets) and returns a client for
// it. Close stops the server; it does not close e.
func InProcess(e *engine.Engine, sopts *ServerOptions, copts *ClientOptions) (*Client, error) {
	lis := bufconn.Listen(inProcessBuffer)
	gs := NewGRPCServer(e, sopts)
	done := make(chan error, 1)
	go func() { done <- gs.Serve(lis) }()

	c := newClient(copts, nil)
	conn, err := grpc.NewClient("passthrough:///bufconn", append(c.opts.dialOptions(c.counter),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)...)
	if err != nil {
		gs.Stop()
		return nil, err
	}
	c.mu.rpc = pb.NewReplicaClient(conn)
	c.mu.closer = func() error {
		err := conn.Close()
		gs.Stop()
		if serr := <-done; serr != nil && !errors.Is(serr, grpc.ErrServerStopped) {
			err = errors.Join(err, serr)
		}
		return err
	}
	return c, nil
}
