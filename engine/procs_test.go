package engine

import (
	"runtime"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

func TestBackgroundProcs(t *testing.T) {
	if got := BackgroundProcs(nil); got != 2 {
		t.Errorf("BackgroundProcs(nil) = %d, want 2 (one compaction, one flush)", got)
	}
	o := &Options{Pebble: &pebble.Options{CompactionConcurrencyRange: func() (int, int) { return 1, 3 }}}
	if got := BackgroundProcs(o); got != 4 {
		t.Errorf("BackgroundProcs with compactions up to 3 = %d, want 4", got)
	}
}

// TestReserveProcs: GOMAXPROCS rises by the background work, unless the
// environment sets it.
func TestReserveProcs(t *testing.T) {
	orig := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(orig) })

	t.Setenv("GOMAXPROCS", "")
	before, after := ReserveProcs(nil)
	if before != orig || after != orig+2 || runtime.GOMAXPROCS(0) != orig+2 {
		t.Errorf("ReserveProcs: %d -> %d (now %d), want %d -> %d", before, after, runtime.GOMAXPROCS(0), orig, orig+2)
	}
	runtime.GOMAXPROCS(orig)

	t.Setenv("GOMAXPROCS", "3")
	before, after = ReserveProcs(nil)
	if before != orig || after != orig || runtime.GOMAXPROCS(0) != orig {
		t.Errorf("ReserveProcs with GOMAXPROCS set: %d -> %d (now %d), want it left at %d", before, after, runtime.GOMAXPROCS(0), orig)
	}
}
