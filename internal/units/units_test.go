package units

import "testing"

func TestBytes(t *testing.T) {
	for _, c := range []struct {
		b    uint64
		want string
	}{{0, "0 B"}, {10<<10 - 1, "10239 B"}, {10 << 10, "10.0 KiB"}, {12800, "12.5 KiB"}, {10<<20 - 1, "10240.0 KiB"}, {40 << 20, "40.0 MiB"}} {
		if got := Bytes(c.b); got != c.want {
			t.Errorf("Bytes(%d) = %q, want %q", c.b, got, c.want)
		}
	}
}
