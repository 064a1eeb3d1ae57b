package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/pebble-ae/pebble-ae/engine"
	pb "github.com/pebble-ae/pebble-ae/plugin/gen/pebbleae/v1"
	"github.com/pebble-ae/pebble-ae/reconcile"
)

// The client side of the Symbols call (reconcile.CapSymbols): one
// server-streaming call a stream, one message a chunk.
//
//	OpenSymbols  ──SymbolsRequest──▶            server: OpenSymbols on the engine
//	             ◀──chunk 0── (read at open: errors surface here)
//	Next         ◀──chunk 1──
//	...
//	Next         ◀──status OK── after Max symbols: io.EOF
//	Close        ──RST_STREAM──▶                 server: engine stream closed
//
// The server sends without waiting for Next, so after Close up to one HTTP/2
// flow-control window of chunks may have crossed the network unread. Only
// chunks that Next returns are counted in WireStats, as reconcile's wire
// model counts only the chunks a session receives.

// OpenSymbols opens a Symbols call (reconcile.CapSymbols). It reads the
// first chunk before returning, so a request the replica rejects (an
// unknown partition, bad ranges) fails here; req itself is checked with
// reconcile.ValidateSymbolsRequest first (an error matching
// engine.ErrBadRequest and reconcile.ErrBadSketchRequest). The stream's
// Next validates every chunk against the chunk schedule
// (reconcile.SymbolChunkSize) and fails with an error matching
// ErrBadResponse on a malformed one. The caller must Close the stream.
func (c *Client) OpenSymbols(ctx context.Context, req reconcile.SymbolsRequest) (reconcile.SymbolStream, error) {
	if err := reconcile.ValidateSymbolsRequest(req); err != nil {
		return nil, fmt.Errorf("%w: %w", engine.ErrBadRequest, err)
	}
	rpc, ctx, cancel, err := c.rpc(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	ctx, stop := context.WithCancel(ctx)
	release := func() { stop(); cancel() }
	call, err := rpc.Symbols(ctx, &pb.SymbolsRequest{Partition: req.Partition, Ranges: toPBRanges(req.Ranges), Max: uint32(req.Max)})
	if err != nil {
		release()
		return nil, fromStatus("Symbols", err)
	}
	s := &symbolStream{call: call, release: release, max: req.Max}
	first, err := s.recv()
	if err != nil {
		s.Close()
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: Symbols: the stream ended before its first chunk", ErrBadResponse)
		}
		return nil, err
	}
	s.first = &first
	return s, nil
}

// symbolStream is an open Symbols call. Next and Close may be called from
// different goroutines; Next must not be called concurrently with itself.
type symbolStream struct {
	call    pb.Replica_SymbolsClient
	release func() // cancels the call
	max     int

	// first is the chunk read by OpenSymbols, returned by the first Next.
	first *reconcile.SymbolChunk
	sent  int    // symbols received so far
	count uint64 // the stream's entry count (from its first chunk)
	err   error  // sticky: io.EOF or the error that ended the stream

	closeOnce sync.Once
}

// Next implements reconcile.SymbolStream. Canceling ctx while Next waits
// cancels the whole call: the stream is then unusable.
func (s *symbolStream) Next(ctx context.Context) (reconcile.SymbolChunk, error) {
	if s.first != nil {
		c := *s.first
		s.first = nil
		return c, nil
	}
	if s.err != nil {
		return reconcile.SymbolChunk{}, s.err
	}
	if err := ctx.Err(); err != nil {
		return reconcile.SymbolChunk{}, err
	}
	defer context.AfterFunc(ctx, s.release)()
	c, err := s.recv()
	if err != nil && ctx.Err() != nil && !errors.Is(err, io.EOF) {
		err = ctx.Err()
	}
	return c, err
}

// recv reads and validates the next chunk; errors are sticky.
func (s *symbolStream) recv() (reconcile.SymbolChunk, error) {
	c, err := s.recvChunk()
	if err != nil {
		s.err = err
	}
	return c, err
}

func (s *symbolStream) recvChunk() (reconcile.SymbolChunk, error) {
	msg, err := s.call.Recv()
	if errors.Is(err, io.EOF) {
		if s.sent < s.max {
			return reconcile.SymbolChunk{}, fmt.Errorf("%w: Symbols: the stream ended after %d of %d symbols", ErrBadResponse, s.sent, s.max)
		}
		return reconcile.SymbolChunk{}, io.EOF
	}
	if err != nil {
		return reconcile.SymbolChunk{}, fromStatus("Symbols", err)
	}
	if s.sent >= s.max {
		return reconcile.SymbolChunk{}, fmt.Errorf("%w: Symbols: a chunk after the %d symbols asked for", ErrBadResponse, s.max)
	}
	want := min(reconcile.SymbolChunkSize(s.sent), s.max-s.sent)
	if n := len(msg.GetSymbols()); n != want*sketchCellSize {
		return reconcile.SymbolChunk{}, fmt.Errorf("%w: Symbols: chunk of %d bytes after %d symbols, want %d symbols of %d bytes", ErrBadResponse, n, s.sent, want, sketchCellSize)
	}
	if s.sent > 0 && msg.GetCount() != s.count {
		return reconcile.SymbolChunk{}, fmt.Errorf("%w: Symbols: the stream's count changed from %d to %d", ErrBadResponse, s.count, msg.GetCount())
	}
	syms, err := decodeCells(msg.GetSymbols())
	if err != nil {
		return reconcile.SymbolChunk{}, fmt.Errorf("Symbols: %w", err)
	}
	s.count = msg.GetCount()
	s.sent += want
	return reconcile.SymbolChunk{Count: msg.GetCount(), Symbols: syms}, nil
}

// Close implements reconcile.SymbolStream: it cancels the call (if still
// running). It is idempotent.
func (s *symbolStream) Close() {
	s.closeOnce.Do(s.release)
}
