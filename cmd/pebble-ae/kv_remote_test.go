package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
)

// TestKVCommandsOnServedNode runs put, get, del, scan and status with
// --addr against a `pebble-ae serve` process over mutual TLS: the writer
// identity writes, the operator identity (--clients, read-only) reads and
// is refused writes, a client without a certificate is refused, and the
// served directory itself is refused with one line pointing to --addr; an
// identity without a role is refused at the handshake, the client says so
// and the server logs it.
func TestKVCommandsOnServedNode(t *testing.T) {
	tmp := t.TempDir()
	certs := filepath.Join(tmp, "certs")
	if out, code := run(t, "certs", "--dir", certs, "--ids", "n1,app,ops,mallory"); code != 0 {
		t.Fatalf("certs: %s", out)
	}
	dir := filepath.Join(tmp, "n1")
	run(t, "put", "--dir", dir, "--id", "n1", "seed", "s")
	port := freePorts(t, 1)[0]
	var buf syncBuffer
	cmd := exec.Command(binPath, "serve", "--dir", dir, "--id", "n1", "--listen", port, "--certs", certs,
		"--writers", "app", "--clients", "ops")
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(buf.String(), "serving") {
		if time.Now().After(deadline) {
			t.Fatalf("node did not start:\n%s", buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	node := "n1=" + port
	as := func(id string, args ...string) (string, int) {
		return run(t, append(args, "--addr", node, "--certs", certs, "--as", id)...)
	}
	for _, kv := range [][2]string{{"user:1", "alice"}, {"user:2", "bob"}, {"user:3", "carol"}} {
		if out, code := as("app", "put", kv[0], kv[1]); code != 0 {
			t.Fatalf("put %s as app: %d %q", kv[0], code, out)
		}
	}
	if out, code := as("ops", "get", "user:2"); code != 0 || out != "bob\n" {
		t.Fatalf("get as ops: %d %q", code, out)
	}
	if out, code := as("app", "del", "user:2"); code != 0 {
		t.Fatalf("del as app: %d %q", code, out)
	}
	if out, code := as("ops", "get", "user:2"); code == 0 || !strings.Contains(out, "not found") {
		t.Fatalf("get of a deleted key: %d %q", code, out)
	}
	if out, code := as("ops", "scan", "--start", "user:"); code != 0 || out != "\"user:1\"\t\"alice\"\n\"user:3\"\t\"carol\"\n" {
		t.Fatalf("scan as ops: %d %q", code, out)
	}
	if out, code := as("ops", "get", "--json", "user:1"); code != 0 || !strings.Contains(out, `"value": "alice"`) {
		t.Fatalf("get --json as ops: %d %q", code, out)
	}
	remote, code := as("ops", "status", "--json")
	if code != 0 {
		t.Fatalf("status as ops: %d %q", code, remote)
	}
	// The served process reserved Ps for the engine's background work
	// (engine.ReserveProcs), unless GOMAXPROCS is set for it.
	var st struct {
		Process struct {
			PID        int `json:"pid"`
			GOMAXPROCS int `json:"gomaxprocs"`
		} `json:"process"`
	}
	if err := json.Unmarshal([]byte(remote), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, remote)
	}
	want := runtime.GOMAXPROCS(0) + engine.BackgroundProcs(nil)
	if os.Getenv("GOMAXPROCS") != "" {
		want = runtime.GOMAXPROCS(0)
	}
	if st.Process.PID != cmd.Process.Pid || st.Process.GOMAXPROCS != want {
		t.Errorf("served node's process in status: %+v, want pid %d, GOMAXPROCS %d", st.Process, cmd.Process.Pid, want)
	}
	// The operator's certificate is read-only.
	for _, args := range [][]string{{"put", "user:9", "x"}, {"del", "user:1"}} {
		if out, code := as("ops", args...); code == 0 || !strings.Contains(strings.ToLower(out), "permission denied") {
			t.Fatalf("%s as ops: want permission denied, got %d %q", args[0], code, out)
		}
	}
	// No certificate: the CLI says what it needs; plaintext to the TLS
	// port is refused.
	if out, code := run(t, "get", "--addr", node, "user:1"); code == 0 || !strings.Contains(out, "--certs") {
		t.Fatalf("get without a certificate: %d %q", code, out)
	}
	if out, code := run(t, "get", "--addr", node, "--insecure", "user:1"); code == 0 || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("plaintext get of a TLS node: want a one-line refusal, got %d %q", code, out)
	}
	// A certificate of the cluster's CA whose identity has no role: the
	// client reports the refusal (not a broken pipe), the server logs it
	// with the identity.
	if out, code := as("mallory", "get", "user:1"); code == 0 || !strings.Contains(out, "refused this client's certificate") || !strings.Contains(out, `"mallory"`) {
		t.Fatalf("get as an identity without a role: %d %q", code, out)
	}
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), "refused a TLS handshake") || !strings.Contains(buf.String(), "identity=mallory") {
		if time.Now().After(deadline) {
			t.Fatalf("the server did not log the refused handshake:\n%s", buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The served directory: one line that says so and points to --addr.
	if out, code := run(t, "get", "--dir", dir, "user:1"); code == 0 || !strings.Contains(out, "--addr") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("get --dir of a served database: %d %q", code, out)
	}
	// status --json has one shape, served or local: hex roots, the mode
	// by name, the same partition fields.
	_ = cmd.Process.Signal(os.Interrupt)
	_ = cmd.Wait()
	local, code := run(t, "status", "--dir", dir, "--id", "n1", "--json")
	if code != 0 {
		t.Fatalf("local status: %d %q", code, local)
	}
	var r, l statusJSON
	if err := json.Unmarshal([]byte(remote), &r); err != nil {
		t.Fatalf("remote status JSON: %v\n%s", err, remote)
	}
	if err := json.Unmarshal([]byte(local), &l); err != nil {
		t.Fatalf("local status JSON: %v\n%s", err, local)
	}
	hexRoot := regexp.MustCompile(`^[0-9a-f]{32}$`)
	// (Dirty leaves depend on when each looked: the served node counts
	// them before it computes its root, the local one after opening.)
	for _, st := range []*statusJSON{&r, &l} {
		for i := range st.Partitions {
			st.Partitions[i].DirtyLeaves = 0
		}
	}
	if r.Mode != "lww" || l.Mode != "lww" || len(r.Partitions) != 1 || len(l.Partitions) != 1 || !hexRoot.MatchString(r.Partitions[0].Root) ||
		r.Partitions[0] != l.Partitions[0] || r.Replica != "n1" || l.Replica != "n1" {
		t.Fatalf("status --json differs between served and local:\n%s\n%s", remote, local)
	}
}

// TestBenchWriteTCP runs the application-store write benchmark against a
// served node (a `pebble-ae serve` subprocess on loopback, mutual TLS) at
// a tiny size: both sides are measured (no speed is asserted).
func TestBenchWriteTCP(t *testing.T) {
	out, code := run(t, "bench", "write", "--transport", "tcp", "--dir", t.TempDir(), "--kv-rounds", "1", "--kv-cell", "100ms",
		"--kv-warmup", "500", "--kv-settle", "-1s", "--batches", "1,10", "--writers", "2", "--sync", "both", "--json")
	if code != 0 {
		t.Fatalf("bench write --transport tcp: %d\n%s", code, out)
	}
	var res struct {
		Transport string `json:"transport"`
		Cells     []struct {
			Name         string  `json:"name"`
			RemotePerSec float64 `json:"remote_per_sec"`
			InProcess    float64 `json:"in_process_per_sec"`
		} `json:"cells"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if res.Transport != "tcp" || len(res.Cells) != 4 {
		t.Fatalf("transport %q, %d cells, want tcp and 4:\n%s", res.Transport, len(res.Cells), out)
	}
	for _, c := range res.Cells {
		if c.RemotePerSec <= 0 || c.InProcess <= 0 {
			t.Errorf("cell %s: %+v", c.Name, c)
		}
	}
}
