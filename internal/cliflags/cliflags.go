// Package cliflags parses the structured flags of the pebble-ae command:
// peer lists and partition split points. It is separate from package main
// so that it can be fuzzed.
package cliflags

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// ErrBadFlag reports a malformed flag value.
var ErrBadFlag = errors.New("cliflags: bad flag value")

// Peer is one --peers entry.
type Peer struct {
	ID   record.ReplicaID
	Addr string
}

// ParsePeers parses "id=host:port,id=host:port". IDs must be valid and
// unique; addresses must be host:port.
func ParsePeers(s string) ([]Peer, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []Peer
	seen := map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("%w: peer %q: want id=host:port", ErrBadFlag, item)
		}
		if err := record.ReplicaID(id).Validate(); err != nil {
			return nil, fmt.Errorf("%w: peer %q: %w", ErrBadFlag, item, err)
		}
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			return nil, fmt.Errorf("%w: peer %q: address %q is not host:port", ErrBadFlag, item, addr)
		}
		if seen[id] {
			return nil, fmt.Errorf("%w: peer %q listed twice", ErrBadFlag, id)
		}
		seen[id] = true
		out = append(out, Peer{ID: record.ReplicaID(id), Addr: addr})
	}
	return out, nil
}

// ParseSplits parses comma-separated partition split keys into a
// partitioner ("" is one partition). Keys must be non-empty and strictly
// increasing.
func ParseSplits(s string) (merkle.Partitioner, error) {
	if strings.TrimSpace(s) == "" {
		return merkle.SinglePartition(), nil
	}
	var pts [][]byte
	for _, p := range strings.Split(s, ",") {
		pts = append(pts, []byte(p))
	}
	pn, err := merkle.SplitPoints(pts)
	if err != nil {
		return nil, fmt.Errorf("%w: --splits %q: %w", ErrBadFlag, s, err)
	}
	return pn, nil
}
