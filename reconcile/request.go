package reconcile

import (
	"fmt"
)

// Side names one of the two replicas of a session.
type Side uint8

const (
	// SideA is the first replica of a session.
	SideA Side = iota
	// SideB is the second replica of a session.
	SideB
)

// String returns "A" or "B".
func (s Side) String() string {
	switch s {
	case SideA:
		return "A"
	case SideB:
		return "B"
	}
	return fmt.Sprintf("Side(%d)", uint8(s))
}

// RequestKind is the Replica method a Request calls.
type RequestKind uint8

const (
	// RequestInfo calls Replica.Info.
	RequestInfo RequestKind = iota + 1
	// RequestRangeHash calls Replica.RangeHash with Request.RangeHash.
	RequestRangeHash
	// RequestRangeScan calls Replica.RangeScan with Request.RangeScan.
	RequestRangeScan
	// RequestFetch calls Replica.Fetch(Request.Partition, Request.Keys).
	RequestFetch
	// RequestApply calls Replica.Apply(Request.Partition, Request.Entries)
	// and, when Request.Confirm is set, then RangeHash of the partition's
	// range; or, with Request.ApplyAndHash, Replica.ApplyAndHash (one call).
	RequestApply
	// RequestRangeSketch calls Replica.RangeSketch with Request.Sketch.
	RequestRangeSketch
	// RequestFetchByHash calls Replica.FetchByHash with
	// Request.FetchByHash.
	RequestFetchByHash
	// RequestSymbols opens Replica.OpenSymbols with Request.Symbols
	// and streams its chunks: each is delivered as a Response of its own,
	// and the request stays in flight until Session.Wants says otherwise.
	RequestSymbols
)

// String returns the Replica method's name.
func (k RequestKind) String() string {
	switch k {
	case RequestInfo:
		return "Info"
	case RequestRangeHash:
		return "RangeHash"
	case RequestRangeScan:
		return "RangeScan"
	case RequestFetch:
		return "Fetch"
	case RequestApply:
		return "Apply"
	case RequestRangeSketch:
		return "RangeSketch"
	case RequestFetchByHash:
		return "FetchByHash"
	case RequestSymbols:
		return "Symbols"
	}
	return fmt.Sprintf("RequestKind(%d)", uint8(k))
}

// Request is one Replica call a session asks its driver to make. Only the
// fields of its Kind are set. The slices belong to the session and must not
// be modified; they stay valid after the session moves on.
type Request struct {
	// ID identifies the request within the session; the Response carries it.
	ID uint64
	// Side is the replica to call.
	Side Side
	// Kind is the method to call.
	Kind RequestKind
	// RangeHash is the argument of RequestRangeHash.
	RangeHash RangeHashRequest
	// RangeScan is the argument of RequestRangeScan.
	RangeScan RangeScanRequest
	// Partition is the partition argument of RequestFetch and RequestApply.
	Partition uint32
	// Keys are the keys of RequestFetch, in ascending order.
	Keys [][]byte
	// Entries are the entries of RequestApply, in ascending key order.
	// Their Digest is zero: the receiver recomputes digests, so they do not
	// travel.
	Entries []Entry
	// Confirm asks RequestApply to return, after applying, the RangeHash
	// of Confirm's range (the partition's range) in Response.Hashes.
	Confirm *KeyRange
	// ApplyAndHash, with Confirm, asks for the apply and the confirm in one
	// Replica.ApplyAndHash call: set when the replica declares
	// CapApplyAndHash.
	ApplyAndHash bool
	// Sketch is the argument of RequestRangeSketch.
	Sketch RangeSketchRequest
	// FetchByHash is the argument of RequestFetchByHash.
	FetchByHash FetchByHashRequest
	// Symbols is the argument of RequestSymbols.
	Symbols SymbolsRequest
}

// Response is the result of one Request: the ID and Side of the request, the
// result field of its kind, or Err if the call failed. The session takes
// ownership of the slices in a Response.
type Response struct {
	ID      uint64
	Side    Side
	Info    Info
	Hashes  []RangeHash
	Scan    RangeScanResult
	Entries []Entry
	Sketch  RangeSketchResult
	// Symbols is one chunk of a RequestSymbols stream; SymbolsEnd reports
	// its end instead (the replica has no more symbols to send).
	Symbols    SymbolChunk
	SymbolsEnd bool
	Err        error
}

// Step is what a session asks for next: the requests of one round trip, or
// the end of the session.
type Step struct {
	// Requests are the calls of this round. They are independent: the driver
	// issues them all concurrently (one round trip), then delivers every
	// Response. Empty when Done.
	Requests []Request
	// Done reports that the session has ended: Session.Err and
	// Session.Stats give the outcome.
	Done bool
}
