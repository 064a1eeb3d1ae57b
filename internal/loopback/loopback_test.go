package loopback

import (
	"net"
	"strconv"
	"testing"
)

// TestFreeAddrs: the addresses are distinct, bindable, and outside the
// kernel's ephemeral range.
func TestFreeAddrs(t *testing.T) {
	lo, hi := Range()
	seen := map[string]bool{}
	for range 3 {
		addrs, err := FreeAddrs(5)
		if err != nil {
			t.Fatal(err)
		}
		if len(addrs) != 5 {
			t.Fatalf("FreeAddrs(5) returned %d addresses", len(addrs))
		}
		for _, a := range addrs {
			if seen[a] {
				t.Fatalf("%s handed out twice", a)
			}
			seen[a] = true
			_, p, err := net.SplitHostPort(a)
			if err != nil {
				t.Fatal(err)
			}
			port, _ := strconv.Atoi(p)
			if port < lo || port >= hi {
				t.Fatalf("%s is outside [%d, %d)", a, lo, hi)
			}
			l, err := net.Listen("tcp", a)
			if err != nil {
				t.Fatalf("%s is not bindable: %v", a, err)
			}
			l.Close()
		}
	}
}
