package reconcile

import (
	"errors"
	"fmt"
	"math"
)

// Rateless set reconciliation: coded symbols of a rateless invertible Bloom
// lookup table (Yang, Gilad and Alizadeh, "Practical Rateless Set
// Reconciliation", SIGCOMM 2024).
//
// A fixed-size IBLT (sketch.go) must be sized before the difference is known:
// too small and it does not decode (one more round trip), too large and it
// wastes bytes. A rateless table is an infinite sequence of coded symbols
// s_0, s_1, ...; item x is added to s_0 and then to a pseudo-random, ever
// sparser subsequence of indices (index i holds x with probability
// 1/(1+i/2)). Any prefix of the sequence is a sketch. Each side streams its
// prefix; the receiver subtracts the two streams symbol by symbol and peels,
// and stops the streams as soon as the difference has decoded: for d
// differing items that takes about 1.35d symbols for large d (≈1.5–2d for
// small d), without knowing d in advance, in one round trip.
//
// Symbols are SketchCells (count mod 256, XOR of 16-bit checks, XOR of
// 48-bit IDs): 9 bytes on the wire, like the fixed sketch's cells, and with
// the same collision probabilities (see sketch.go). A decoded item is only
// an ID: records are fetched by ID and their digests recomputed, so a wrong
// decode can only miss a difference, which the confirm step sees.

// ErrSymbolsInconsistent reports coded symbols that cannot come from two
// honest encoders: a peeled stream whose symbols do not cancel out.
var ErrSymbolsInconsistent = errors.New("reconcile: coded symbols inconsistent")

// Limits of symbol streams.
const (
	// MaxSymbols is the most coded symbols a stream may carry (9 bytes
	// each: 144 MiB). 1.35 symbols a differing item decode 12 million
	// differences.
	MaxSymbols = 1 << 24
	// symbolFirstChunk and symbolMaxChunk bound SymbolChunkSize.
	symbolFirstChunk = 8
	symbolMaxChunk   = 1 << 16
)

// SymbolChunkSize returns the number of symbols in chunk i of a symbol
// stream, given the symbols already sent: 8 until 128 were sent, then a
// sixteenth of what was sent (so a stream stopped as soon as it decodes
// carries at most ~6% more than needed, ~3% on average), at most 65536
// (576 KiB) a chunk. Both sides of a session use the
// same schedule, so their chunks line up.
func SymbolChunkSize(sent int) int {
	if sent < symbolFirstChunk*16 {
		return symbolFirstChunk
	}
	return min(sent/16, symbolMaxChunk)
}

// symbolMapping generates the indices of the coded symbols one item is added
// to: 0, then each next index drawn so that index i is present with
// probability 1/(1+i/2). It is deterministic in the item's ID, and computed
// with explicit float64 roundings (no fused multiply-add), so every platform
// maps an item to the same symbols.
type symbolMapping struct {
	prng uint64
	next uint64 // the next index the item is added to
}

func newSymbolMapping(id uint64) symbolMapping {
	p := splitmix(id ^ seedPos0)
	if p == 0 {
		p = 1
	}
	return symbolMapping{prng: p}
}

// advance moves to the next index.
func (m *symbolMapping) advance() {
	m.prng *= 0xda942042e4dd58b5
	// diff = (i + 1.5) * ((1-u)^(-1/2) - 1), u = prng/2^64, with
	// (1-u)^(-1/2) taken as 2^32/sqrt(prng+1) (the reference encoder's
	// form).
	f := float64(float64(1<<32)/math.Sqrt(float64(m.prng)+1)) - 1
	step := math.Ceil(float64(float64(m.next)+1.5) * f)
	if step < 1 {
		step = 1
	}
	if step >= math.MaxUint32 {
		m.next = math.MaxUint64 // beyond any stream
		return
	}
	m.next += uint64(step)
	if m.next > math.MaxUint64/2 {
		m.next = math.MaxUint64
	}
}

// subtractCell returns c - o.
func subtractCell(c, o SketchCell) SketchCell {
	return SketchCell{Count: c.Count - o.Count, Check: c.Check ^ o.Check, ID: c.ID ^ o.ID}
}

// SymbolEncoder produces the coded symbols of a set of sketch IDs, chunk by
// chunk. It keeps 24 bytes per item. Not safe for concurrent use.
type SymbolEncoder struct {
	ids    []uint64
	checks []uint16
	maps   []symbolMapping
	sent   int
}

// NewSymbolEncoder returns an encoder of the items whose Entry digests are
// given (SketchID of each is the item). It takes ownership of digests.
func NewSymbolEncoder(digests []uint64) *SymbolEncoder {
	e := &SymbolEncoder{ids: digests, checks: make([]uint16, len(digests)), maps: make([]symbolMapping, len(digests))}
	for i, d := range digests {
		id := SketchID(d)
		e.ids[i] = id
		e.checks[i] = sketchCheck(id)
		e.maps[i] = newSymbolMapping(id)
	}
	return e
}

// Count returns the number of items encoded.
func (e *SymbolEncoder) Count() uint64 { return uint64(len(e.ids)) }

// Sent returns the number of symbols produced so far.
func (e *SymbolEncoder) Sent() int { return e.sent }

// Next returns the next n coded symbols.
func (e *SymbolEncoder) Next(n int) []SketchCell {
	out := make([]SketchCell, n)
	lo, hi := uint64(e.sent), uint64(e.sent+n)
	for i := range e.maps {
		m := &e.maps[i]
		if m.next >= hi {
			continue
		}
		id, chk := e.ids[i], e.checks[i]
		for m.next < hi {
			c := &out[m.next-lo]
			c.Count++
			c.Check ^= chk
			c.ID ^= id
			m.advance()
		}
	}
	e.sent += n
	return out
}

// SymbolDecoder subtracts two streams of coded symbols (A's and B's, chunk
// by chunk) and peels the difference. Not safe for concurrent use.
type SymbolDecoder struct {
	diff []SketchCell
	// items are the items peeled, with their mappings advanced past the
	// symbols received, so later chunks are cleaned of them; byID indexes
	// them.
	items []decodedSymbol
	byID  map[uint64]int
	live  int
	// conflicts counts symbols that showed an item already peeled, with
	// the other sign: a phantom (see peelSymbol). phantoms are the IDs
	// cancelled that way, never peeled again.
	conflicts int
	phantoms  map[uint64]bool
	peels     int
	queue     []int
	// lowQueued marks the low symbols waiting for the queue to drain
	// (see peel).
	lowQueued [64]bool
}

type decodedSymbol struct {
	id    uint64
	check uint16
	sign  int8
	m     symbolMapping
}

// Received returns the number of symbols received from each side.
func (d *SymbolDecoder) Received() int { return len(d.diff) }

// Add takes the next chunk of both streams (the same length) and peels what
// it can.
func (d *SymbolDecoder) Add(a, b []SketchCell) error {
	if len(a) != len(b) {
		return errors.New("reconcile: symbol chunks of different lengths")
	}
	lo := len(d.diff)
	for i := range a {
		d.diff = append(d.diff, subtractCell(a[i], b[i]))
	}
	hi := uint64(len(d.diff))
	// Remove the items already decoded from the new symbols.
	for i := range d.items {
		it := &d.items[i]
		for it.m.next < hi {
			d.remove(int(it.m.next), it)
			it.m.advance()
		}
	}
	for i := lo; i < len(d.diff); i++ {
		d.queue = append(d.queue, i)
	}
	return d.peel()
}

func (d *SymbolDecoder) remove(i int, it *decodedSymbol) {
	c := &d.diff[i]
	c.Count -= it.sign
	c.Check ^= it.check
	c.ID ^= it.id
	if c.Count == 1 || c.Count == -1 {
		d.queue = append(d.queue, i)
	}
}

// pure reports whether symbol i holds exactly one item: a count of ±1, a
// check that matches the ID, and an ID that maps to symbol i (which filters
// out chance matches of the 16-bit check by a further factor of 1+i/2).
func (d *SymbolDecoder) pure(i int) bool {
	c := d.diff[i]
	return (c.Count == 1 || c.Count == -1) && c.ID < 1<<SketchIDBits && c.Check == sketchCheck(c.ID) && mapsTo(c.ID, uint64(i))
}

// mapsTo reports whether item id is added to symbol i.
func mapsTo(id, i uint64) bool {
	m := newSymbolMapping(id)
	for m.next < i {
		m.advance()
	}
	return m.next == i
}

func (d *SymbolDecoder) peel() error {
	hi := uint64(len(d.diff))
	long := hi > 4*uint64(len(d.lowQueued))
	for {
		for len(d.queue) > 0 {
			i := d.queue[len(d.queue)-1]
			d.queue = d.queue[:len(d.queue)-1]
			if long && i < len(d.lowQueued) {
				// A low symbol holds a large share of all items
				// (symbol i holds each with probability 1/(1+i/2))
				// and is queued again on nearly every peel: tested
				// that often, its 16-bit check would sooner or later
				// match a mix of items by chance (at a million
				// differences, in about every second decode), and
				// an item peeled from such a symbol is a phantom,
				// cancelled only when its negation shows up pure
				// (peelSymbol), and such a mix can show up again and
				// again. So the low symbols of a long stream are tested
				// once each time the queue drains.
				d.lowQueued[i] = true
				continue
			}
			if err := d.peelSymbol(i, hi); err != nil {
				return err
			}
		}
		tested := false
		for i, q := range d.lowQueued {
			if q {
				d.lowQueued[i], tested = false, true
				if err := d.peelSymbol(i, hi); err != nil {
					return err
				}
			}
		}
		if !tested {
			return nil
		}
	}
}

// peelSymbol peels symbol i if it is pure.
func (d *SymbolDecoder) peelSymbol(i int, hi uint64) error {
	if !d.pure(i) {
		return nil
	}
	c := d.diff[i]
	// Honest streams peel each differing item once (and a rare chance
	// match twice); garbage can keep producing IDs.
	if d.peels++; d.peels > 4*len(d.diff)+16 {
		return fmt.Errorf("%w: %d peels from %d symbols", ErrSymbolsInconsistent, d.peels, len(d.diff))
	}
	if d.phantoms[c.ID] {
		// The mix of items that once looked like this phantom may look
		// like it again until one of its items is peeled.
		return nil
	}
	it := decodedSymbol{id: c.ID, check: c.Check, sign: c.Count, m: newSymbolMapping(c.ID)}
	k, peeled := d.byID[c.ID]
	for it.m.next < hi {
		d.remove(int(it.m.next), &it)
		it.m.advance()
	}
	if peeled {
		// The item was peeled before with the other sign (with the same
		// sign it would have been removed from this symbol): a symbol
		// holding a mix of items matched count, check and mapping by
		// chance, and the "item" peeled from it is a phantom, which
		// every symbol it maps to then held negated. Peeling the
		// negation, as just done, adds the phantom back everywhere:
		// every symbol is as if neither had been peeled, and the
		// decode goes on. (That the second peel is the chance match
		// would need the first symbol's whole 64-bit cell to cancel.)
		d.conflicts++
		last := len(d.items) - 1
		if k != last {
			d.items[k] = d.items[last]
			d.byID[d.items[k].id] = k
		}
		d.items = d.items[:last]
		delete(d.byID, c.ID)
		d.live--
		if d.phantoms == nil {
			d.phantoms = map[uint64]bool{}
		}
		d.phantoms[c.ID] = true
		return nil
	}
	if d.byID == nil {
		d.byID = map[uint64]int{}
	}
	d.byID[c.ID] = len(d.items)
	d.items = append(d.items, it)
	d.live++
	if d.live > 2*len(d.diff)+2 {
		return fmt.Errorf("%w: %d items from %d symbols", ErrSymbolsInconsistent, len(d.items), len(d.diff))
	}
	return nil
}

// Decoded reports whether the difference has decoded: every symbol received
// has been peeled to zero. (Symbol 0 holds every item, so it is zero only
// when no differing item is left.)
func (d *SymbolDecoder) Decoded() bool {
	if len(d.diff) == 0 || d.diff[0] != (SketchCell{}) {
		return false
	}
	for _, c := range d.diff {
		if c != (SketchCell{}) {
			return false
		}
	}
	return true
}

// Result returns the IDs only A holds and only B holds, as decoded so far.
func (d *SymbolDecoder) Result() (onlyA, onlyB []uint64) {
	for _, it := range d.items {
		if it.sign == 1 {
			onlyA = append(onlyA, it.id)
		} else {
			onlyB = append(onlyB, it.id)
		}
	}
	return onlyA, onlyB
}

// SymbolPrefix maintains the first symbols of a set's stream as items are
// added and removed. Symbols are linear in the set (a count, two XORs), so
// an item changes the prefix where it maps, about 2·ln(n/2)+1 symbols of a
// prefix of n: a replica that keeps a partition's prefix up to date with the
// records that changed answers a symbol stream's first n symbols without
// encoding every record again. Not safe for concurrent use.
type SymbolPrefix struct {
	cells []SketchCell
	count uint64
}

// NewSymbolPrefix returns the prefix of n symbols of the empty set.
func NewSymbolPrefix(n int) *SymbolPrefix { return &SymbolPrefix{cells: make([]SketchCell, n)} }

// Len returns the number of symbols of the prefix.
func (p *SymbolPrefix) Len() int { return len(p.cells) }

// Count returns the number of items in the set.
func (p *SymbolPrefix) Count() uint64 { return p.count }

// Add adds the item with entry digest d (as in NewSymbolEncoder).
func (p *SymbolPrefix) Add(d uint64) {
	p.count++
	p.toggle(d, 1)
}

// Remove removes the item with entry digest d, which must have been added.
func (p *SymbolPrefix) Remove(d uint64) {
	p.count--
	p.toggle(d, -1)
}

func (p *SymbolPrefix) toggle(d uint64, sign int8) {
	p.toggleID(SketchID(d), sign, nil)
}

func (p *SymbolPrefix) toggleID(id uint64, sign int8, touched func(index int)) {
	chk := sketchCheck(id)
	n := uint64(len(p.cells))
	for m := newSymbolMapping(id); m.next < n; m.advance() {
		c := &p.cells[m.next]
		c.Count += sign
		c.Check ^= chk
		c.ID ^= id
		if touched != nil {
			touched(int(m.next))
		}
	}
}

// NewSymbolPrefixOf returns the prefix whose symbols are cells (which it
// keeps) of a set of count items: a prefix persisted by its Symbols and
// Count and read back.
func NewSymbolPrefixOf(cells []SketchCell, count uint64) *SymbolPrefix {
	return &SymbolPrefix{cells: cells, count: count}
}

// AddID adds the item with sketch ID id (SketchID of its digest) and calls
// touched, if not nil, with the index of every symbol that changed.
func (p *SymbolPrefix) AddID(id uint64, touched func(index int)) {
	p.count++
	p.toggleID(id, 1, touched)
}

// RemoveID removes the item with sketch ID id, which must have been added,
// and calls touched, if not nil, with the index of every symbol that
// changed.
func (p *SymbolPrefix) RemoveID(id uint64, touched func(index int)) {
	p.count--
	p.toggleID(id, -1, touched)
}

// Cell returns symbol i.
func (p *SymbolPrefix) Cell(i int) SketchCell { return p.cells[i] }

// SymbolsN returns a copy of the first n symbols (n at most Len).
func (p *SymbolPrefix) SymbolsN(n int) []SketchCell {
	return append([]SketchCell(nil), p.cells[:n]...)
}

// Symbols returns a copy of the prefix.
func (p *SymbolPrefix) Symbols() []SketchCell { return append([]SketchCell(nil), p.cells...) }
