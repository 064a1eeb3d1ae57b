package fuzz

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/pebble-ae/pebble-ae/reconcile"
)

// FuzzSymbolStreams checks the rateless symbol streams against the truth:
// two sets derived from the input (common items, items of A only, items of
// B only) are encoded and decoded chunk by chunk as a session does; once
// the decoder says it has decoded, it must have found exactly the items
// each side holds alone. The last input corrupts A's symbols, 9 bytes a
// chunk: the decoder must neither panic nor loop, whatever it is fed.
func FuzzSymbolStreams(f *testing.F) {
	f.Add(uint8(3), uint8(1), uint8(2), uint64(1), []byte{})
	f.Add(uint8(0), uint8(0), uint8(1), uint64(2), []byte{1, 2, 3})
	f.Add(uint8(200), uint8(40), uint8(40), uint64(3), []byte{})
	f.Add(uint8(10), uint8(0), uint8(0), uint64(4), []byte{9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9})
	f.Add(uint8(1), uint8(255), uint8(0), uint64(5), []byte{0xff, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, common, onlyA, onlyB uint8, seed uint64, corrupt []byte) {
		next := seed
		rnd := func() uint64 { // splitmix64
			next += 0x9e3779b97f4a7c15
			z := next
			z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
			z = (z ^ (z >> 27)) * 0x94d049bb133111eb
			return z ^ (z >> 31)
		}
		var a, b, wantA, wantB []uint64
		for range int(common) * 4 {
			x := rnd()
			a, b = append(a, x), append(b, x)
		}
		for range onlyA {
			x := rnd()
			a, wantA = append(a, x), append(wantA, reconcile.SketchID(x))
		}
		for range onlyB {
			x := rnd()
			b, wantB = append(b, x), append(wantB, reconcile.SketchID(x))
		}
		ea, eb := reconcile.NewSymbolEncoder(slices.Clone(a)), reconcile.NewSymbolEncoder(slices.Clone(b))
		var d reconcile.SymbolDecoder
		max := 4*(len(a)+len(b)) + 64
		tampered := false
		for d.Received() < max {
			n := reconcile.SymbolChunkSize(d.Received())
			ca, cb := ea.Next(n), eb.Next(n)
			if len(corrupt) >= 9 {
				// Corrupt one symbol of A's chunk with 9 input bytes.
				i := int(corrupt[0]) % n
				ca[i].Count += int8(corrupt[1])
				ca[i].Check ^= binary.BigEndian.Uint16(corrupt[2:4])
				ca[i].ID ^= uint64(binary.BigEndian.Uint32(corrupt[4:8])) << 16 >> 16
				tampered = tampered || corrupt[1] != 0 || binary.BigEndian.Uint16(corrupt[2:4]) != 0 || binary.BigEndian.Uint32(corrupt[4:8]) != 0
				corrupt = corrupt[9:]
			}
			if err := d.Add(ca, cb); err != nil {
				return // inconsistent symbols detected
			}
			if d.Decoded() {
				break
			}
		}
		if !d.Decoded() {
			// Even honest streams may fail to decode, rarely: a symbol
			// that matches count and check by chance (16-bit checks)
			// blocks the peeling, and the session falls back to the tree
			// descent. What must never happen is a wrong decode.
			return
		}
		gotA, gotB := d.Result()
		slices.Sort(gotA)
		slices.Sort(gotB)
		slices.Sort(wantA)
		slices.Sort(wantB)
		if !slices.Equal(gotA, wantA) || !slices.Equal(gotB, wantB) {
			// Only corrupted streams may decode to something else; an
			// honest decode must be exact.
			if !tampered {
				t.Fatalf("decoded %d/%d items, want %d/%d", len(gotA), len(gotB), len(wantA), len(wantB))
			}
		}
	})
}
