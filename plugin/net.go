package plugin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	pb "github.com/pebble-ae/pebble-ae/plugin/gen/pebbleae/v1"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// The network transport: the Replica service over TCP with mutual TLS.
//
// Identity: a node's replica ID is the Subject Common Name of its
// certificate (see certs.go). Dial checks that the server's certificate
// chains to the CA of its tls.Config and names the replica it dialed for;
// ListenAndServe requires a client certificate from the CA and, with
// ListenOptions.AllowPeer, a replica ID it accepts. Plaintext needs
// Insecure and a loopback address on both sides.

// ListenOptions configure ListenAndServe and ServeListener.
type ListenOptions struct {
	// Server configures the Replica service.
	Server ServerOptions
	// AllowPeer, if set, decides whether a client whose certificate names
	// the given replica ID may connect (typically: is it in the peer
	// list). Nil accepts any certificate signed by the CA (or, with Roles,
	// any identity that has a role).
	AllowPeer func(id record.ReplicaID) bool
	// Roles, if set, gives each client identity its roles (see Role): a
	// call outside them fails with ErrPermissionDenied
	// (PERMISSION_DENIED), and an identity with no role cannot connect.
	// Nil gives every accepted identity RoleAll, for a network of equally
	// trusted processes; the serve command always sets it. Plaintext
	// (Insecure, loopback only) has no identities and gives RoleAll.
	Roles func(id record.ReplicaID) Role
	// Insecure serves plaintext when tlsConfig is nil; refused unless the
	// address is loopback.
	Insecure bool
	// Ready, if set, is called with the bound address once listening.
	Ready func(addr net.Addr)
	// ShutdownTimeout bounds the graceful stop when ctx ends (default 5s).
	ShutdownTimeout time.Duration
	// HealthInterval is how often grpc.health.v1 follows the engine's
	// readiness: SERVING while every partition is ready, NOT_SERVING while
	// one is rebuilt and once the server shuts down (default
	// DefaultHealthInterval).
	HealthInterval time.Duration
}

// DialOptions configure Dial.
type DialOptions struct {
	// Client configures the returned Client.
	Client ClientOptions
	// Insecure dials plaintext when tlsConfig is nil; refused unless the
	// address is loopback.
	Insecure bool
}

// isLoopback reports whether addr's host is a loopback IP or "localhost".
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// peerID returns the replica ID named by a verified peer certificate.
func peerID(cert *x509.Certificate) (record.ReplicaID, error) {
	id := record.ReplicaID(cert.Subject.CommonName)
	if err := id.Validate(); err != nil {
		return "", fmt.Errorf("%w: certificate common name: %w", ErrPeerIdentity, err)
	}
	return id, nil
}

// ListenAndServe listens on addr (TCP) and serves e until ctx ends, then
// stops gracefully. tlsConfig (from LoadTLSConfig) must carry the server
// certificate and the client CA; nil serves plaintext, only with
// opts.Insecure on a loopback address. Server reflection is on.
func ListenAndServe(ctx context.Context, e *engine.Engine, addr string, tlsConfig *tls.Config, opts *ListenOptions) error {
	var o ListenOptions
	if opts != nil {
		o = *opts
	}
	if tlsConfig == nil && !(o.Insecure && isLoopback(addr)) {
		return insecureErr(addr, o.Insecure)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("plugin: listen %s: %w", addr, err)
	}
	return ServeListener(ctx, e, lis, tlsConfig, &o)
}

func insecureErr(addr string, insecureSet bool) error {
	if !insecureSet {
		return fmt.Errorf("%w: %s: no TLS configuration (plaintext needs the explicit insecure option)", ErrInsecureAddress, addr)
	}
	return fmt.Errorf("%w: %s: plaintext is only allowed on loopback addresses", ErrInsecureAddress, addr)
}

// ServeListener is ListenAndServe on an existing listener; it closes lis.
func ServeListener(ctx context.Context, e *engine.Engine, lis net.Listener, tlsConfig *tls.Config, opts *ListenOptions) error {
	var o ListenOptions
	if opts != nil {
		o = *opts
	}
	// Stop (after the graceful stop's timeout) returns only once every
	// handler has returned, so that the caller can close the engine right
	// after ServeListener returns: a Symbols handler cut by a reset
	// connection holds an engine snapshot until it returns. (Not for
	// go-plugin's server, whose own streams outlive its GracefulStop.)
	extra := []grpc.ServerOption{grpc.WaitForHandlers(true)}
	if tlsConfig == nil {
		if !o.Insecure || !isLoopback(lis.Addr().String()) {
			_ = lis.Close()
			return insecureErr(lis.Addr().String(), o.Insecure)
		}
	} else {
		allow := o.AllowPeer
		if o.Roles != nil {
			allow = func(id record.ReplicaID) bool {
				return o.Roles(id) != 0 && (o.AllowPeer == nil || o.AllowPeer(id))
			}
			az := authorizer{roles: o.Roles}
			extra = append(extra, grpc.ChainUnaryInterceptor(az.unary), grpc.ChainStreamInterceptor(az.stream))
		}
		cfg, err := serverTLS(tlsConfig, allow, o.Server.EnsureDefaults().Logger)
		if err == nil {
			err = checkOwnCert(cfg, e.ReplicaID())
		}
		if err != nil {
			_ = lis.Close()
			return err
		}
		extra = append(extra, grpc.Creds(credentials.NewTLS(cfg)))
	}
	gs, srv := newGRPCServer(e, &o.Server, extra...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	setHealth(e, hs) // before the first call, not after
	healthCtx, stopHealth := context.WithCancel(ctx)
	defer stopHealth()
	go watchHealth(healthCtx, e, hs, o.HealthInterval)
	if o.Ready != nil {
		o.Ready(lis.Addr())
	}
	done := make(chan error, 1)
	go func() { done <- gs.Serve(lis) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	stopHealth()
	hs.Shutdown() // NOT_SERVING while the server drains
	timeout := o.ShutdownTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	stopped := make(chan struct{})
	srv.Drain() // idle write sessions would hold the graceful stop
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(timeout):
		gs.Stop()
	}
	if err := <-done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// handshakeRefused reports whether err is what a client sees when the
// server ends the TLS handshake over the client's certificate.
func handshakeRefused(err error) bool {
	msg := err.Error()
	for _, s := range []string{"tls: bad certificate", "tls: certificate required", "tls: unknown certificate", "broken pipe", "connection reset by peer"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// clientIdentity returns the replica ID of cfg's client certificate, for
// error messages.
func clientIdentity(cfg *tls.Config) string {
	if len(cfg.Certificates) == 0 || len(cfg.Certificates[0].Certificate) == 0 {
		return "no client certificate"
	}
	leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		return "an unparsable certificate"
	}
	id, err := peerID(leaf)
	if err != nil {
		return fmt.Sprintf("subject %s", leaf.Subject)
	}
	return fmt.Sprintf("identity %q", id)
}

// HealthService is the service name the node's grpc.health.v1 reports
// for (besides "", the whole server).
const HealthService = "pebbleae.v1.Replica"

// DefaultHealthInterval is how often a served node's health follows the
// readiness of its partitions.
const DefaultHealthInterval = 250 * time.Millisecond

// watchHealth sets hs to SERVING while every partition of e is ready and
// to NOT_SERVING while one is rebuilt, checking every interval until ctx
// ends.
func watchHealth(ctx context.Context, e *engine.Engine, hs *health.Server, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultHealthInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			setHealth(e, hs)
		}
	}
}

// setHealth sets hs from the readiness of e's partitions.
func setHealth(e *engine.Engine, hs *health.Server) {
	st := healthpb.HealthCheckResponse_SERVING
	if len(e.NotReady()) > 0 {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	hs.SetServingStatus("", st)
	hs.SetServingStatus(HealthService, st)
}

// checkOwnCert refuses to serve replica id with a certificate naming
// another replica.
func checkOwnCert(cfg *tls.Config, id record.ReplicaID) error {
	if len(cfg.Certificates) == 0 || len(cfg.Certificates[0].Certificate) == 0 {
		return nil // GetCertificate: checked by the clients
	}
	leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		return fmt.Errorf("plugin: server certificate: %w", err)
	}
	if leaf.Subject.CommonName != string(id) {
		return fmt.Errorf("%w: serving replica %q with the certificate of %q", ErrPeerIdentity, id, leaf.Subject.CommonName)
	}
	return nil
}

// serverTLS returns the server side of mutual TLS: client certificates
// required and verified against the CA, and the client's replica ID
// checked by allow.
func serverTLS(base *tls.Config, allow func(record.ReplicaID) bool, logger *slog.Logger) (*tls.Config, error) {
	cfg := base.Clone()
	if len(cfg.Certificates) == 0 && cfg.GetCertificate == nil {
		return nil, errors.New("plugin: TLS configuration without a server certificate")
	}
	if cfg.ClientCAs == nil {
		return nil, errors.New("plugin: TLS configuration without a client CA (mutual TLS is required)")
	}
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
			logger.Warn("refused a TLS handshake: no verified client certificate")
			return fmt.Errorf("%w: no verified client certificate", ErrPeerIdentity)
		}
		id, err := peerID(cs.PeerCertificates[0])
		if err != nil {
			logger.Warn("refused a TLS handshake: unusable client certificate", "subject", cs.PeerCertificates[0].Subject.String(), "err", err)
			return err
		}
		if allow != nil && !allow(id) {
			logger.Warn("refused a TLS handshake: the client's identity has no role here", "identity", string(id))
			return fmt.Errorf("%w: client %q is not an allowed peer", ErrPeerIdentity, id)
		}
		return nil
	}
	return cfg, nil
}

// clientTLS returns the client side of mutual TLS: the server's chain is
// verified against the CA (RootCAs) and its certificate must name want.
// Go's host-name check is replaced by the replica-ID check (the address
// says where a replica is, the certificate who it is), hence
// InsecureSkipVerify with a VerifyConnection that does the full chain
// verification itself. The identity error, if any, is stored in failed.
func clientTLS(base *tls.Config, want record.ReplicaID, failed *atomic.Pointer[error]) (*tls.Config, error) {
	if base.RootCAs == nil {
		return nil, errors.New("plugin: TLS configuration without a CA (RootCAs)")
	}
	cfg := base.Clone()
	roots := cfg.RootCAs
	cfg.InsecureSkipVerify = true
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) (err error) {
		defer func() {
			if err != nil {
				failed.Store(&err)
			}
		}()
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: server sent no certificate", ErrPeerIdentity)
		}
		leaf := cs.PeerCertificates[0]
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			return fmt.Errorf("%w: server certificate: %w", ErrPeerIdentity, err)
		}
		id, err := peerID(leaf)
		if err != nil {
			return err
		}
		if id != want {
			return fmt.Errorf("%w: server at this address is replica %q, want %q", ErrPeerIdentity, id, want)
		}
		return nil
	}
	return cfg, nil
}

// Dial connects to the replica wantPeerID at addr (TCP) and checks that it
// answers: with tlsConfig (from LoadTLSConfig), over mutual TLS, refusing a
// server whose certificate does not chain to the CA or does not name
// wantPeerID (an error matching ErrPeerIdentity); with a nil tlsConfig,
// plaintext, only with opts.Insecure on a loopback address.
func Dial(ctx context.Context, addr string, tlsConfig *tls.Config, wantPeerID record.ReplicaID, opts *DialOptions) (*Client, error) {
	var o DialOptions
	if opts != nil {
		o = *opts
	}
	if err := wantPeerID.Validate(); err != nil {
		return nil, err
	}
	c := newClient(&o.Client, nil)
	var failed atomic.Pointer[error]
	dopts := c.opts.dialOptions(c.counter)
	if tlsConfig == nil {
		if !o.Insecure || !isLoopback(addr) {
			return nil, insecureErr(addr, o.Insecure)
		}
		dopts = append(dopts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		cfg, err := clientTLS(tlsConfig, wantPeerID, &failed)
		if err != nil {
			return nil, err
		}
		dopts = append(dopts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, dopts...)
	if err != nil {
		return nil, fmt.Errorf("plugin: dial %s: %w", addr, err)
	}
	rpc := pb.NewReplicaClient(conn)
	c.mu.rpc, c.mu.closer = rpc, conn.Close
	info, err := c.Info(ctx)
	if err != nil {
		_ = conn.Close()
		if f := failed.Load(); f != nil {
			return nil, fmt.Errorf("plugin: dial %s: %w", addr, *f)
		}
		if tlsConfig != nil && handshakeRefused(err) {
			// TLS 1.3 finishes the client's side of the handshake before
			// the server checks the client's certificate: a refusal then
			// reaches the client as an alert or as a connection closed
			// under its first write.
			return nil, fmt.Errorf("plugin: dial %s: %w: the server refused this client's certificate (%s) during the TLS handshake: %w", addr, ErrPeerIdentity, clientIdentity(tlsConfig), err)
		}
		return nil, fmt.Errorf("plugin: dial %s: %w", addr, err)
	}
	if info.ID != wantPeerID {
		_ = conn.Close()
		return nil, fmt.Errorf("plugin: dial %s: %w: replica answers as %q, want %q", addr, ErrPeerIdentity, info.ID, wantPeerID)
	}
	return c, nil
}
