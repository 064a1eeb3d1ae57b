package plugin

import (
	"context"
	"fmt"
	"strings"

	pb "github.com/pebble-ae/pebble-ae/plugin/gen/pebbleae/v1"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Role is a set of rights a client identity (the replica ID its certificate
// names) has on the network transport. Roles combine with |.
//
//	method                                   peer  writer  reader
//	Info                                      x      x       x
//	RangeHash                                 x              x
//	RangeScan                                 x              x
//	Fetch, FetchByHash, RangeSketch, Symbols  x
//	Apply, ApplyStream                        x
//	Put, Delete, PutContext                          x
//	Get, GetVersions                                 x       x
//	Status, Repair                                           x
//
// grpc.health.v1 and server reflection are open to every accepted
// identity. A method missing from the table (one a later proto adds before
// the table learns it) is refused to everybody: rights are declared, never
// assumed.
type Role uint8

const (
	// RolePeer is another replica: the replication RPCs its repair loop
	// calls.
	RolePeer Role = 1 << iota
	// RoleWriter is the application: its key-value RPCs, reads and writes.
	RoleWriter
	// RoleReader is an operator or a read-only tool: Info, Status,
	// RangeHash and RangeScan (diff), reads, and the Repair trigger.
	RoleReader

	// RoleAll is every right: what the in-process and go-plugin transports
	// (whose host owns the server) and a plaintext loopback listener give.
	RoleAll = RolePeer | RoleWriter | RoleReader
)

// String returns the roles joined by "+", e.g. "peer+reader".
func (r Role) String() string {
	var parts []string
	for _, n := range []struct {
		r    Role
		name string
	}{{RolePeer, "peer"}, {RoleWriter, "writer"}, {RoleReader, "reader"}} {
		if r&n.r != 0 {
			parts = append(parts, n.name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "+")
}

// methodRoles maps each Replica method to the roles that may call it.
var methodRoles = map[string]Role{
	pb.Replica_Info_FullMethodName:         RolePeer | RoleWriter | RoleReader,
	pb.Replica_RangeHash_FullMethodName:    RolePeer | RoleReader,
	pb.Replica_RangeScan_FullMethodName:    RolePeer | RoleReader,
	pb.Replica_Fetch_FullMethodName:        RolePeer,
	pb.Replica_Apply_FullMethodName:        RolePeer,
	pb.Replica_ApplyStream_FullMethodName:  RolePeer,
	pb.Replica_RangeSketch_FullMethodName:  RolePeer,
	pb.Replica_FetchByHash_FullMethodName:  RolePeer,
	pb.Replica_Symbols_FullMethodName:      RolePeer,
	pb.Replica_Put_FullMethodName:          RoleWriter,
	pb.Replica_Delete_FullMethodName:       RoleWriter,
	pb.Replica_PutContext_FullMethodName:   RoleWriter,
	pb.Replica_Write_FullMethodName:        RoleWriter,
	pb.Replica_WriteStream_FullMethodName:  RoleWriter,
	pb.Replica_WriteSession_FullMethodName: RoleWriter,
	pb.Replica_Get_FullMethodName:          RoleWriter | RoleReader,
	pb.Replica_GetMany_FullMethodName:      RoleWriter | RoleReader,
	pb.Replica_Scan_FullMethodName:         RoleWriter | RoleReader,
	pb.Replica_GetVersions_FullMethodName:  RoleWriter | RoleReader,
	pb.Replica_Status_FullMethodName:       RoleReader,
	pb.Replica_Repair_FullMethodName:       RoleReader,
}

// MethodRoles returns the roles that may call the gRPC method fullMethod
// ("/pebbleae.v1.Replica/Put"), and whether the method is known.
func MethodRoles(fullMethod string) (Role, bool) {
	if strings.HasPrefix(fullMethod, "/grpc.health.v1.") || strings.HasPrefix(fullMethod, "/grpc.reflection.") {
		return RoleAll, true
	}
	r, ok := methodRoles[fullMethod]
	return r, ok
}

// authorizer checks every call of a mutual-TLS listener against the
// caller's roles.
type authorizer struct {
	roles func(record.ReplicaID) Role
}

// check returns nil if the verified client certificate of ctx's connection
// has a role that may call method, and an error wrapping
// ErrPermissionDenied otherwise.
func (a authorizer) check(ctx context.Context, method string) error {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return fmt.Errorf("%w: %s: no peer", ErrPermissionDenied, method)
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return fmt.Errorf("%w: %s: no client certificate", ErrPermissionDenied, method)
	}
	id, err := peerID(ti.State.PeerCertificates[0])
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrPermissionDenied, method, err)
	}
	have := a.roles(id)
	need, known := MethodRoles(method)
	if !known {
		return fmt.Errorf("%w: %s: the method has no role (client %q)", ErrPermissionDenied, method, id)
	}
	if have&need == 0 {
		return fmt.Errorf("%w: %s needs one of the roles %s; client %q has %s", ErrPermissionDenied, method, need, id, have)
	}
	return nil
}

func (a authorizer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := a.check(ctx, info.FullMethod); err != nil {
		return nil, toStatus(err)
	}
	return handler(ctx, req)
}

func (a authorizer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := a.check(ss.Context(), info.FullMethod); err != nil {
		return toStatus(err)
	}
	return handler(srv, ss)
}

// callerID returns the replica ID of the verified client certificate of
// ctx's connection, or "(no certificate)" for the in-process, go-plugin and
// plaintext transports.
func callerID(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			if id, err := peerID(ti.State.PeerCertificates[0]); err == nil {
				return string(id)
			}
		}
	}
	return "(no certificate)"
}
