package campaign

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// Node is one `pebble-ae serve` process on 127.0.0.1, restartable on the
// same directory and port.
type Node struct {
	Bin   string // the pebble-ae binary
	ID    string
	Dir   string
	Addr  string // listen address
	Certs string // certificate directory (pebble-ae certs)
	// Peers is the --peers flag (id=addr,...).
	Peers string
	// RepairInterval is the --repair-interval flag.
	RepairInterval time.Duration
	// Roles is the --roles flag (id=role+role,...).
	Roles string

	cmd *exec.Cmd
	out *syncBuffer
}

// Start starts the process. Its output is kept for Output.
func (n *Node) Start() error {
	if n.out == nil {
		n.out = &syncBuffer{}
	}
	args := []string{"serve", "--dir", n.Dir, "--id", n.ID, "--listen", n.Addr, "--certs", n.Certs,
		"--peers", n.Peers, "--repair-interval", n.RepairInterval.String()}
	if n.Roles != "" {
		args = append(args, "--roles", n.Roles)
	}
	cmd := exec.Command(n.Bin, args...)
	cmd.Stdout, cmd.Stderr = n.out, n.out
	fmt.Fprintf(n.out, "### start %s\n", n.ID)
	if err := cmd.Start(); err != nil {
		return err
	}
	n.cmd = cmd
	return nil
}

// PID is the running process's ID (0 if none; a nil Node has none).
func (n *Node) PID() int {
	if n == nil || n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Running reports whether the process was started and not yet stopped.
func (n *Node) Running() bool { return n.cmd != nil }

// Kill SIGKILLs the process and reaps it.
func (n *Node) Kill() { n.signal(syscall.SIGKILL) }

// Stop SIGTERMs the process and waits for it; it returns the exit error.
func (n *Node) Stop() error { return n.signal(syscall.SIGTERM) }

func (n *Node) signal(sig os.Signal) error {
	if n.cmd == nil {
		return nil
	}
	fmt.Fprintf(n.out, "### signal %v\n", sig)
	_ = n.cmd.Process.Signal(sig)
	err := n.cmd.Wait()
	n.cmd = nil
	if sig == syscall.SIGKILL {
		return nil
	}
	return err
}

// Output returns everything the process (and its earlier runs) printed.
func (n *Node) Output() string {
	if n.out == nil {
		return ""
	}
	return n.out.String()
}

// Dial connects to the node over mutual TLS as replica as (the node only
// accepts its peers' certificates), retrying until ctx ends.
func (n *Node) Dial(ctx context.Context, as string) (*plugin.Client, error) {
	cfg, err := plugin.LoadTLSConfig(n.Certs, record.ReplicaID(as))
	if err != nil {
		return nil, err
	}
	return DialRetry(ctx, n.Addr, cfg, n.ID)
}

// DialRetry dials id at addr until it answers or ctx ends.
func DialRetry(ctx context.Context, addr string, cfg *tls.Config, id string) (*plugin.Client, error) {
	for {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := plugin.Dial(dctx, addr, cfg, record.ReplicaID(id), &plugin.DialOptions{Client: plugin.ClientOptions{CallTimeout: 10 * time.Second}})
		cancel()
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dial %s at %s: %w (last: %v)", id, addr, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Fetch reads the records of keys from c (partition 0, the single
// partition of the campaigns) and returns their states.
func Fetch(ctx context.Context, c *plugin.Client, keys []string) (map[string]State, error) {
	out := make(map[string]State, len(keys))
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), 1000)]
		keys = keys[len(chunk):]
		bs := make([][]byte, len(chunk))
		for i, k := range chunk {
			bs[i] = []byte(k)
		}
		es, err := c.Fetch(ctx, 0, bs)
		if err != nil {
			return nil, err
		}
		for _, k := range chunk {
			out[k] = State{}
		}
		for _, e := range es {
			rec, err := record.DecodeRecord(e.Record)
			if err != nil {
				return nil, fmt.Errorf("key %q: %w", e.Key, err)
			}
			w := rec.Winner()
			out[string(e.Key)] = State{Present: true, Tombstone: w.Tombstone, Value: w.Value}
		}
	}
	return out, nil
}

// Roots returns the root fingerprints of c's partitions, as a string.
func Roots(ctx context.Context, c *plugin.Client) (string, error) {
	st, err := c.Status(ctx, true)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, p := range st.Partitions {
		if p.Root == nil {
			return "", fmt.Errorf("partition %d not ready", p.ID)
		}
		fmt.Fprintf(&b, "%d:%v;", p.ID, *p.Root)
	}
	return b.String(), nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
