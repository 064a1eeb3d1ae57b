// Package loopback hands out loopback addresses for servers that must
// know each other's addresses before any of them starts (test clusters of
// `pebble-ae serve` processes, the campaign's nodes).
//
// A port taken with "127.0.0.1:0" and released comes from the kernel's
// ephemeral range, where any outgoing connection of any process may take
// it before the server binds it: "address already in use", seen in CI. So
// FreeAddrs draws from below that range, where the kernel hands out
// nothing by itself: random ports, each checked bindable and never handed
// out twice in this process. A caller that can pass a bound listener to
// its server should do that instead.
package loopback

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreeAddrs returns n free "127.0.0.1:port" addresses.
func FreeAddrs(n int) ([]string, error) {
	lo, hi := Range()
	out := make([]string, 0, n)
	for attempts := 0; len(out) < n; attempts++ {
		if attempts > 1000 {
			return nil, fmt.Errorf("loopback: no free port in [%d, %d) after %d attempts", lo, hi, attempts)
		}
		port := lo + rand.IntN(hi-lo)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		handedOut.Lock()
		if handedOut.ports[port] {
			handedOut.Unlock()
			continue
		}
		l, err := net.Listen("tcp", addr)
		if err == nil {
			_ = l.Close()
			handedOut.ports[port] = true
		}
		handedOut.Unlock()
		if err == nil {
			out = append(out, addr)
		}
	}
	return out, nil
}

// Range is the range of ports FreeAddrs draws from: from 20000 up to the
// low end of Linux's ip_local_port_range (32768 by default), or from 10000
// if that leaves fewer than 1000 ports.
func Range() (lo, hi int) {
	lo, hi = 20000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				hi = v
			}
		}
	}
	if hi-lo < 1000 {
		lo = 10000
	}
	if hi-lo < 1000 {
		hi = lo + 1000
	}
	return lo, hi
}
