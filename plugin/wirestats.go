package plugin

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc/stats"
)

// WireStats count a Client's traffic, measured by a gRPC stats handler on
// its connection. Payload figures are protobuf bytes plus the 5-byte gRPC
// message header, before compression: they are what reconcile's wire model
// (reconcile.RequestWireSize) predicts. Wire figures are the same messages
// as framed after compression. HTTP/2 frames, headers and TLS records are
// not counted.
type WireStats struct {
	// Calls is the number of RPCs started.
	Calls uint64
	// MessagesSent and MessagesReceived count gRPC messages (a RangeScan
	// stream answers with one or more).
	MessagesSent, MessagesReceived uint64
	// PayloadSent and PayloadReceived are uncompressed bytes with framing.
	PayloadSent, PayloadReceived uint64
	// WireSent and WireReceived are compressed bytes with framing.
	WireSent, WireReceived uint64
	// CompressedSent and CompressedReceived count compressed messages.
	CompressedSent, CompressedReceived uint64
}

// Payload returns PayloadSent + PayloadReceived.
func (w WireStats) Payload() uint64 { return w.PayloadSent + w.PayloadReceived }

// Wire returns WireSent + WireReceived.
func (w WireStats) Wire() uint64 { return w.WireSent + w.WireReceived }

// grpcHeaderLen is gRPC's per-message header (flag byte, 4-byte length).
const grpcHeaderLen = 5

// wireCounter is a client-side stats.Handler counting payload bytes.
type wireCounter struct {
	calls, msgsSent, msgsRecv       atomic.Uint64
	paySent, payRecv                atomic.Uint64
	wireSent, wireRecv              atomic.Uint64
	compressedSent, compressedRecvd atomic.Uint64
}

var _ stats.Handler = (*wireCounter)(nil)

func (w *wireCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (w *wireCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	switch s := s.(type) {
	case *stats.Begin:
		w.calls.Add(1)
	case *stats.OutPayload:
		w.msgsSent.Add(1)
		w.paySent.Add(uint64(s.Length + grpcHeaderLen))
		w.wireSent.Add(uint64(s.WireLength))
		if s.CompressedLength != s.Length {
			w.compressedSent.Add(1)
		}
	case *stats.InPayload:
		w.msgsRecv.Add(1)
		w.payRecv.Add(uint64(s.Length + grpcHeaderLen))
		w.wireRecv.Add(uint64(s.WireLength))
		if s.CompressedLength != s.Length {
			w.compressedRecvd.Add(1)
		}
	}
}

func (w *wireCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (w *wireCounter) HandleConn(context.Context, stats.ConnStats) {}

func (w *wireCounter) snapshot() WireStats {
	return WireStats{
		Calls:              w.calls.Load(),
		MessagesSent:       w.msgsSent.Load(),
		MessagesReceived:   w.msgsRecv.Load(),
		PayloadSent:        w.paySent.Load(),
		PayloadReceived:    w.payRecv.Load(),
		WireSent:           w.wireSent.Load(),
		WireReceived:       w.wireRecv.Load(),
		CompressedSent:     w.compressedSent.Load(),
		CompressedReceived: w.compressedRecvd.Load(),
	}
}

func (w *wireCounter) reset() {
	for _, c := range []*atomic.Uint64{&w.calls, &w.msgsSent, &w.msgsRecv, &w.paySent, &w.payRecv, &w.wireSent, &w.wireRecv, &w.compressedSent, &w.compressedRecvd} {
		c.Store(0)
	}
}
