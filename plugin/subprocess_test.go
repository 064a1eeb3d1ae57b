package plugin_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// testPluginPath is the test plugin binary, built once by TestMain.
var testPluginPath string

func TestMain(m *testing.M) {
	if os.Getenv(hostEnv) != "" {
		runHost()
		return
	}
	dir, err := os.MkdirTemp("", "pebble-ae-plugin-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testPluginPath = filepath.Join(dir, "testplugin")
	os.Setenv(pluginPathEnv, testPluginPath)
	build := exec.Command("go", "build", "-o", testPluginPath, "./internal/testplugin")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the test plugin:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func quietOpen() *plugin.OpenOptions {
	return &plugin.OpenOptions{Logger: hclog.NewNullLogger()}
}

func openPlugin(t *testing.T, dir, id string, opts *plugin.OpenOptions) *plugin.Client {
	t.Helper()
	c, err := plugin.OpenWithOptions(testCtx(t), testPluginPath, []string{"-dir", dir, "-id", id, "-leaf-size", "4"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Kill() })
	return c
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	// Field 3 is the state; Z is a zombie.
	var p int
	var comm string
	var state byte
	_, _ = fmt.Sscanf(string(b), "%d %s %c", &p, &comm, &state)
	return state != 'Z'
}

func waitDead(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("plugin process %d still alive", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitReady(t *testing.T, c *plugin.Client) {
	t.Helper()
	ctx := testCtx(t)
	for {
		st, err := c.Status(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		ready := true
		for _, p := range st.Partitions {
			ready = ready && p.Ready
		}
		if ready {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSubprocessPlugin starts a real plugin process, writes, reads and
// range-hashes through it, kills it with SIGKILL in the middle of a
// session (the session fails cleanly with a typed error), restarts it,
// converges, and leaves no process behind.
func TestSubprocessPlugin(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	c := openPlugin(t, dir, "p", quietOpen())
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c)
	// Synced writes: they must survive the kill -9 below.
	fillWith(t, c, "k", 500, 50, nil)
	if v, err := c.Get(ctx, []byte("k0042")); err != nil || len(v) != 50 {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if _, err := c.Get(ctx, []byte("nope")); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("Get(absent) = %v", err)
	}
	h, err := c.RangeHash(ctx, reconcile.RangeHashRequest{Ranges: []reconcile.KeyRange{{}}, Fanout: 16, Depth: 2})
	if err != nil || h[0].Fingerprint.Count != 500 || len(h[0].Children) < 2 {
		t.Fatalf("RangeHash = %+v, %v", h, err)
	}

	// A local engine diverging from the plugin, then a session killed mid
	// way: the session's second round hangs on the plugin's RangeHash until
	// the plugin is killed.
	local := openEngine(t, "l", record.ModeLWW)
	fill(t, local, "j", 300, 50)
	pid := c.PluginPID()
	if !alive(pid) {
		t.Fatalf("no plugin process (pid %d)", pid)
	}
	killer := &killingReplica{Replica: c, kill: func() { _ = syscall.Kill(pid, syscall.SIGKILL); waitDead(t, pid) }}
	_, err = reconcile.SyncPartition(ctx, local, killer, 0, descentOnly)
	if err == nil || !errors.Is(err, plugin.ErrUnavailable) {
		t.Fatalf("session with a killed plugin: %v, want an error matching plugin.ErrUnavailable", err)
	}
	t.Logf("session after kill -9: %v", err)
	if err := c.Ping(ctx); !errors.Is(err, plugin.ErrUnavailable) {
		t.Fatalf("Ping of a dead plugin: %v", err)
	}
	if _, err := c.Get(ctx, []byte("k0042")); !errors.Is(err, plugin.ErrUnavailable) {
		t.Fatalf("Get on a dead plugin: %v", err)
	}

	// Restart: the engine reopens from its directory after the crash.
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	pid2 := c.PluginPID()
	if pid2 == pid || !alive(pid2) {
		t.Fatalf("restart: pid %d -> %d", pid, pid2)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c)
	if v, err := c.Get(ctx, []byte("k0042")); err != nil || len(v) != 50 {
		t.Fatalf("Get after restart = %q, %v", v, err)
	}
	st, err := reconcile.SyncPartition(ctx, local, c, 0, reconcile.SyncOptions{Session: reconcile.SessionConfig{Strict: true}})
	if err != nil || !st.Converged {
		t.Fatalf("session after restart: %v (%v)", err, st)
	}
	ha, _ := local.RangeHash(ctx, reconcile.RangeHashRequest{Ranges: []reconcile.KeyRange{{}}})
	hb, err := c.RangeHash(ctx, reconcile.RangeHashRequest{Ranges: []reconcile.KeyRange{{}}})
	if err != nil || ha[0].Fingerprint != hb[0].Fingerprint || ha[0].Fingerprint.Count != 800 {
		t.Fatalf("roots after the session: %v vs %v (%v)", ha[0].Fingerprint, hb[0].Fingerprint, err)
	}

	// Close stops the plugin gracefully; no process is left.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitDead(t, pid2)
	if _, err := c.Info(ctx); !errors.Is(err, plugin.ErrClosed) {
		t.Fatalf("Info after Close: %v", err)
	}
	// The graceful stop checkpointed: the data is there for the next one.
	c2 := openPlugin(t, dir, "p", quietOpen())
	if v, err := c2.Get(ctx, []byte("j0007")); err != nil || len(v) != 50 {
		t.Fatalf("Get after reopen = %q, %v", v, err)
	}
	pid3 := c2.PluginPID()
	c2.Kill()
	waitDead(t, pid3)
}

// killingReplica kills the plugin before its first RangeHash with
// children, i.e. in the middle of a session.
type killingReplica struct {
	reconcile.Replica
	kill   func()
	killed bool
}

func (k *killingReplica) RangeHash(ctx context.Context, req reconcile.RangeHashRequest) ([]reconcile.RangeHash, error) {
	if req.Fanout > 0 && !k.killed {
		k.killed = true
		k.kill()
	}
	return k.Replica.RangeHash(ctx, req)
}

// TestSubprocessChecksum: a wrong SecureConfig checksum refuses to start the
// binary; the right one starts it.
func TestSubprocessChecksum(t *testing.T) {
	ctx := testCtx(t)
	f, err := os.Open(testPluginPath)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	_, _ = io.Copy(h, f)
	_ = f.Close()
	o := quietOpen()
	o.Checksum = make([]byte, 32)
	if _, err := plugin.OpenWithOptions(ctx, testPluginPath, []string{"-dir", t.TempDir(), "-id", "x"}, o); err == nil {
		t.Fatal("a binary with the wrong checksum started")
	}
	o.Checksum = h.Sum(nil)
	c := openPlugin(t, t.TempDir(), "x", o)
	if _, err := c.Info(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestPluginRunByHand: the plugin binary refuses to run without the host's
// handshake.
func TestPluginRunByHand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, testPluginPath, "-dir", t.TempDir(), "-id", "x").CombinedOutput()
	if err == nil {
		t.Fatalf("plugin run by hand exited 0: %s", out)
	}
}

const (
	hostEnv       = "PEBBLE_AE_TEST_HOST_DIR"
	pluginPathEnv = "PEBBLE_AE_TEST_PLUGIN"
)

// runHost is the test binary run as a plugin host (TestPluginDiesWithHost):
// it opens the plugin, prints its pid and waits to be killed.
func runHost() {
	c, err := plugin.OpenWithOptions(context.Background(), os.Getenv(pluginPathEnv), []string{"-dir", os.Getenv(hostEnv), "-id", "h"}, quietOpen())
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(c.PluginPID())
	time.Sleep(time.Minute)
	os.Exit(0)
}

// TestPluginDiesWithHost: SIGKILL the host and the plugin dies too (the
// parent-death signal), leaving no orphan.
func TestPluginDiesWithHost(t *testing.T) {
	host := exec.Command(os.Args[0], "-test.run=^$")
	host.Env = append(os.Environ(), hostEnv+"="+t.TempDir())
	out, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = host.Process.Kill(); _ = host.Wait() }()
	var pid int
	if _, err := fmt.Fscan(out, &pid); err != nil || pid <= 0 {
		t.Fatalf("host did not report the plugin pid: %v", err)
	}
	if !alive(pid) {
		t.Fatalf("plugin %d not running", pid)
	}
	defer func() {
		if alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL) // never leave an orphan behind
		}
	}()
	if err := host.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = host.Wait()
	waitDead(t, pid)
}

// TestServePluginByHand: ServePlugin in a process no host started returns
// ErrNotPluginProcess before it opens (and would create) the database.
func TestServePluginByHand(t *testing.T) {
	t.Setenv(plugin.Handshake.MagicCookieKey, "")
	dir := filepath.Join(t.TempDir(), "db")
	if err := plugin.ServePlugin(dir, &engine.Options{ReplicaID: "a"}, nil); !errors.Is(err, plugin.ErrNotPluginProcess) {
		t.Fatalf("err %v, want ErrNotPluginProcess", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the database directory exists after a refused ServePlugin (%v)", err)
	}
}

// TestPluginReservesProcs: the plugin process runs with GOMAXPROCS raised
// by the engine's background goroutines (engine.ReserveProcs through
// ServePlugin), and Status reports it; GOMAXPROCS in the plugin's
// environment stands.
func TestPluginReservesProcs(t *testing.T) {
	ctx := testCtx(t)
	c := openPlugin(t, t.TempDir(), "p", quietOpen())
	st, err := c.Status(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	p := st.Process
	if p.PID != c.PluginPID() || p.NumCPU != runtime.NumCPU() || p.GoVersion != runtime.Version() {
		t.Errorf("Status process %+v, want pid %d, %d CPUs, %s", p, c.PluginPID(), runtime.NumCPU(), runtime.Version())
	}
	want := runtime.GOMAXPROCS(0) + engine.BackgroundProcs(nil)
	if env := os.Getenv("GOMAXPROCS"); env != "" {
		want = runtime.GOMAXPROCS(0) // inherited: ReserveProcs leaves it
	}
	if p.GOMAXPROCS != want {
		t.Errorf("plugin GOMAXPROCS %d, want %d (this process: %d)", p.GOMAXPROCS, want, runtime.GOMAXPROCS(0))
	}

	o := quietOpen()
	o.Env = []string{"GOMAXPROCS=3"}
	c3 := openPlugin(t, t.TempDir(), "p3", o)
	st, err = c3.Status(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if st.Process.GOMAXPROCS != 3 {
		t.Errorf("plugin started with GOMAXPROCS=3 runs with %d", st.Process.GOMAXPROCS)
	}
}
