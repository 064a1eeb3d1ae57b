package plugin

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/merkle"
	pb "github.com/pebble-ae/pebble-ae/plugin/gen/pebbleae/v1"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors of this package; test with errors.Is. Errors that come back from a
// remote replica also match the engine, merkle and reconcile sentinels the
// server-side error matched (see Error).
var (
	// ErrUnavailable reports a replica that cannot be reached: the plugin
	// process died, the connection broke, or the server is shutting down.
	// Retryable (after Client.Restart for a plugin).
	ErrUnavailable = errors.New("plugin: replica unavailable")
	// ErrLimitExceeded reports a request or answer over a limit of this
	// transport (keys per request, message size, value size).
	ErrLimitExceeded = errors.New("plugin: limit exceeded")
	// ErrBadResponse reports an answer that does not decode into the types
	// of reconcile (a fingerprint hash that is not 16 bytes, say).
	ErrBadResponse = errors.New("plugin: malformed response")
	// ErrPeerIdentity reports a peer whose certificate does not name the
	// expected replica, or is missing, or is not signed by the CA.
	ErrPeerIdentity = errors.New("plugin: peer identity mismatch")
	// ErrPermissionDenied reports a call outside the roles of the client
	// certificate's identity (see Role): an operator's certificate calling
	// Apply or Put, say.
	ErrPermissionDenied = errors.New("plugin: permission denied")
	// ErrInsecureAddress reports a plaintext listener or dial on an address
	// that is not loopback.
	ErrInsecureAddress = errors.New("plugin: plaintext on a non-loopback address")
	// ErrClosed reports use of a closed Client.
	ErrClosed = errors.New("plugin: client closed")
	// ErrInternal reports a server-side panic or an error with no mapping.
	ErrInternal = errors.New("plugin: internal server error")
	// ErrRepairUnavailable reports a Repair call on a server without a
	// repair loop (ServerOptions.Repairer unset).
	ErrRepairUnavailable = errors.New("plugin: repair is not available on this server")
	// ErrBadCertRequest reports a certificate request GenerateCerts or
	// GenerateNodeCert cannot serve: no, invalid or duplicate replica IDs,
	// an ID that cannot name a file, an empty host name. Nothing is written.
	ErrBadCertRequest = errors.New("plugin: bad certificate request")
	// ErrNotPluginProcess reports ServePlugin called in a process a host
	// did not start with Open (go-plugin's handshake cookie is missing):
	// the plugin command run by hand.
	ErrNotPluginProcess = errors.New("plugin: not started by a plugin host (the plugin command is run by plugin.Open, not by hand)")
)

// ErrorDomain is the domain of the google.rpc.ErrorInfo detail of every
// status this package returns.
const ErrorDomain = "pebble-ae.v1"

// errorsMetadataKey is the ErrorInfo metadata key listing sentinel names.
const errorsMetadataKey = "errors"

// sentinel is one Go sentinel error that travels by name.
type sentinel struct {
	name string
	err  error
	code codes.Code
}

// sentinels are every error that crosses the wire by name, in precedence
// order: the first one an error matches gives the status code. This is the
// one place where Go errors map to gRPC codes. A name is part of the wire
// protocol (the ErrorInfo metadata): it stays when the error's Go package
// changes (the record model's errors, now in reconcile/record, keep their
// "reconcile." names), so nodes of different releases understand each other.
var sentinels = []sentinel{
	{"context.Canceled", context.Canceled, codes.Canceled},
	{"context.DeadlineExceeded", context.DeadlineExceeded, codes.DeadlineExceeded},
	{"engine.ErrClosed", engine.ErrClosed, codes.Unavailable},
	{"merkle.ErrClosed", merkle.ErrClosed, codes.Unavailable},
	{"plugin.ErrUnavailable", ErrUnavailable, codes.Unavailable},
	{"merkle.ErrCorruption", merkle.ErrCorruption, codes.DataLoss},
	{"merkle.ErrUnknownPartition", merkle.ErrUnknownPartition, codes.NotFound},
	{"engine.ErrNotFound", engine.ErrNotFound, codes.NotFound},
	{"plugin.ErrLimitExceeded", ErrLimitExceeded, codes.ResourceExhausted},
	{"engine.ErrValueTooLarge", engine.ErrValueTooLarge, codes.ResourceExhausted},
	{"merkle.ErrNotReady", merkle.ErrNotReady, codes.FailedPrecondition},
	{"reconcile.ErrNotReady", reconcile.ErrNotReady, codes.FailedPrecondition},
	{"merkle.ErrParamsChanged", merkle.ErrParamsChanged, codes.FailedPrecondition},
	{"engine.ErrWrongMode", engine.ErrWrongMode, codes.FailedPrecondition},
	{"reconcile.ErrIncompatibleTrees", reconcile.ErrIncompatibleTrees, codes.FailedPrecondition},
	{"engine.ErrMergerMismatch", engine.ErrMergerMismatch, codes.FailedPrecondition},
	{"plugin.ErrRepairUnavailable", ErrRepairUnavailable, codes.Unimplemented},
	{"plugin.ErrPeerIdentity", ErrPeerIdentity, codes.PermissionDenied},
	{"plugin.ErrPermissionDenied", ErrPermissionDenied, codes.PermissionDenied},
	{"reconcile.ErrBadPeerAnswer", reconcile.ErrBadPeerAnswer, codes.Aborted},
	{"reconcile.ErrNotConverged", reconcile.ErrNotConverged, codes.Aborted},
	{"reconcile.ErrClockOffset", record.ErrClockOffset, codes.FailedPrecondition},
	{"reconcile.ErrClockSkew", reconcile.ErrClockSkew, codes.FailedPrecondition},
	{"engine.ErrBadRequest", engine.ErrBadRequest, codes.InvalidArgument},
	{"engine.ErrEmptyKey", engine.ErrEmptyKey, codes.InvalidArgument},
	{"engine.ErrKeyTooLarge", engine.ErrKeyTooLarge, codes.InvalidArgument},
	{"engine.ErrReservedKey", engine.ErrReservedKey, codes.InvalidArgument},
	{"engine.ErrInvalidOptions", engine.ErrInvalidOptions, codes.InvalidArgument},
	{"merkle.ErrInvalidRange", merkle.ErrInvalidRange, codes.InvalidArgument},
	{"merkle.ErrInvalidParams", merkle.ErrInvalidParams, codes.InvalidArgument},
	{"reconcile.ErrMalformedRecord", record.ErrMalformedRecord, codes.InvalidArgument},
	{"reconcile.ErrUnsupportedRecordVersion", record.ErrUnsupportedRecordVersion, codes.InvalidArgument},
	{"reconcile.ErrMalformedContext", record.ErrMalformedContext, codes.InvalidArgument},
	{"reconcile.ErrModeMismatch", record.ErrModeMismatch, codes.InvalidArgument},
	{"reconcile.ErrInvalidReplicaID", record.ErrInvalidReplicaID, codes.InvalidArgument},
	{"reconcile.ErrUnknownMode", record.ErrUnknownMode, codes.InvalidArgument},
	{"reconcile.ErrBadSketchRequest", reconcile.ErrBadSketchRequest, codes.InvalidArgument},
	{"reconcile.ErrSessionMisuse", reconcile.ErrSessionMisuse, codes.Internal},
	{"plugin.ErrBadResponse", ErrBadResponse, codes.Internal},
	{"plugin.ErrInternal", ErrInternal, codes.Internal},
}

var sentinelByName = func() map[string]sentinel {
	m := make(map[string]sentinel, len(sentinels))
	for _, s := range sentinels {
		m[s.name] = s
	}
	return m
}()

// toStatus converts a Go error into a gRPC status error carrying the names
// of every sentinel it matches. nil stays nil; an error that already is a
// status passes through.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok && !isRemote(err) {
		return err
	}
	code, names := classify(err)
	// Status messages travel as proto strings, which must be UTF-8 (a key
	// or replica ID quoted in the message need not be).
	st := status.New(code, strings.ToValidUTF8(err.Error(), "\uFFFD"))
	reason := strings.ToUpper(strings.TrimPrefix(strings.SplitN(names[0], ".", 2)[1], "Err"))
	if d, derr := st.WithDetails(&errdetails.ErrorInfo{
		Reason:   reason,
		Domain:   ErrorDomain,
		Metadata: map[string]string{errorsMetadataKey: strings.Join(names, ",")},
	}); derr == nil {
		st = d
	}
	return st.Err()
}

// classify returns the status code of err and the names of every sentinel
// it matches (plugin.ErrInternal for none).
func classify(err error) (codes.Code, []string) {
	code := codes.Unknown
	var names []string
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			if len(names) == 0 {
				code = s.code
			}
			names = append(names, s.name)
		}
	}
	if len(names) == 0 {
		code = codes.Internal
		names = append(names, "plugin.ErrInternal")
	}
	return code, names
}

// toCallError is toStatus for an error answered inside a message
// (WriteAck). nil stays nil.
func toCallError(err error) *pb.CallError {
	if err == nil {
		return nil
	}
	code, names := classify(err)
	return &pb.CallError{Code: uint32(code), Message: strings.ToValidUTF8(err.Error(), "\uFFFD"), Errors: names}
}

// fromCallError is fromStatus for an error answered inside a message.
func fromCallError(op string, ce *pb.CallError) error {
	if ce == nil {
		return nil
	}
	return newError(op, codes.Code(ce.GetCode()), ce.GetMessage(), ce.GetErrors())
}

// newError returns the *Error for a remote failure with the given code,
// message and sentinel names.
func newError(op string, code codes.Code, msg string, names []string) *Error {
	re := &Error{Code: code, Message: msg, Op: op}
	seen := map[error]bool{}
	add := func(e error) {
		if !seen[e] {
			seen[e] = true
			re.errs = append(re.errs, e)
		}
	}
	for _, name := range names {
		if s, ok := sentinelByName[name]; ok {
			add(s.err)
		}
	}
	for _, e := range codeSentinels(code, re.errs) {
		add(e)
	}
	return re
}

func isRemote(err error) bool {
	var re *Error
	return errors.As(err, &re)
}

// Error is an error returned by a remote replica (or by the transport). It
// matches, with errors.Is, every sentinel error of engine, merkle,
// reconcile and this package that the server-side error matched, and
// context.DeadlineExceeded / context.Canceled for those codes. Transport
// failures (a dead plugin, a broken connection) match ErrUnavailable.
type Error struct {
	// Code is the gRPC status code.
	Code codes.Code
	// Message is the server's error message.
	Message string
	// Op is the call that failed, e.g. "RangeHash".
	Op   string
	errs []error
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("plugin: %s: %s: %s", e.Op, e.Code, e.Message)
}

// Unwrap returns the matched sentinel errors. An Error built by hand
// (without them) unwraps to the sentinel implied by its code.
func (e *Error) Unwrap() []error {
	if e.errs == nil {
		return codeSentinels(e.Code, nil)
	}
	return e.errs
}

// GRPCStatus returns the status, so that status.Code works on the error.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// fromStatus converts an error returned by a gRPC call back into an *Error
// matching the sentinels the server named. A nil error stays nil.
func fromStatus(op string, err error) error {
	if err == nil {
		return nil
	}
	if isRemote(err) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		// Not a status: a local failure (a closed client, a bad answer).
		return err
	}
	var names []string
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != ErrorDomain {
			continue
		}
		names = append(names, strings.Split(info.GetMetadata()[errorsMetadataKey], ",")...)
	}
	return newError(op, st.Code(), st.Message(), names)
}

// codeSentinels returns the sentinels a status code implies beyond have.
func codeSentinels(code codes.Code, have []error) []error {
	switch code {
	case codes.DeadlineExceeded:
		return []error{context.DeadlineExceeded}
	case codes.Canceled:
		return []error{context.Canceled}
	case codes.Unavailable:
		return []error{ErrUnavailable}
	case codes.ResourceExhausted:
		return []error{ErrLimitExceeded}
	case codes.Internal, codes.Unknown, codes.DataLoss:
		if len(have) == 0 {
			return []error{ErrInternal}
		}
	}
	return nil
}
