package plugin

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"github.com/pebble-ae/pebble-ae/engine"
	pb "github.com/pebble-ae/pebble-ae/plugin/gen/pebbleae/v1"
	"google.golang.org/grpc"
)

// Handshake is the go-plugin handshake shared by the host (Open) and the
// plugin (Serve). ProtocolVersion changes with incompatible changes of the
// pebbleae.v1 service; the magic cookie only keeps the binary from being run
// by hand as a plugin (it is not a security measure).
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "PEBBLE_AE_PLUGIN",
	MagicCookieValue: "e1c3b7a0-pebble-ae-replica-v1",
}

// PluginName is the name of the replica plugin in the go-plugin plugin set.
const PluginName = "replica"

// replicaPlugin is the go-plugin glue: gRPC only.
type replicaPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	server *Server // plugin side only
}

var _ goplugin.GRPCPlugin = (*replicaPlugin)(nil)

// GRPCServer registers the Replica service (and reflection) on the plugin's
// gRPC server.
func (p *replicaPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	if p.server == nil {
		return errors.New("plugin: no engine to serve")
	}
	p.server.Register(s)
	return nil
}

// GRPCClient returns the raw stub; Open wraps it in a Client.
func (p *replicaPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return pb.NewReplicaClient(conn), nil
}

// ServeOptions configure the plugin side (Serve, ServePlugin).
type ServeOptions struct {
	// Server configures the Replica service.
	Server ServerOptions
	// Logger is the plugin's logger; go-plugin forwards its stderr to the
	// host's logger (default: JSON to stderr at Info, which the host parses).
	Logger hclog.Logger
	// KeepGOMAXPROCS leaves GOMAXPROCS as it is: by default ServePlugin
	// raises it by the engine's background work (engine.ReserveProcs).
	KeepGOMAXPROCS bool
}

func (o *ServeOptions) logger() hclog.Logger {
	if o != nil && o.Logger != nil {
		return o.Logger
	}
	return hclog.New(&hclog.LoggerOptions{Name: "pebble-ae-plugin", Output: os.Stderr, JSONFormat: true, Level: hclog.Info})
}

// Serve serves e as a go-plugin plugin (gRPC only, AutoMTLS when the host
// asks for it) until the host stops the plugin. It does not close e. It
// must be called from a process started by Open (the host sets the
// handshake's magic cookie); run by hand, it prints a message and exits the
// process with status 1.
func Serve(e *engine.Engine, opts *ServeOptions) {
	var so *ServerOptions
	if opts != nil {
		so = &opts.Server
	}
	srv := NewServer(e, so)
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         goplugin.PluginSet{PluginName: &replicaPlugin{server: srv}},
		GRPCServer: func(gopts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(gopts, srv.GRPCServerOptions()...)...)
		},
		Logger: opts.logger(),
	})
}

// ServePlugin opens the engine in dir with eopts, serves it as a plugin
// (Serve) until the host stops it, then closes the engine (checkpointing
// its tree). It is what `pebble-ae plugin` runs. Unless
// opts.KeepGOMAXPROCS, it first raises GOMAXPROCS by the engine's
// background work (engine.ReserveProcs), so that compactions never hold
// every P while a request waits. In a process no host
// started (run by hand), it returns ErrNotPluginProcess and opens nothing.
func ServePlugin(dir string, eopts *engine.Options, opts *ServeOptions) error {
	// Check go-plugin's handshake before opening (and maybe creating) the
	// database: run by hand, the process would only print go-plugin's
	// message and exit.
	if os.Getenv(Handshake.MagicCookieKey) != Handshake.MagicCookieValue {
		return ErrNotPluginProcess
	}
	if opts == nil || !opts.KeepGOMAXPROCS {
		before, after := engine.ReserveProcs(eopts)
		opts.logger().Debug("GOMAXPROCS", "before", before, "after", after)
	}
	e, err := engine.Open(dir, eopts)
	if err != nil {
		return err
	}
	Serve(e, opts)
	return e.Close()
}

// OpenOptions configure Open.
type OpenOptions struct {
	// Client configures the returned Client.
	Client ClientOptions
	// Checksum, if set, is the SHA-256 of the plugin binary: Open refuses
	// to start a binary with another checksum (go-plugin's SecureConfig).
	Checksum []byte
	// Logger receives go-plugin's logs and the plugin's stderr (default:
	// warnings and errors to stderr).
	Logger hclog.Logger
	// StartTimeout bounds the plugin's start (default: the context's
	// deadline, or 1 minute).
	StartTimeout time.Duration
	// Env are extra environment variables for the plugin process.
	Env []string
}

// Open starts the plugin binary at path with args (for pebble-ae itself:
// "plugin", "--dir", D, ...) as a go-plugin subprocess (gRPC only,
// AutoMTLS; the process dies with its parent on Linux) and returns a
// client for it. Close stops the plugin gracefully, Kill at once; Ping
// detects a dead plugin and Restart starts a new one.
func Open(ctx context.Context, path string, args ...string) (*Client, error) {
	return OpenWithOptions(ctx, path, args, nil)
}

// OpenWithOptions is Open with options.
func OpenWithOptions(ctx context.Context, path string, args []string, opts *OpenOptions) (*Client, error) {
	var o OpenOptions
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = hclog.New(&hclog.LoggerOptions{Name: "pebble-ae-plugin", Output: os.Stderr, Level: hclog.Warn})
	}
	c := newClient(&o.Client, nil)
	start := func(ctx context.Context) (pb.ReplicaClient, func() error, error) {
		p, rpc, err := startPlugin(ctx, path, args, &o, c)
		if err != nil {
			return nil, nil, err
		}
		c.proc.Store(p)
		return rpc, func() error { p.Kill(); return nil }, nil
	}
	rpc, closer, err := start(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.rpc, c.mu.closer, c.restart = rpc, closer, start
	return c, nil
}

func startPlugin(ctx context.Context, path string, args []string, o *OpenOptions, c *Client) (*goplugin.Client, pb.ReplicaClient, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), o.Env...)
	setParentDeathSignal(cmd)
	timeout := o.StartTimeout
	if d, ok := ctx.Deadline(); ok && (timeout == 0 || time.Until(d) < timeout) {
		timeout = max(time.Until(d), time.Millisecond)
	}
	var secure *goplugin.SecureConfig
	if len(o.Checksum) > 0 {
		secure = &goplugin.SecureConfig{Checksum: o.Checksum, Hash: sha256.New()}
	}
	gc := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          goplugin.PluginSet{PluginName: &replicaPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         os.Getenv("SCRATCH_NOTLS") == "",
		SecureConfig:     secure,
		Logger:           o.Logger,
		StartTimeout:     timeout,
		GRPCDialOptions:  c.opts.dialOptions(c.counter),
	})
	proto, err := gc.Client()
	if err != nil {
		gc.Kill()
		return nil, nil, fmt.Errorf("plugin: start %s: %w", path, err)
	}
	raw, err := proto.Dispense(PluginName)
	if err != nil {
		gc.Kill()
		return nil, nil, fmt.Errorf("plugin: %s: %w", path, err)
	}
	return gc, raw.(pb.ReplicaClient), nil
}

// Ping checks that the replica answers: for a plugin, that its process
// is alive and its gRPC server healthy; otherwise an Info call. A dead
// replica gives an error matching ErrUnavailable.
func (c *Client) Ping(ctx context.Context) error {
	if p := c.proc.Load(); p != nil {
		if p.Exited() {
			return fmt.Errorf("%w: plugin process exited", ErrUnavailable)
		}
		proto, err := p.Client()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		if err := proto.Ping(); err != nil {
			return fromStatus("Ping", err)
		}
		return nil
	}
	_, err := c.Info(ctx)
	return err
}

// Kill stops a plugin process at once (without the graceful shutdown of
// Close) and closes the client. For other transports it is Close.
func (c *Client) Kill() {
	c.closeSessions()
	if p := c.proc.Load(); p != nil {
		p.Kill()
	}
	_ = c.Close()
}

// PluginPID returns the process ID of a plugin (0 for other transports or
// before start).
func (c *Client) PluginPID() int {
	p := c.proc.Load()
	if p == nil {
		return 0
	}
	if rc := p.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}
