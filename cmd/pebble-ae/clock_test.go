package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// TestClockGuardCluster runs four `serve` nodes over mutual TLS on
// loopback, with the bad clocks:
//
//   - n3 holds a record of "victim" stamped ten years ahead (written while
//     its clock was wrong, before the guard: --debug-clock-skew on a put);
//   - a peer (n2's certificate) offers n1 far-future records through Apply;
//   - n4's clock runs 10 minutes ahead (--debug-clock-skew 10m).
//
// The far-future records are refused (Apply: record.ErrClockOffset;
// sessions with n3: quarantined), and every write acknowledged after them
// reads back on n1 and n2; n1 does not adopt n4's stamps (its records, its
// HLC), and the skew shows in n1's metrics and status. Then the operator's
// path: verify and status find n3's future record, `future --drop` removes
// it, and after n3's restart every node reads the last acknowledged write.
func TestClockGuardCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	certs := filepath.Join(tmp, "certs")
	if out, code := run(t, "certs", "--dir", certs, "--ids", "n1,n2,n3,n4,app,ops"); code != 0 {
		t.Fatalf("certs: %s", out)
	}
	dirs := map[string]string{}
	for _, id := range []string{"n1", "n2", "n3", "n4"} {
		dirs[id] = filepath.Join(tmp, id)
	}
	// n3, before the guard: a write while its clock was ten years ahead.
	if out, code := run(t, "put", "--dir", dirs["n3"], "--id", "n3", "--debug-clock-skew", "87600h", "victim", "from-the-future"); code != 0 {
		t.Fatalf("put on n3: %d %s", code, out)
	}
	if out, code := run(t, "put", "--dir", dirs["n3"], "--id", "n3", "n3-own", "x"); code != 0 {
		t.Fatalf("put on n3: %d %s", code, out)
	}
	ports := freePorts(t, 5)
	addr := map[string]string{"n1": ports[0], "n2": ports[1], "n3": ports[2], "n4": ports[3]}
	peers := map[string][]string{"n1": {"n2", "n3", "n4"}, "n2": {"n1", "n3"}, "n3": {"n1", "n2"}, "n4": {"n1"}}
	outs := map[string]*syncBuffer{}
	cmds := map[string]*exec.Cmd{}
	// exits[id].done is closed when the node's process ends; its err is
	// then the Wait error.
	type exit struct {
		done chan struct{}
		err  error
	}
	exits := map[string]*exit{}
	start := func(id string, extra ...string) {
		var ps []string
		for _, p := range peers[id] {
			ps = append(ps, p+"="+addr[p])
		}
		if outs[id] == nil {
			outs[id] = &syncBuffer{}
		}
		cmd := exec.Command(binPath, append([]string{"serve", "--dir", dirs[id], "--id", id, "--listen", addr[id], "--certs", certs,
			"--peers", strings.Join(ps, ","), "--writers", "app", "--clients", "ops", "--repair-interval", "200ms"}, extra...)...)
		cmd.Stdout, cmd.Stderr = outs[id], outs[id]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[id] = cmd
		e := &exit{done: make(chan struct{})}
		exits[id] = e
		out := outs[id]
		go func() {
			e.err = cmd.Wait()
			fmt.Fprintf(out, "[test: process exited: %v]\n", e.err)
			close(e.done)
		}()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-e.done })
	}
	stop := func(id string) {
		_ = cmds[id].Process.Signal(syscall.SIGTERM)
		e := exits[id]
		<-e.done
		if err := e.err; err != nil {
			t.Fatalf("%s did not stop cleanly: %v", id, err)
		}
	}
	defer func() {
		if t.Failed() {
			for id, o := range outs {
				s := o.String()
				if len(s) > 3000 {
					s = "..." + s[len(s)-3000:]
				}
				t.Logf("output of %s:\n%s", id, s)
			}
		}
	}()
	start("n1", "--metrics", ports[4])
	start("n2")
	start("n3")
	start("n4", "--debug-clock-skew", "10m")
	dial := func(id, as string) *plugin.Client {
		t.Helper()
		cfg, err := plugin.LoadTLSConfig(certs, record.ReplicaID(as))
		if err != nil {
			t.Fatal(err)
		}
		for {
			dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
			c, err := plugin.Dial(dctx, addr[id], cfg, record.ReplicaID(id), nil)
			dcancel()
			if err == nil {
				t.Cleanup(func() { _ = c.Close() })
				return c
			}
			if ctx.Err() != nil {
				t.Fatalf("dial %s as %s: %v", id, as, err)
			}
			select {
			case <-exits[id].done:
				t.Fatalf("dial %s as %s: the node exited: %v", id, as, exits[id].err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}

	// A peer offers far-future records through Apply: refused, nothing
	// written.
	asPeer := dial("n1", "n2")
	y2200 := time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	for _, k := range []string{"victim", "victim2"} {
		rec := record.NewLWW("n2", record.Timestamp{WallTime: y2200}, []byte("2200"), false).Encode()
		err := asPeer.Apply(ctx, 0, []reconcile.Entry{{Key: []byte(k), Record: rec}})
		if !errors.Is(err, record.ErrClockOffset) {
			t.Fatalf("Apply of a record stamped 2200 for %q: %v, want record.ErrClockOffset", k, err)
		}
	}
	// Acknowledged writes after it, on two nodes; and one on n4, stamped
	// by its clock 10 minutes ahead.
	app1, app2, app4 := dial("n1", "app"), dial("n2", "app"), dial("n4", "app")
	if err := app1.Put(ctx, []byte("victim"), []byte("w1"), nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if err := app2.Put(ctx, []byte("victim"), []byte("w2"), nil); err != nil {
		t.Fatal(err)
	}
	if err := app4.Put(ctx, []byte("n4-key"), []byte("ahead"), nil); err != nil {
		t.Fatal(err)
	}
	readBack := func(c *plugin.Client, key, want string) bool {
		v, err := c.Get(ctx, []byte(key))
		return err == nil && string(v) == want
	}
	metrics := func() string {
		resp, err := http.Get("http://" + ports[4] + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	metric := func(body, name string) float64 {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			return 0
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	var body string
	for {
		body = metrics()
		if readBack(app1, "victim", "w2") && readBack(app2, "victim", "w2") && readBack(app1, "n3-own", "x") && readBack(app2, "n3-own", "x") &&
			metric(body, `pebbleae_records_quarantined_total{peer="n3"}`) > 0 && metric(body, `pebbleae_clock_skew_sessions_total{peer="n4"}`) > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no convergence of n1, n2 with the guard's metrics; metrics:\n%s", grepLines(body, "clock", "quarantined"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("n1's metrics:\n%s", grepLines(body, "clock", "quarantined"))
	if skew := metric(body, `pebbleae_peer_clock_skew_seconds{peer="n4"}`); skew < 590 || skew > 610 {
		t.Errorf("n1's measured clock skew of n4: %v s, want about 600", skew)
	}
	if n := metric(body, "pebbleae_records_refused_clock_offset_total"); n < 2 {
		t.Errorf("n1 counted %v records refused by Apply, want at least 2", n)
	}
	// n1 adopted nothing of n4: not its record, not its clock.
	if _, err := app1.Get(ctx, []byte("n4-key")); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("n1 holds n4's record stamped 10 minutes ahead: %v", err)
	}
	if err := app1.Put(ctx, []byte("after-n4"), []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	ents, err := asPeer.Fetch(ctx, 0, [][]byte{[]byte("after-n4")})
	if err != nil || len(ents) != 1 {
		t.Fatalf("fetch after-n4 from n1: %v %v", ents, err)
	}
	rec, err := record.DecodeRecord(ents[0].Record)
	if err != nil {
		t.Fatal(err)
	}
	if ahead := time.Duration(rec.MaxWallTime() - time.Now().UnixNano()); ahead > record.DefaultMaxClockOffset {
		t.Errorf("n1 stamps its writes %s ahead: its HLC adopted n4's clock", ahead)
	}
	if _, err := app1.Get(ctx, []byte("victim2")); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("the refused Apply of victim2 wrote it: %v", err)
	}
	// The skew and the quarantine in n1's status.
	out, code := run(t, "status", "--addr", "n1="+addr["n1"], "--certs", certs, "--as", "ops")
	t.Logf("n1's status:\n%s", out)
	if code != 0 || !strings.Contains(out, "clock of peer n4: +600.") || !strings.Contains(out, "sessions refused") ||
		!strings.Contains(out, "quarantined:") || !strings.Contains(out, `"victim"`) {
		t.Errorf("n1's status lacks n4's skew or n3's quarantined record: %d\n%s", code, out)
	}
	// n3 itself still reads its future record: the operator's part.
	app3 := dial("n3", "app")
	if !readBack(app3, "victim", "from-the-future") {
		t.Fatalf("n3 lost its future record without the operator")
	}
	stop("n3")
	if out, code := run(t, "verify", "--id", "n3", dirs["n3"]); code == 0 || !strings.Contains(out, `future record "victim"`) {
		t.Errorf("verify of n3 did not report its future record: %d\n%s", code, out)
	} else {
		t.Logf("verify of n3:\n%s", out)
	}
	if out, code := run(t, "status", "--dir", dirs["n3"], "--id", "n3"); code != 0 || !strings.Contains(out, "future records: 1") {
		t.Errorf("status of n3 did not report its future record: %d\n%s", code, out)
	}
	if out, code := run(t, "future", "--dir", dirs["n3"], "--id", "n3", "--drop"); code != 0 || !strings.Contains(out, "dropped 1") {
		t.Fatalf("future --drop on n3: %d\n%s", code, out)
	}
	start("n3")
	app3 = dial("n3", "app")
	for !(readBack(app3, "victim", "w2") && readBack(app1, "victim", "w2") && readBack(app2, "victim", "w2")) {
		if ctx.Err() != nil {
			t.Fatalf("after the drop, the nodes do not all read the last acknowledged write")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, id := range []string{"n1", "n2", "n3", "n4"} {
		stop(id)
	}
}

// grepLines returns the lines of s that contain any of words.
func grepLines(s string, words ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) && !strings.HasPrefix(l, "#") {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
