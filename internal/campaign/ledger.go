package campaign

import (
	"bytes"
	"fmt"
	"sort"
	"sync"
)

// Op is one write a client sent: a put of Value, or a delete.
type Op struct {
	Delete bool
	Value  []byte
}

func (o Op) String() string {
	if o.Delete {
		return "delete"
	}
	return fmt.Sprintf("put %q", o.Value)
}

// State is what a replica holds for a key.
type State struct {
	// Present is false when the replica has no record for the key.
	Present bool
	// Tombstone is true when the record's winner is a delete.
	Tombstone bool
	// Value is the winner's value.
	Value []byte
}

func (s State) String() string {
	switch {
	case !s.Present:
		return "absent"
	case s.Tombstone:
		return "tombstone"
	}
	return fmt.Sprintf("value %q", s.Value)
}

// matches reports whether s is the outcome of op.
func (o Op) matches(s State) bool {
	if o.Delete {
		return !s.Present || s.Tombstone
	}
	return s.Present && !s.Tombstone && bytes.Equal(s.Value, o.Value)
}

// Ledger records, per key, the writes a client sent and which of them were
// acknowledged. The client issues a key's writes one at a time, so a
// replica that lost nothing holds the outcome of the last acknowledged
// write or of a later one (a write whose acknowledgement was lost may have
// been applied). Safe for concurrent use.
type Ledger struct {
	mu   sync.Mutex
	keys map[string]*keyLog
	// acked and failed count acknowledged and failed writes.
	acked, failed int
}

type keyLog struct {
	// ops[0] is the last acknowledged write (if acked) followed by every
	// write sent after it.
	ops   []Op
	acked bool
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger { return &Ledger{keys: map[string]*keyLog{}} }

// Begin records that op on key is about to be sent and returns its index
// for Done.
func (l *Ledger) Begin(key string, op Op) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	kl := l.keys[key]
	if kl == nil {
		kl = &keyLog{}
		l.keys[key] = kl
	}
	kl.ops = append(kl.ops, op)
	return len(kl.ops) - 1
}

// Done records the outcome of the write Begin returned idx for: with
// acked, the write is acknowledged and older ones no longer count.
func (l *Ledger) Done(key string, idx int, acked bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !acked {
		l.failed++
		return
	}
	l.acked++
	kl := l.keys[key]
	kl.ops = kl.ops[idx:]
	kl.acked = true
}

// Counts returns the numbers of acknowledged and failed writes.
func (l *Ledger) Counts() (acked, failed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked, l.failed
}

// Keys returns every key written, sorted.
func (l *Ledger) Keys() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.keys))
	for k := range l.keys {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Check returns an error if s is not the outcome of the last acknowledged
// write of key or of a write sent after it. A key never acknowledged may
// also be absent.
func (l *Ledger) Check(key string, s State) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	kl := l.keys[key]
	if kl == nil {
		return nil
	}
	if !kl.acked && !s.Present {
		return nil
	}
	for _, op := range kl.ops {
		if op.matches(s) {
			return nil
		}
	}
	if kl.acked {
		return fmt.Errorf("key %q: holds %s; last acknowledged write: %s (%d later writes)", key, s, kl.ops[0], len(kl.ops)-1)
	}
	return fmt.Errorf("key %q: holds %s, which no write sent", key, s)
}
