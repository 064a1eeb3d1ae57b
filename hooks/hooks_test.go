package hooks_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/hooks"
)

func openDB(t *testing.T) *pebble.DB {
	db, err := pebble.Open("db", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// recorder is a hook that logs its calls.
func recorder(name string, log *[]string, fail error) hooks.Hook {
	return hooks.Hook{
		PreCommit: func(b *hooks.Batch) error {
			*log = append(*log, fmt.Sprintf("%s.pre(%d)", name, b.Len()))
			return fail
		},
		PostCommit: func(b *hooks.Batch, err error) {
			*log = append(*log, fmt.Sprintf("%s.post(%v)", name, err != nil))
		},
	}
}

func TestTeeOrderAndAtomicity(t *testing.T) {
	db := openDB(t)
	var log []string
	extra := hooks.Hook{PreCommit: func(b *hooks.Batch) error {
		// A hook may add its own operations to the same batch.
		return b.Pebble().Set([]byte("hook-key"), []byte("x"), nil)
	}}
	h := hooks.Tee(recorder("a", &log, nil), extra, recorder("b", &log, nil))
	b := hooks.NewBatch(db.NewBatch())
	key := []byte("k")
	if err := b.Set(key, []byte("v")); err != nil {
		t.Fatal(err)
	}
	key[0] = 'z' // the batch owns its copy
	if err := b.Delete([]byte("d")); err != nil {
		t.Fatal(err)
	}
	if err := hooks.Commit(db, h, b, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a.pre(2)", "b.pre(2)", "b.post(false)", "a.post(false)"}; !reflect.DeepEqual(log, want) {
		t.Fatalf("calls %v, want %v", log, want)
	}
	if got := string(b.Ops()[0].Key); got != "k" {
		t.Fatalf("op key %q: the batch must own its keys", got)
	}
	for _, k := range []string{"k", "hook-key"} {
		if _, c, err := db.Get([]byte(k)); err != nil {
			t.Fatalf("%s not committed: %v", k, err)
		} else {
			c.Close()
		}
	}
}

func TestTeeFailureAborts(t *testing.T) {
	db := openDB(t)
	var log []string
	boom := errors.New("boom")
	h := hooks.Tee(recorder("a", &log, nil), recorder("b", &log, boom), recorder("c", &log, nil))
	b := hooks.NewBatch(db.NewBatch())
	_ = b.Set([]byte("k"), []byte("v"))
	err := hooks.Commit(db, h, b, pebble.Sync)
	if !errors.Is(err, boom) || !errors.Is(err, hooks.ErrAborted) {
		t.Fatalf("err = %v", err)
	}
	// a succeeded, so it is told (with the error); c never ran.
	if want := []string{"a.pre(1)", "b.pre(1)", "a.post(true)"}; !reflect.DeepEqual(log, want) {
		t.Fatalf("calls %v, want %v", log, want)
	}
	if _, _, err := db.Get([]byte("k")); !errors.Is(err, pebble.ErrNotFound) {
		t.Fatalf("aborted batch was applied: %v", err)
	}
}

// TestSetFunc checks that SetFunc writes the value in place and refuses a
// fill that does not write exactly the announced length (it would commit a
// corrupt value).
func TestSetFunc(t *testing.T) {
	db := openDB(t)
	b := hooks.NewBatch(db.NewBatch())
	if err := b.SetFunc([]byte("k"), 3, func(dst []byte) []byte { return append(dst, "abc"...) }); err != nil {
		t.Fatal(err)
	}
	if ops := b.Ops(); len(ops) != 1 || string(ops[0].Key) != "k" || string(ops[0].Value) != "abc" {
		t.Fatalf("ops = %+v", ops)
	}
	for _, tc := range []struct {
		name string
		fill func(dst []byte) []byte
	}{
		{"short", func(dst []byte) []byte { return append(dst, "ab"...) }},
		{"long", func(dst []byte) []byte { return append(dst, "abcd"...) }},
		{"elsewhere", func(dst []byte) []byte { return []byte("abc") }},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: SetFunc did not panic", tc.name)
				}
			}()
			_ = b.SetFunc([]byte("k2"), 3, tc.fill)
		}()
	}
}
