package plugin_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// TestGenerateCertsRefusesBadRequests: every request GenerateCerts cannot
// serve is an error wrapping ErrBadCertRequest, and nothing is written (an
// ID that cannot name a file used to fail after the CA was made).
func TestGenerateCertsRefusesBadRequests(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ids   []record.ReplicaID
		hosts []string
	}{
		{"no ids", nil, nil},
		{"empty id", []record.ReplicaID{"a", ""}, nil},
		{"duplicate id", []record.ReplicaID{"a", "b", "a"}, nil},
		{"path in id", []record.ReplicaID{"a", "x/y"}, nil},
		{"the CA's name", []record.ReplicaID{"ca"}, nil},
		{"empty host", []record.ReplicaID{"a"}, []string{"localhost", ""}},
		{"padded host", []record.ReplicaID{"a"}, []string{" localhost"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			err := plugin.GenerateCerts(dir, tc.ids, tc.hosts...)
			if !errors.Is(err, plugin.ErrBadCertRequest) {
				t.Fatalf("err %v, want one wrapping ErrBadCertRequest", err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Fatalf("%d files written for a refused request", len(ents))
			}
		})
	}
	// A good request, then a second one adding a node: the CA is kept, so
	// the first node's certificate still verifies against it.
	dir := t.TempDir()
	if err := plugin.GenerateCerts(dir, []record.ReplicaID{"a"}); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, plugin.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := plugin.GenerateCerts(dir, []record.ReplicaID{"b"}); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, plugin.CACertFile)); string(again) != string(ca) {
		t.Fatal("a second GenerateCerts replaced the CA")
	}
	for _, id := range []record.ReplicaID{"a", "b"} {
		if _, err := plugin.LoadTLSConfig(dir, id); err != nil {
			t.Fatalf("node %s: %v", id, err)
		}
	}
}
