package main

import (
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/internal/loopback"
)

var binPath string

// TestMain builds the pebble-ae binary once; the tests run it as a real
// subprocess.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pebble-ae-bin-")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "pebble-ae")
	out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		panic("build: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return string(out), 0
}

func TestDemo(t *testing.T) {
	out, code := run(t, "demo", "--keys", "2000")
	if code != 0 {
		t.Fatalf("demo exited %d:\n%s", code, out)
	}
	if !strings.Contains(out, "converged: all 3 replicas hold identical records") {
		t.Fatalf("demo did not report convergence:\n%s", out)
	}
	t.Log(out)
}

func TestKVAndErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "r1")
	if out, code := run(t, "put", "--dir", dir, "user:1", "alice"); code != 0 {
		t.Fatalf("put: %d %s", code, out)
	}
	if out, code := run(t, "get", "--dir", dir, "user:1"); code != 0 || strings.TrimSpace(out) != "alice" {
		t.Fatalf("get: %d %q", code, out)
	}
	if out, code := run(t, "del", "--dir", dir, "user:1"); code != 0 {
		t.Fatalf("del: %d %s", code, out)
	}
	out, code := run(t, "get", "--dir", dir, "user:1")
	if code == 0 || !strings.Contains(out, "not found") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("get deleted: want a one-line 'not found' error and non-zero exit, got %d %q", code, out)
	}
	for _, k := range []string{"user:2", "user:3", "user:4"} {
		run(t, "put", "--dir", dir, "--nosync", k, "v-"+k)
	}
	if out, code := run(t, "scan", "--dir", dir, "--limit", "2"); code != 0 || out != "\"user:2\"\t\"v-user:2\"\n\"user:3\"\t\"v-user:3\"\n(more: next page --start \"user:4\")\n" {
		t.Fatalf("scan: %d %q", code, out)
	}
	if out, code := run(t, "scan", "--dir", dir, "--limit", "-1"); code == 0 || !strings.Contains(out, "negative scan limit") {
		t.Fatalf("scan with a negative limit: %d %q", code, out)
	}
	// (A reserved key holds a NUL byte, which no command line can pass.)
	// A key above the reserved range is a user key like any other.
	if out, code := run(t, "put", "--dir", dir, "\xff\xffzz", "v"); code != 0 {
		t.Fatalf("key above the reserved range: %d %q", code, out)
	}
	out, code = run(t, "status", "--dir", dir, "--leaf-size", "32")
	if code == 0 || !strings.Contains(out, "parameters changed") {
		t.Fatalf("status with other tree parameters: %d %q", code, out)
	}
	if out, code := run(t, "verify", dir); code != 0 || !strings.Contains(out, "ok: 5 keys") {
		t.Fatalf("verify: %d %q", code, out)
	}
}

// TestReadCommandsNeedADatabase checks that the commands that read or
// inspect a replica refuse a directory without a database, with one clear
// line and a non-zero exit, and leave the file system as it was: a
// mistyped --dir used to get an empty database created in it (and status
// then reported that empty database).
func TestReadCommandsNeedADatabase(t *testing.T) {
	root := t.TempDir()
	missing := filepath.Join(root, "missing")
	other := filepath.Join(root, "other") // not a database: one unrelated file
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(root, "real")
	if out, code := run(t, "put", "--dir", real, "k", "v"); code != 0 {
		t.Fatalf("put: %d %s", code, out)
	}
	for _, dir := range []string{missing, other} {
		for _, args := range [][]string{
			{"get", "--dir", dir, "k"},
			{"del", "--dir", dir, "k"},
			{"status", "--dir", dir},
			{"scan", "--dir", dir},
			{"verify", dir},
			{"rebuild", dir},
			{"diff", dir, real},
			{"diff", real, dir},
		} {
			out, code := run(t, args...)
			if code == 0 || !strings.Contains(out, "no pebble-ae database in") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
				t.Fatalf("%v: want a one-line 'no pebble-ae database' error and non-zero exit, got %d %q", args, code, out)
			}
		}
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("%s exists after the refused commands (%v)", missing, err)
	}
	if ents, err := os.ReadDir(other); err != nil || len(ents) != 1 {
		t.Fatalf("%s holds %d entries after the refused commands, want its 1 file (%v)", other, len(ents), err)
	}
	if out, code := run(t, "get", "--dir", real, "k"); code != 0 || strings.TrimSpace(out) != "v" {
		t.Fatalf("get from the real database: %d %q", code, out)
	}
	for _, cmd := range []string{"diff", "repair"} {
		out, code := run(t, cmd, real, real+string(filepath.Separator))
		if code == 0 || !strings.Contains(out, "same replica") {
			t.Fatalf("%s of a replica with itself: want a 'same replica' error, got %d %q", cmd, code, out)
		}
	}
}

// TestServeRefusesBadFlags checks that serve refuses a configuration it
// cannot run before it starts serving (no "serving" line), with one line
// that names what is wrong: a bad --metrics address used to be found only
// after the node served, a negative --session-timeout not at all (every
// session then failed at once).
func TestServeRefusesBadFlags(t *testing.T) {
	base := []string{"serve", "--dir", filepath.Join(t.TempDir(), "n"), "--id", "a", "--listen", "127.0.0.1:0", "--insecure"}
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--metrics", "notanaddress"}, "--metrics"},
		{[]string{"--peers", "b=127.0.0.1:1", "--repair-interval", "-1s"}, "intervals"},
		{[]string{"--peers", "b=127.0.0.1:1", "--session-timeout", "-1s"}, "session timeout -1s is negative"},
		{[]string{"--busy-fraction", "-1"}, "busy fraction -1 is negative"},
		{[]string{"--scan-bytes-per-sec", "-5"}, "bytes per second -5 is negative"},
		{[]string{"--session-memory", "-1"}, "--session-memory -1: negative"},
	} {
		out, code := run(t, append(append([]string{}, base...), tc.flags...)...)
		if code == 0 || strings.Contains(out, "serving") || !strings.Contains(out, tc.want) || strings.Count(strings.TrimSpace(out), "\n") != 0 {
			t.Fatalf("serve %v: want a one-line error containing %q before serving, got exit %d:\n%s", tc.flags, tc.want, code, out)
		}
		t.Logf("serve %v: %s", tc.flags, strings.TrimSpace(out))
	}
}

// TestDiffSVG makes two replicas differ, then checks diff's report and that
// its heatmap is well-formed SVG with one rect per cell.
func TestDiffSVG(t *testing.T) {
	tmp := t.TempDir()
	a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	for _, kv := range [][2]string{{"k1", "x"}, {"k2", "y"}, {"k3", "z"}} {
		run(t, "put", "--dir", a, "--nosync", kv[0], kv[1])
	}
	run(t, "put", "--dir", b, "--nosync", "k2", "other")
	svg := filepath.Join(tmp, "heat.svg")
	out, code := run(t, "diff", "--svg", svg, a, b)
	if code != 0 || !strings.Contains(out, "1 of 1 partitions differ") {
		t.Fatalf("diff: %d\n%s", code, out)
	}
	f, err := os.Open(svg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := xml.NewDecoder(f)
	rects, root := 0, ""
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("svg does not parse: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			if se.Name.Local == "rect" {
				rects++
			}
		}
	}
	if root != "svg" || rects == 0 {
		t.Fatalf("svg: root %q with %d rects", root, rects)
	}
	// diff did not repair: b still lacks k1.
	if out, code := run(t, "get", "--dir", b, "--id", "b", "k1"); code == 0 {
		t.Fatalf("diff repaired b: %q", out)
	}
	// repair does.
	if out, code := run(t, "repair", a, b); code != 0 {
		t.Fatalf("repair: %d %s", code, out)
	}
	if out, code := run(t, "get", "--dir", b, "k1"); code != 0 || strings.TrimSpace(out) != "x" {
		t.Fatalf("after repair: %d %q", code, out)
	}
}

// TestServeMutualTLS runs two `serve` nodes on loopback with certificates
// from `certs`; their different data converges through the repair loop
// over mutual TLS; then a SIGTERM stops each cleanly.
func TestServeMutualTLS(t *testing.T) {
	tmp := t.TempDir()
	certs := filepath.Join(tmp, "certs")
	if out, code := run(t, "certs", "--dir", certs, "--ids", "n1,n2,ops"); code != 0 {
		t.Fatalf("certs: %s", out)
	}
	n1, n2 := filepath.Join(tmp, "n1"), filepath.Join(tmp, "n2")
	run(t, "put", "--dir", n1, "--id", "n1", "only-on-n1", "a")
	run(t, "put", "--dir", n2, "--id", "n2", "only-on-n2", "b")
	ports := freePorts(t, 3)
	start := func(dir, id, listen, peer string, extra ...string) (*exec.Cmd, *syncBuffer) {
		var buf syncBuffer
		cmd := exec.Command(binPath, append([]string{"serve", "--dir", dir, "--id", id, "--listen", listen, "--certs", certs,
			"--peers", peer, "--clients", "ops", "--repair-interval", "200ms"}, extra...)...)
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd, &buf
	}
	c1, out1 := start(n1, "n1", ports[0], "n2="+ports[1], "--metrics", ports[2])
	c2, out2 := start(n2, "n2", ports[1], "n1="+ports[0])
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out1.String()+out2.String(), "keys repaired") {
		if time.Now().After(deadline) {
			t.Fatalf("no repair within 20s:\nn1: %s\nn2: %s", out1.String(), out2.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // let the other direction finish its session too
	resp, err := http.Get("http://" + ports[2] + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "sessions_total") {
		t.Fatalf("metrics lack session counters:\n%.2000s", body)
	}
	// The served node's sessions stream coded symbols (its peers are
	// declare reconcile.CapSymbols), and say so in the log and the metrics.
	logs := out1.String() + out2.String()
	if !strings.Contains(logs, "method=symbols") || strings.Contains(logs, "method=sketch") || strings.Contains(logs, "+descent") {
		t.Fatalf("served sessions did not all use symbol streams:\n%s", logs)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(string(body), "pebbleae_session_methods_total{"); {
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack session methods:\n%.3000s", body)
		}
		time.Sleep(100 * time.Millisecond)
		resp, err := http.Get("http://" + ports[2] + "/metrics")
		if err != nil {
			t.Fatalf("metrics: %v", err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if m := regexp.MustCompile(`session_methods_total\{method="[^"]*(sketch|descent|naive)[^"]*"\}`).FindString(string(body)); m != "" {
		t.Fatalf("a served session did not use symbol streams: %s", m)
	}
	// diff and status reach served nodes over mutual TLS too.
	if out, code := run(t, "status", "--addr", "n2="+ports[1], "--certs", certs, "--as", "ops"); code != 0 || !strings.Contains(out, "replica n2") ||
		!strings.Contains(out, "last sessions:") || !strings.Contains(out, "admission control: scale") || !strings.Contains(out, "throttle scan") {
		t.Fatalf("remote status (partitions, last sessions, throttles, admission): %d\n%s", code, out)
	}
	if out, code := run(t, "diff", "--certs", certs, "--as", "ops", "n1="+ports[0], "n2="+ports[1]); code != 0 || !strings.Contains(out, "0 of 1 partitions differ") {
		t.Fatalf("remote diff: %d\n%s", code, out)
	}
	// --clients gives the read-only role: ops may read and diff, but a
	// repair that would Apply records to n2 as ops is refused.
	local := filepath.Join(tmp, "local")
	run(t, "put", "--dir", local, "--id", "local", "only-local", "x")
	if out, code := run(t, "repair", "--certs", certs, "--as", "ops", local, "n2="+ports[1]); code == 0 || !strings.Contains(strings.ToLower(out), "permission denied") {
		t.Fatalf("repair into n2 as ops (reader role): want permission denied, got %d\n%s", code, out)
	}
	// scan reaches a served node through the application's Scan RPC.
	if out, code := run(t, "scan", "--addr", "n2="+ports[1], "--certs", certs, "--as", "ops"); code != 0 || out != "\"only-on-n1\"\t\"a\"\n\"only-on-n2\"\t\"b\"\n" {
		t.Fatalf("remote scan: %d %q", code, out)
	}
	if out, code := run(t, "scan", "--addr", "n2="+ports[1], "--certs", certs, "--as", "ops", "--start", "z", "--end", "a"); code == 0 || !strings.Contains(out, "inverted") {
		t.Fatalf("remote scan with inverted bounds: %d %q", code, out)
	}
	// A server that is not the replica the client expects is refused, and
	// so is a client whose identity the server does not allow.
	if out, code := run(t, "status", "--addr", "n1="+ports[1], "--certs", certs, "--as", "ops"); code == 0 {
		t.Fatalf("status of n2 while expecting n1 succeeded:\n%s", out)
	}
	if out, code := run(t, "status", "--addr", "n1="+ports[0], "--certs", certs, "--as", "n1"); code == 0 {
		t.Fatalf("n1 accepted a client presenting its own, unlisted identity:\n%s", out)
	}
	for _, c := range []*exec.Cmd{c1, c2} {
		_ = c.Process.Signal(syscall.SIGTERM)
		if err := c.Wait(); err != nil {
			t.Fatalf("serve did not stop cleanly: %v", err)
		}
	}
	for _, dir := range []string{n1, n2} {
		for k, v := range map[string]string{"only-on-n1": "a", "only-on-n2": "b"} {
			if out, code := run(t, "get", "--dir", dir, k); code != 0 || strings.TrimSpace(out) != v {
				t.Fatalf("%s %s after repair: %d %q", dir, k, code, out)
			}
		}
	}
}

// freePorts returns n loopback addresses for test servers that must know
// each other's addresses before they start (see package loopback: not from
// the ephemeral range, where another process may take them first).
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	addrs, err := loopback.FreeAddrs(n)
	if err != nil {
		t.Fatal(err)
	}
	return addrs
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

func TestDemoPlugin(t *testing.T) {
	out, code := run(t, "demo", "--plugin", "--keys", "1000")
	if code != 0 || !strings.Contains(out, "converged: all 3 replicas") || !strings.Contains(out, "plugin subprocesses") {
		t.Fatalf("demo --plugin exited %d:\n%s", code, out)
	}
}

// TestDemoServe: the demo's served mode, nodes of package plugin/node over
// mutual TLS, converges through the repair loops alone (no session run by
// the demo), by symbol streams.
func TestDemoServe(t *testing.T) {
	out, code := run(t, "demo", "--serve", "--keys", "1000")
	if code != 0 || !strings.Contains(out, "converged by the loops alone") || !strings.Contains(out, "converged: all 3 replicas") ||
		!strings.Contains(out, "keys repaired (symbols") || strings.Contains(out, "anti-entropy sessions") {
		t.Fatalf("demo --serve exited %d:\n%s", code, out)
	}
}
