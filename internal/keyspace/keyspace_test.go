package keyspace

import (
	"bytes"
	"fmt"
	"testing"
)

func TestIsUser(t *testing.T) {
	for _, c := range []struct {
		key  string
		user bool
	}{
		{"", true},
		{"a", true},
		{"\xff\xffad\xff\xff", true},
		{"\xff\xffae", true}, // a proper prefix of the reserved prefix
		{"\xff\xffae\x00", false},
		{"\xff\xffae\x00m params", false},
		{"\xff\xffae\x01", true}, // InternalEnd
		{"\xff\xffb", true},      // above the reserved range
		{"\xff\xff\xff\xff", true},
	} {
		if got := IsUser([]byte(c.key)); got != c.user {
			t.Errorf("IsUser(%q) = %t, want %t", c.key, got, c.user)
		}
	}
}

func TestUserSpans(t *testing.T) {
	p, e := string(InternalPrefix), string(InternalEnd)
	for _, c := range []struct {
		start, end string
		open       bool // end is nil
		want       string
	}{
		{"a", "b", false, `[["a","b")]`},
		{"a", "", true, `[["a",` + fmt.Sprintf("%q", p) + `) [` + fmt.Sprintf("%q", e) + `,nil)]`},
		{"a", p, false, `[["a",` + fmt.Sprintf("%q", p) + `)]`},
		{"a", p + "x", false, `[["a",` + fmt.Sprintf("%q", p) + `)]`},
		{"a", "\xff\xffb", false, `[["a",` + fmt.Sprintf("%q", p) + `) [` + fmt.Sprintf("%q", e) + `,"\xff\xffb")]`},
		{p, "\xff\xffb", false, `[[` + fmt.Sprintf("%q", e) + `,"\xff\xffb")]`},
		{p + "m", e, false, `[]`},
		{e, "", true, `[[` + fmt.Sprintf("%q", e) + `,nil)]`},
		{"\xff\xffb", "", true, `[["\xff\xffb",nil)]`},
		{"b", "a", false, `[]`},
	} {
		var end []byte
		if !c.open {
			end = []byte(c.end)
		}
		got := format(UserSpans([]byte(c.start), end))
		if got != c.want {
			t.Errorf("UserSpans(%q, %q) = %s, want %s", c.start, end, got, c.want)
		}
		// No span holds a reserved key, and every user key of the range is
		// in one.
		for _, k := range []string{c.start, p, p + "x", e, "\xff\xffb", "\xff\xff\xff"} {
			in := bytes.Compare([]byte(k), []byte(c.start)) >= 0 && (end == nil || bytes.Compare([]byte(k), end) < 0)
			covered := false
			for _, sp := range UserSpans([]byte(c.start), end) {
				covered = covered || (bytes.Compare([]byte(k), sp[0]) >= 0 && (sp[1] == nil || bytes.Compare([]byte(k), sp[1]) < 0))
			}
			if covered != (in && IsUser([]byte(k))) {
				t.Errorf("UserSpans(%q, %q): key %q covered %t, in range %t, user %t", c.start, end, k, covered, in, IsUser([]byte(k)))
			}
		}
	}
}

func format(spans [][2][]byte) string {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, sp := range spans {
		if i > 0 {
			b.WriteByte(' ')
		}
		if sp[1] == nil {
			fmt.Fprintf(&b, "[%q,nil)", sp[0])
		} else {
			fmt.Fprintf(&b, "[%q,%q)", sp[0], sp[1])
		}
	}
	b.WriteByte(']')
	return b.String()
}

func TestCompareEnd(t *testing.T) {
	for _, c := range []struct {
		a, b []byte
		want int
	}{
		{nil, nil, 0},
		{nil, []byte("\xff\xff\xff"), 1},
		{[]byte("a"), nil, -1},
		{[]byte("a"), []byte("b"), -1},
		{[]byte("b"), []byte("b"), 0},
	} {
		if got := CompareEnd(c.a, c.b); got != c.want {
			t.Errorf("CompareEnd(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
