package fuzz

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/pebble-ae/pebble-ae/internal/cliflags"
)

// FuzzParsePeers: cliflags.ParsePeers never panics; every error matches
// cliflags.ErrBadFlag; an accepted list has unique, valid IDs and
// host:port addresses, and formatting it back as id=addr,... parses to the
// same list (round trip).
func FuzzParsePeers(f *testing.F) {
	for _, s := range []string{
		"",                                 // no peers
		"   ",                              // blank: no peers
		"n1=127.0.0.1:7001",                // one peer
		"n1=127.0.0.1:7001, n2=[::1]:7002", // spaces around items, IPv6
		"n1=localhost:0",                   // host name, port 0
		"n1",                               // no address
		"=127.0.0.1:1",                     // no ID
		"n1=127.0.0.1",                     // no port
		"n1=127.0.0.1:1,n1=127.0.0.1:2",    // duplicate ID
		"n1=:",                             // empty host and port
		"n1=:7001",                         // empty host (any interface)
		"n1=a=b:1",                         // '=' inside the address
		"n1=127.0.0.1:1,",                  // trailing comma
		",n1=127.0.0.1:1",                  // leading comma
		"n1=[::1:7001",                     // unbalanced bracket
		"\xff\xfe=127.0.0.1:1",             // non-UTF-8 ID
		strings.Repeat("r", 300) + "=h:1",  // ID over the length limit
		"n 1=h:1",                          // space inside the ID
		"n1 =h:1",                          // space before '='
		"n1=h:1\x00",                       // NUL in the port
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		peers, err := cliflags.ParsePeers(s)
		if err != nil {
			if !errors.Is(err, cliflags.ErrBadFlag) {
				t.Fatalf("ParsePeers(%q): untyped error %v", s, err)
			}
			if peers != nil {
				t.Fatalf("ParsePeers(%q): error %v with peers %v", s, err, peers)
			}
			return
		}
		seen := map[string]bool{}
		var items []string
		for _, p := range peers {
			if err := p.ID.Validate(); err != nil {
				t.Fatalf("ParsePeers(%q): accepted invalid ID %q: %v", s, p.ID, err)
			}
			if seen[string(p.ID)] {
				t.Fatalf("ParsePeers(%q): accepted duplicate ID %q", s, p.ID)
			}
			seen[string(p.ID)] = true
			if p.Addr == "" || strings.Contains(p.Addr, ",") {
				t.Fatalf("ParsePeers(%q): accepted address %q", s, p.Addr)
			}
			items = append(items, string(p.ID)+"="+p.Addr)
		}
		if len(peers) == 0 {
			return
		}
		again, err := cliflags.ParsePeers(strings.Join(items, ","))
		if err != nil {
			t.Fatalf("ParsePeers(%q) accepted %v, but its formatting %q fails: %v", s, peers, strings.Join(items, ","), err)
		}
		if len(again) != len(peers) {
			t.Fatalf("round trip of %q: %v, then %v", s, peers, again)
		}
		for i := range peers {
			if again[i] != peers[i] {
				t.Fatalf("round trip of %q: peer %d: %v, then %v", s, i, peers[i], again[i])
			}
		}
	})
}

// FuzzParseSplits: cliflags.ParseSplits never panics; every error matches
// cliflags.ErrBadFlag; an accepted value gives len(points)+1 contiguous
// partitions whose bounds are the points, each key maps into the partition
// whose bounds hold it, and formatting the bounds back parses to the same
// partitioner (round trip).
func FuzzParseSplits(f *testing.F) {
	for _, s := range []string{
		"",                  // one partition
		"m",                 // two partitions
		"a,b,c",             // four partitions
		"b,a",               // not increasing
		"a,,b",              // empty point
		"a,a",               // duplicate point
		",",                 // two empty points
		"a,",                // trailing empty point
		" a, b",             // spaces are part of the keys
		"\x00,\xff",         // extreme single bytes
		"\xff\xffae\x00",    // the reserved prefix as a point
		"a,ab,abc,b",        // prefixes of each other
		"\xff\xfe,\xff\xff", // non-UTF-8 points
		strings.Repeat("k,", 64) + "z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pn, err := cliflags.ParseSplits(s)
		if err != nil {
			if !errors.Is(err, cliflags.ErrBadFlag) {
				t.Fatalf("ParseSplits(%q): untyped error %v", s, err)
			}
			return
		}
		n := pn.NumPartitions()
		if n < 1 {
			t.Fatalf("ParseSplits(%q): %d partitions", s, n)
		}
		var points []string
		var prevEnd []byte
		for i := 0; i < n; i++ {
			start, end := pn.Bounds(i)
			if i == 0 && len(start) != 0 {
				t.Fatalf("ParseSplits(%q): first partition starts at %q", s, start)
			}
			if i > 0 {
				if !bytes.Equal(start, prevEnd) {
					t.Fatalf("ParseSplits(%q): partition %d starts at %q, previous ends at %q", s, i, start, prevEnd)
				}
				points = append(points, string(start))
				if got := pn.Partition(start); got != i {
					t.Fatalf("ParseSplits(%q): key %q maps to partition %d, want %d", s, start, got, i)
				}
			}
			if (i == n-1) != (end == nil) {
				t.Fatalf("ParseSplits(%q): partition %d of %d ends at %q", s, i, n, end)
			}
			prevEnd = end
		}
		if got := pn.Partition([]byte(s)); got < 0 || got >= n {
			t.Fatalf("ParseSplits(%q): key %q maps to partition %d of %d", s, s, got, n)
		}
		again, err := cliflags.ParseSplits(strings.Join(points, ","))
		if err != nil {
			t.Fatalf("ParseSplits(%q) accepted, but its formatting fails: %v", s, err)
		}
		if again.Name() != pn.Name() || again.NumPartitions() != n {
			t.Fatalf("round trip of %q: %s (%d), then %s (%d)", s, pn.Name(), n, again.Name(), again.NumPartitions())
		}
	})
}
