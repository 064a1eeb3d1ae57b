package fuzz

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/hooks"
	"github.com/pebble-ae/pebble-ae/internal/keyspace"
	"github.com/pebble-ae/pebble-ae/merkle"
)

type quiet struct{}

func (quiet) Infof(string, ...interface{})  {}
func (quiet) Errorf(string, ...interface{}) {}
func (quiet) Fatalf(format string, args ...interface{}) {
	panic(fmt.Sprintf(format, args...))
}

// treeModel runs a merkle tree over a real Pebble DB (in-memory FS) next to
// a map of the data.
type treeModel struct {
	t     *testing.T
	fs    vfs.FS
	db    *pebble.DB
	tree  *merkle.Tree
	opts  merkle.Options
	model map[string][]byte
}

func (m *treeModel) open() {
	db, err := pebble.Open("db", &pebble.Options{FS: m.fs, FormatMajorVersion: pebble.FormatValueSeparation, Logger: quiet{}})
	if err != nil {
		m.t.Fatal(err)
	}
	o := m.opts
	tree, err := merkle.Open(db, &o)
	if err != nil {
		m.t.Fatal(err)
	}
	if err := tree.Rebuild(context.Background(), nil); err != nil {
		m.t.Fatal(err)
	}
	m.db, m.tree = db, tree
}

func (m *treeModel) close() {
	m.tree.Close()
	if err := m.db.Close(); err != nil {
		m.t.Fatal(err)
	}
}

func (m *treeModel) commit(fn func(b *hooks.Batch) error) {
	b := hooks.NewBatch(m.db.NewBatch())
	defer b.Pebble().Close()
	if err := fn(b); err != nil {
		m.t.Fatal(err)
	}
	if err := hooks.Commit(m.db, m.tree.Hook(), b, pebble.NoSync); err != nil {
		m.t.Fatal(err)
	}
}

func (m *treeModel) want(lo, hi []byte) merkle.Fingerprint {
	var fp merkle.Fingerprint
	for k, v := range m.model {
		if k < string(lo) || (hi != nil && k >= string(hi)) {
			continue
		}
		d, _ := merkle.LeafDigest(nil, []byte(k), v)
		fp.Sum = fp.Sum.Add(d)
		fp.Count++
	}
	return fp
}

var fuzzSplit = []byte("k8")

// FuzzTreeOps interprets the input as a program of tree operations (set,
// delete, range delete, multi-key batch, checkpoint, reopen, rebuild, range
// fingerprint and children queries) on two partitions with tiny leaves, and
// checks every query against the model and the whole tree with Verify at the
// end.
func FuzzTreeOps(f *testing.F) {
	// Seeds: a few sets and a query; deletes around a checkpoint; a range
	// deletion then a reopen; a rebuild in the middle.
	f.Add([]byte{0, 1, 0, 2, 0, 3, 6, 0, 9})
	f.Add([]byte{0, 5, 0, 6, 4, 0, 1, 5, 6, 0, 9})
	f.Add([]byte{0, 1, 0, 2, 0, 80, 0, 90, 2, 1, 85, 5, 6, 12})
	f.Add([]byte{3, 9, 7, 0, 0, 33, 6, 0, 200})
	// Keys above the reserved range: sets, a checkpoint, a range deletion
	// across the reserved range, a reopen without a checkpoint, queries.
	f.Add([]byte{0, 90, 0, 201, 0, 230, 4, 3, 210, 240, 99, 5, 0, 250, 3, 95, 235, 7, 1, 6, 80, 255, 9, 0, 229})
	f.Fuzz(func(t *testing.T, prog []byte) {
		if len(prog) > 400 {
			prog = prog[:400]
		}
		pn, _ := merkle.SplitPoints([][]byte{fuzzSplit})
		m := &treeModel{t: t, fs: vfs.NewMem(), opts: merkle.Options{Params: merkle.Params{LeafSize: 3}, Partitioner: pn}, model: map[string][]byte{}}
		m.open()
		defer func() { m.close() }()
		ctx := context.Background()
		// Bytes from 200 up make keys that sort above the reserved
		// internal range (right at its end, and beyond), so that the last
		// partition spans it with user keys on both sides.
		key := func(b byte) []byte {
			k := []byte(fmt.Sprintf("k%02d", b%100))
			switch {
			case b >= 228:
				return append([]byte("\xff\xff\xff"), k...)
			case b >= 200:
				return append(append([]byte(nil), keyspace.InternalEnd...), k...)
			}
			return k
		}
		next := func(i *int) byte {
			if *i >= len(prog) {
				return 0
			}
			b := prog[*i]
			*i++
			return b
		}
		for i := 0; i < len(prog); {
			op := next(&i) % 10
			switch op {
			case 0, 1: // set
				k := key(next(&i))
				v := []byte{op, byte(i)}
				m.model[string(k)] = v
				m.commit(func(b *hooks.Batch) error { return b.Set(k, v) })
			case 2: // delete
				k := key(next(&i))
				delete(m.model, string(k))
				m.commit(func(b *hooks.Batch) error { return b.Delete(k) })
			case 3: // range delete
				a, c := key(next(&i)), key(next(&i))
				if bytes.Compare(a, c) > 0 {
					a, c = c, a
				}
				if bytes.Equal(a, c) {
					continue
				}
				for k := range m.model {
					if k >= string(a) && k < string(c) {
						delete(m.model, k)
					}
				}
				// As the engine does: never across the reserved range.
				m.commit(func(b *hooks.Batch) error {
					for _, sp := range keyspace.UserSpans(a, c) {
						if err := b.DeleteRange(sp[0], sp[1]); err != nil {
							return err
						}
					}
					return nil
				})
			case 4: // batch of sets
				n := int(next(&i)%8) + 1
				m.commit(func(b *hooks.Batch) error {
					for j := 0; j < n; j++ {
						k := key(next(&i))
						m.model[string(k)] = []byte{byte(j)}
						if err := b.Set(k, []byte{byte(j)}); err != nil {
							return err
						}
					}
					return nil
				})
			case 5:
				if err := m.tree.Checkpoint(ctx); err != nil {
					t.Fatal(err)
				}
			case 6, 9: // query a range of a partition
				a, c := key(next(&i)), key(next(&i))
				if bytes.Compare(a, c) > 0 {
					a, c = c, a
				}
				part := pn.Partition(a)
				ps, pe := pn.Bounds(part)
				if pe != nil && bytes.Compare(c, pe) > 0 {
					c = pe
				}
				if bytes.Compare(a, ps) < 0 {
					a = ps
				}
				if bytes.Compare(a, c) >= 0 {
					continue
				}
				r := merkle.Range{Start: a, End: c}
				got, err := m.tree.RangeFingerprint(ctx, part, r)
				if err != nil {
					t.Fatal(err)
				}
				if want := m.want(a, c); got != want {
					t.Fatalf("fingerprint [%s, %s): count %d, want %d", a, c, got.Count, want.Count)
				}
				kids, err := m.tree.Children(ctx, part, r, 2+int(op))
				if err != nil {
					t.Fatal(err)
				}
				for _, k := range kids {
					if want := m.want(k.Range.Start, k.Range.End); k.Fingerprint != want {
						t.Fatalf("child [%s, %s): count %d want %d", k.Range.Start, k.Range.End, k.Fingerprint.Count, want.Count)
					}
				}
			case 7: // reopen, with or without a checkpoint first
				if next(&i)%2 == 0 {
					if err := m.tree.Checkpoint(ctx); err != nil {
						t.Fatal(err)
					}
				}
				m.close()
				m.open()
			case 8: // rebuild
				if err := m.tree.MarkRebuild(ctx, int(next(&i)%2)); err != nil {
					t.Fatal(err)
				}
				if err := m.tree.Rebuild(ctx, nil); err != nil {
					t.Fatal(err)
				}
			}
		}
		ms, err := m.tree.Verify(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) > 0 {
			t.Fatalf("verify: %v", ms)
		}
		// Whole partitions equal the model.
		keys := make([]string, 0, len(m.model))
		for k := range m.model {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for p := 0; p < pn.NumPartitions(); p++ {
			ps, pe := pn.Bounds(p)
			got, err := m.tree.RangeFingerprint(ctx, p, merkle.Range{})
			if err != nil {
				t.Fatal(err)
			}
			if want := m.want(ps, pe); got != want {
				t.Fatalf("partition %d: count %d want %d (%d keys)", p, got.Count, want.Count, len(keys))
			}
		}
	})
}
