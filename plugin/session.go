package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	pb "github.com/pebble-ae/pebble-ae/plugin/gen/pebbleae/v1"
)

// writeSession is one long-lived WriteSession stream a client sends its
// write calls on, one at a time: a stream message costs the two processes
// less than a call. The client keeps a pool of maxSessions a sync setting
// (as many as coalesce.go keeps calls of the setting in flight); a write
// that finds every session of its setting busy makes an ordinary Write
// call instead.
type writeSession struct {
	mu     sync.Mutex // held while a batch is sent and its ack awaited
	stream pb.Replica_WriteSessionClient
	rpc    pb.ReplicaClient // the stub the stream was opened on
	cancel context.CancelFunc
}

// errSessionEnded reports a session the server ended (Server.Drain)
// before it took the batch: the batch was not applied, and is resent as a
// Write call.
var errSessionEnded = errors.New("plugin: write session ended by the server")

// closeLocked ends the stream; s.mu is held.
func (s *writeSession) closeLocked() {
	if s.cancel != nil {
		s.cancel()
	}
	s.stream, s.rpc, s.cancel = nil, nil, nil
}

// sessionWrite sends req on the slot's session (opening it if needed) and
// returns the batch's result; sent is false when the session was busy
// and nothing was sent.
func (c *Client) sessionWrite(ctx context.Context, slot int, req *pb.WriteRequest) (sent bool, err error) {
	for i := range c.sessions[slot] {
		s := &c.sessions[slot][i]
		if s.mu.TryLock() {
			err := c.sendOnSession(ctx, s, req)
			s.mu.Unlock()
			if errors.Is(err, errSessionEnded) {
				return false, nil
			}
			return true, err
		}
	}
	return false, nil
}

// sendOnSession sends req on s (locked) and awaits its ack.
func (c *Client) sendOnSession(ctx context.Context, s *writeSession, req *pb.WriteRequest) error {
	rpc, ctx, cancel, err := c.rpc(ctx)
	defer cancel()
	if err != nil {
		return err
	}
	if s.stream == nil || s.rpc != rpc {
		s.closeLocked()
		// The stream lives as long as the client (Close and Restart
		// cancel it), not as long as this call.
		sctx, scancel := context.WithCancel(context.Background())
		stream, err := rpc.WriteSession(sctx)
		if err != nil {
			scancel()
			return fromStatus("Write", err)
		}
		s.stream, s.rpc, s.cancel = stream, rpc, scancel
	}
	// A caller that gives up ends the stream (its ack would come after
	// it left); the next write opens a new one.
	stop := context.AfterFunc(ctx, s.cancel)
	err = s.stream.Send(req)
	var ack *pb.WriteAck
	if err == nil {
		ack, err = s.stream.Recv()
	}
	if !stop() {
		// ctx ended: the stream was (or is being) canceled.
		s.closeLocked()
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
	}
	if errors.Is(err, io.EOF) {
		// The server drained the session without applying req.
		s.closeLocked()
		return errSessionEnded
	}
	if err != nil {
		s.closeLocked()
		return fromStatus("Write", err)
	}
	if ack.GetError() == nil && ack.GetApplied() != uint64(req.GetCount()) {
		return fmt.Errorf("%w: Write: %d writes applied of %d", ErrBadResponse, ack.GetApplied(), req.GetCount())
	}
	return fromCallError("Write", ack.GetError())
}

// closeSessions ends the write sessions (before the transport closes, so
// that a graceful server stop does not wait for them).
func (c *Client) closeSessions() {
	for i := range c.sessions {
		for j := range c.sessions[i] {
			s := &c.sessions[i][j]
			s.mu.Lock()
			s.closeLocked()
			s.mu.Unlock()
		}
	}
}
