package main

import (
	"encoding/xml"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
	out, code = run(t, "put", "--dir", dir, "\xff\xffzz", "v")
	if code == 0 || !strings.Contains(out, "reserved") {
		t.Fatalf("reserved key: %d %q", code, out)
	}
	out, code = run(t, "status", "--dir", dir, "--leaf-size", "32")
	if code == 0 || !strings.Contains(out, "parameters changed") {
		t.Fatalf("status with other tree parameters: %d %q", code, out)
	}
	if out, code := run(t, "verify", dir); code != 0 || !strings.Contains(out, "ok: 1 keys") {
		t.Fatalf("verify: %d %q", code, out)
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
