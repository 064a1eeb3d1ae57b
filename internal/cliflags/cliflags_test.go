package cliflags

import (
	"errors"
	"testing"
)

func TestParsePeers(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		fail bool
	}{
		{"", 0, false},
		{"n1=127.0.0.1:7001", 1, false},
		{"n1=127.0.0.1:7001, n2=[::1]:7002", 2, false},
		{"n1", 0, true},
		{"=127.0.0.1:1", 0, true},
		{"n1=127.0.0.1", 0, true},
		{"n1=127.0.0.1:1,n1=127.0.0.1:2", 0, true},
		{"n1=:", 0, true},
	} {
		ps, err := ParsePeers(c.in)
		if c.fail != (err != nil) || len(ps) != c.n {
			t.Errorf("ParsePeers(%q) = %v, %v", c.in, ps, err)
		}
		if err != nil && !errors.Is(err, ErrBadFlag) {
			t.Errorf("ParsePeers(%q): untyped error %v", c.in, err)
		}
	}
}

func TestParseSplits(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		fail bool
	}{
		{"", 1, false},
		{"m", 2, false},
		{"a,b,c", 4, false},
		{"b,a", 0, true},
		{"a,,b", 0, true},
		{"a,a", 0, true},
	} {
		pn, err := ParseSplits(c.in)
		if c.fail != (err != nil) || (err == nil && pn.NumPartitions() != c.n) {
			t.Errorf("ParseSplits(%q) = %v, %v", c.in, pn, err)
		}
	}
}
