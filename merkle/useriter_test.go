package merkle

import (
	"context"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/internal/keyspace"
)

// TestUserIter: user keys on both sides of the reserved range, none of the
// reserved keys, whatever the bounds and seeks.
func TestUserIter(t *testing.T) {
	db, err := pebble.Open("db", &pebble.Options{FS: vfs.NewMem(), Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p := string(keyspace.InternalPrefix)
	for _, k := range []string{"a", "\xff\xffad", "\xff\xffae", p, p + "l1", p + "m", "\xff\xffae\x01", "\xff\xffb", "\xff\xff\xff"} {
		if err := db.Set([]byte(k), nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	scan := func(lower, upper []byte, seek string) string {
		it, err := NewUserIter(context.Background(), db, lower, upper)
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		var keys []string
		valid := it.First()
		if seek != "" {
			valid = it.SeekGE([]byte(seek))
		}
		for ; valid; valid = it.Next() {
			keys = append(keys, string(it.Key()))
		}
		return strings.Join(keys, "|")
	}
	for _, c := range []struct {
		lower, upper []byte
		seek         string
		want         string
	}{
		{nil, nil, "", "a|\xff\xffad|\xff\xffae|\xff\xffae\x01|\xff\xffb|\xff\xff\xff"},
		{nil, []byte(p + "l2"), "", "a|\xff\xffad|\xff\xffae"},
		{[]byte(p + "l"), nil, "", "\xff\xffae\x01|\xff\xffb|\xff\xff\xff"},
		{[]byte("\xff\xffae"), []byte("\xff\xffb"), "", "\xff\xffae|\xff\xffae\x01"},
		{nil, nil, p + "l", "\xff\xffae\x01|\xff\xffb|\xff\xff\xff"},
		{[]byte("\xff\xffb"), nil, "", "\xff\xffb|\xff\xff\xff"},
	} {
		if got := scan(c.lower, c.upper, c.seek); got != c.want {
			t.Errorf("[%q, %q) seek %q: %q, want %q", c.lower, c.upper, c.seek, got, c.want)
		}
	}
}
