package campaign

import "testing"

// TestLedger: the ledger accepts the last acknowledged write or a later
// one, and refuses older writes, absence of an acknowledged put, and
// values never sent.
func TestLedger(t *testing.T) {
	l := NewLedger()
	put := func(v string) Op { return Op{Value: []byte(v)} }
	val := func(v string) State { return State{Present: true, Value: []byte(v)} }
	if err := l.Check("k", State{}); err != nil {
		t.Fatalf("unwritten key: %v", err)
	}
	i := l.Begin("k", put("v1"))
	if err := l.Check("k", State{}); err != nil {
		t.Fatalf("absent before any acknowledgement: %v", err)
	}
	l.Done("k", i, true)
	i = l.Begin("k", put("v2"))
	l.Done("k", i, false) // acknowledgement lost: may or may not be applied
	for _, s := range []State{val("v1"), val("v2")} {
		if err := l.Check("k", s); err != nil {
			t.Errorf("%v: %v", s, err)
		}
	}
	i = l.Begin("k", Op{Delete: true})
	l.Done("k", i, true)
	for _, c := range []struct {
		s  State
		ok bool
	}{
		{State{}, true}, // deleted, tombstone purged
		{State{Present: true, Tombstone: true}, true}, // deleted
		{val("v1"), false},                            // an older write came back
		{val("v2"), false},                            // an older write came back
		{val("v3"), false},                            // never sent
	} {
		if err := l.Check("k", c.s); (err == nil) != c.ok {
			t.Errorf("%v: got %v, want ok=%v", c.s, err, c.ok)
		}
	}
	if a, f := l.Counts(); a != 2 || f != 1 {
		t.Errorf("counts %d acked, %d failed", a, f)
	}
}
