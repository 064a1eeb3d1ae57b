package digest

import (
	"fmt"
	"testing"
)

// TestGolden pins both formulas to the values merkle computed before this
// package existed (merkle.LeafDigest and Fingerprint.Short at e634ea2): a
// change here changes every replica's tree and wire, so it must come with
// a new domain tag, never an edited expectation.
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		key, record string
		leaf        string
		short       uint64
	}{
		{"", "", "c1cd93f67734580071ea0c17e394a24df7668237cbc90755dc76dd979d669657", 0xc1cd93f677345800},
		{"user:1", "\x02\x01alice", "3582a56bd0d7fe29b027a95f2df69aea3c21d55f745fa8872756d1d59192c2e4", 0x3582a56bd0d7fe29},
	} {
		d, _ := Leaf(nil, []byte(tc.key), []byte(tc.record))
		if got := fmt.Sprintf("%x", d); got != tc.leaf || Short(d) != tc.short {
			t.Errorf("Leaf(%q, %q) = %s, Short %#x; want %s, %#x", tc.key, tc.record, got, Short(d), tc.leaf, tc.short)
		}
	}
	var sum [32]byte
	sum[0] = 1
	if got, want := fmt.Sprintf("%x", Fingerprint(sum, 1)), "d531258f831547070156736911608249"; got != want {
		t.Errorf("Fingerprint(1, 1) = %s, want %s", got, want)
	}
}

// TestLeafScratch checks that Leaf reuses a large enough scratch and that
// the digest does not depend on what the scratch held.
func TestLeafScratch(t *testing.T) {
	want, _ := Leaf(nil, []byte("k"), []byte("v"))
	scratch := make([]byte, 0, 256)
	scratch = append(scratch, "garbage"...)
	got, out := Leaf(scratch, []byte("k"), []byte("v"))
	if got != want {
		t.Fatalf("digest with a dirty scratch %x, want %x", got, want)
	}
	if &out[:1][0] != &scratch[:1][0] {
		t.Fatalf("scratch of capacity %d not reused", cap(scratch))
	}
}

func ExampleLeaf() {
	d, _ := Leaf(nil, []byte("user:1"), []byte("\x02\x01alice"))
	fmt.Printf("%#x\n", Short(d))
	// Output: 0x3582a56bd0d7fe29
}
