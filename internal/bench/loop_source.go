package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile"
)

// sourceServer is the source replica served by another process (`pebble-ae
// serve`), reached over loopback gRPC: in a deployment the replica a node
// repairs from is another machine, and its scans, symbol encoding and digest
// cache fills are that machine's CPU, not the foreground's.
type sourceServer struct {
	cmd    *exec.Cmd
	client *plugin.Client
	exited chan error
}

// startSourceServer runs argv (a command that serves a replica, e.g.
// ["nice", "-n", "19", "pebble-ae", "serve"]) with `--dir dir --id src
// --listen 127.0.0.1:0 --insecure` appended, waits for its "serving src on
// ADDR" line and dials it. The process's other output goes to stderr.
func startSourceServer(ctx context.Context, argv []string, dir string) (*sourceServer, error) {
	if len(argv) == 0 {
		return nil, errors.New("bench: empty source server command")
	}
	args := append(append([]string(nil), argv[1:]...), "--dir", dir, "--id", "src", "--listen", "127.0.0.1:0", "--insecure", "--log-level", "warn")
	cmd := exec.Command(argv[0], args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start source server %q: %w", argv, err)
	}
	s := &sourceServer{cmd: cmd, exited: make(chan error, 1)}
	addrs := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(line, "serving src on "); ok && !sent {
				addrs <- strings.TrimSpace(rest)
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, out)
		s.exited <- cmd.Wait()
	}()
	var addr string
	select {
	case addr = <-addrs:
	case err := <-s.exited:
		return nil, fmt.Errorf("bench: source server exited before serving: %v", err)
	case <-time.After(time.Minute):
		s.stop()
		return nil, errors.New("bench: source server did not start within a minute")
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
	if s.client, err = plugin.Dial(ctx, addr, nil, "src", &plugin.DialOptions{Insecure: true}); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// replica returns the source as a Replica.
func (s *sourceServer) replica() reconcile.Replica { return s.client }

// stop closes the client and interrupts the process, killing it if it has
// not exited after 10 seconds.
func (s *sourceServer) stop() {
	if s.client != nil {
		_ = s.client.Close()
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}
