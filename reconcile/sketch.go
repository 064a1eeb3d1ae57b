package reconcile

import (
	"errors"
	"math"
	"math/bits"
)

// ErrBadSketchRequest reports a RangeSketch or FetchByHash request whose
// sizes are out of bounds.
var ErrBadSketchRequest = errors.New("reconcile: bad sketch request")

// Set-reconciliation sketches: an optional extension of Replica.
//
// A differing key range is reconciled without listing it: each side sends an
// invertible Bloom lookup table (IBLT) of the sketch IDs of its entries
// (SketchID of Entry.Digest, which covers key and record); the session
// subtracts the two tables and peels the difference, learning the IDs held by
// one side only, then asks each side for the entries of its own unique IDs
// (FetchByHash). The bytes are proportional to the number of differences, not
// to the size of the range. A table too small to decode is detected (cells
// left non-zero) and retried larger; a strata estimator, sent with the first
// table, sizes the retry.
//
// Collision probabilities accepted: IDs are 48 bits, so two distinct
// (key, record) pairs, one unique to each side, cancel out with probability
// about dA*dB/2^48 per session (1e4 differences: 4e-7); a cell is taken for
// pure when its 16-bit check and its position both match by chance
// (2^-16 * 3/cells). Either error can only make the session miss a
// difference (no write is derived from a sketch: records are fetched and
// their digests verified); the confirm step then sees differing roots and the
// next session repairs it.

// Sketch constants.
const (
	// SketchHashes is the number of cells each item is added to; a
	// sketch's cell count is a multiple of it.
	SketchHashes = 3
	// SketchIDBits is the width of a sketch ID.
	SketchIDBits = 48
	// StrataCells is the number of estimator cells per stratum.
	StrataCells = 16
	// sketchCellWireSize: count (1 byte), check (2), ID (6).
	sketchCellWireSize = 9
	// strataCellWireSize: one 16-bit value.
	strataCellWireSize = 2
	// idWireSize is the size of one ID in a FetchByHash request.
	idWireSize = 6
)

// RangeSketchRequest asks for the sketch of the union of Ranges (sorted,
// disjoint) of one partition: an IBLT of Cells cells (0: none; else a
// multiple of SketchHashes) and a strata estimator of Strata strata
// (0: none).
type RangeSketchRequest struct {
	Partition uint32
	Ranges    []KeyRange
	Cells     int
	Strata    int
}

// SketchCell is one IBLT cell: the number of items added modulo 256, and the
// XOR of their checks and of their IDs.
type SketchCell struct {
	Count int8
	Check uint16
	ID    uint64
}

// RangeSketchResult is a sketch: the number of entries summarized, the IBLT
// cells and the estimator values (Strata*StrataCells of them).
type RangeSketchResult struct {
	Count  uint64
	Cells  []SketchCell
	Strata []uint16
}

// FetchByHashRequest asks for the entries of Ranges (of one partition) whose
// sketch IDs are among IDs.
type FetchByHashRequest struct {
	Partition uint32
	Ranges    []KeyRange
	IDs       []uint64
}

// SketchID returns the sketch ID of an entry digest: its top 48 bits.
func SketchID(digest uint64) uint64 { return digest >> (64 - SketchIDBits) }

const (
	seedPos0   = 0x9e3779b97f4a7c15
	seedCheck  = 0xc2b2ae3d27d4eb4f
	seedStrata = 0x165667b19e3779f9
	seedValue  = 0x27d4eb2f165667c5
)

func splitmix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func sketchCheck(id uint64) uint16 { return uint16(splitmix(id^seedCheck) >> 48) }

// cellPositions returns the SketchHashes cells of id in a table of m cells:
// one in each of SketchHashes equal sub-tables.
func cellPositions(id uint64, m int) [SketchHashes]int {
	var p [SketchHashes]int
	sub := uint64(m / SketchHashes)
	for j := range p {
		h := splitmix(id ^ (seedPos0 * uint64(j+1)))
		hi, _ := bits.Mul64(h, sub)
		p[j] = j*int(sub) + int(hi)
	}
	return p
}

// stratumOf returns the stratum, estimator cell and value of id.
func stratumOf(id uint64, strata int) (stratum, cell int, value uint16) {
	h := splitmix(id ^ seedStrata)
	stratum = min(bits.TrailingZeros64(h), strata-1)
	cell = int(h >> 60) // 16 cells
	value = uint16(splitmix(id^seedValue) >> 48)
	if value == 0 {
		value = 1
	}
	return stratum, cell, value
}

// SketchBuilder builds a RangeSketchResult from entry digests. Replicas
// implement RangeSketch by adding the digest of every entry of the requested
// ranges.
type SketchBuilder struct {
	res    RangeSketchResult
	strata int
}

// NewSketchBuilder returns a builder for req (whose Cells and Strata must
// have been validated with ValidateSketchRequest).
func NewSketchBuilder(req RangeSketchRequest) *SketchBuilder {
	b := &SketchBuilder{strata: req.Strata}
	if req.Cells > 0 {
		b.res.Cells = make([]SketchCell, req.Cells)
	}
	if req.Strata > 0 {
		b.res.Strata = make([]uint16, req.Strata*StrataCells)
	}
	return b
}

// Add adds the entry whose Entry.Digest is digest.
func (b *SketchBuilder) Add(digest uint64) {
	id := SketchID(digest)
	b.res.Count++
	if m := len(b.res.Cells); m > 0 {
		chk := sketchCheck(id)
		for _, p := range cellPositions(id, m) {
			c := &b.res.Cells[p]
			c.Count++
			c.Check ^= chk
			c.ID ^= id
		}
	}
	if b.strata > 0 {
		s, c, v := stratumOf(id, b.strata)
		b.res.Strata[s*StrataCells+c] ^= v
	}
}

// Result returns the sketch.
func (b *SketchBuilder) Result() RangeSketchResult { return b.res }

// Limits of sketch requests that replicas should enforce.
const (
	MaxSketchCells  = 1 << 23
	MaxSketchStrata = 64
	MaxSketchIDs    = 1 << 23
)

// ValidateSketchRequest checks the sizes of a sketch request.
func ValidateSketchRequest(req RangeSketchRequest) error {
	if req.Cells < 0 || req.Cells > MaxSketchCells || req.Cells%SketchHashes != 0 || req.Strata < 0 || req.Strata > MaxSketchStrata {
		return ErrBadSketchRequest
	}
	return nil
}

// decodeSketches subtracts b from a and peels the difference. It returns the
// IDs only a holds and only b holds, and whether the difference decoded
// completely.
func decodeSketches(a, b []SketchCell) (onlyA, onlyB []uint64, ok bool) {
	m := len(a)
	d := make([]SketchCell, m)
	for i := range d {
		d[i] = SketchCell{Count: a[i].Count - b[i].Count, Check: a[i].Check ^ b[i].Check, ID: a[i].ID ^ b[i].ID}
	}
	pure := func(i int) bool {
		c := d[i]
		if (c.Count != 1 && c.Count != -1) || c.ID >= 1<<SketchIDBits || c.Check != sketchCheck(c.ID) {
			return false
		}
		for _, p := range cellPositions(c.ID, m) {
			if p == i {
				return true
			}
		}
		return false
	}
	queue := make([]int, 0, m)
	for i := range d {
		if pure(i) {
			queue = append(queue, i)
		}
	}
	for len(queue) > 0 {
		i := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if !pure(i) {
			continue
		}
		c := d[i]
		if c.Count == 1 {
			onlyA = append(onlyA, c.ID)
		} else {
			onlyB = append(onlyB, c.ID)
		}
		chk := sketchCheck(c.ID)
		for _, p := range cellPositions(c.ID, m) {
			d[p].Count -= c.Count
			d[p].Check ^= chk
			d[p].ID ^= c.ID
			if pure(p) {
				queue = append(queue, p)
			}
		}
		if len(onlyA)+len(onlyB) > m {
			return nil, nil, false // cannot hold more items than cells: garbage
		}
	}
	for _, c := range d {
		if c != (SketchCell{}) {
			return onlyA, onlyB, false
		}
	}
	return onlyA, onlyB, true
}

// estimateDifference estimates the number of items in the symmetric
// difference of two sketches' sets from their strata estimators, as a
// linear-counting estimate over the strata that are not saturated. It
// returns +Inf when every stratum is saturated.
func estimateDifference(a, b []uint16, strata int) float64 {
	est := 0.0
	for s := strata - 1; s >= 0; s-- {
		nonzero := 0
		for c := range StrataCells {
			if a[s*StrataCells+c] != b[s*StrataCells+c] {
				nonzero++
			}
		}
		if nonzero > StrataCells*3/4 {
			// Saturated: scale up what the strata above saw. Stratum s
			// and above hold a 2^-s share of the items (the last
			// stratum takes the rest).
			if s == strata-1 {
				return math.Inf(1)
			}
			return est * math.Exp2(float64(s+1))
		}
		est += -float64(StrataCells) * math.Log(1-float64(nonzero)/StrataCells)
	}
	return est
}

// sketchCellsFor returns the number of cells for an expected difference of
// d items: enough for the peeling to succeed with high probability.
func sketchCellsFor(d float64) int {
	m := int(math.Ceil(1.3*d + 3*math.Sqrt(d) + 12))
	m += (SketchHashes - m%SketchHashes) % SketchHashes
	return min(m, MaxSketchCells)
}

// strataFor returns the number of estimator strata for ranges holding n
// entries in all.
func strataFor(n uint64) int { return min(bits.Len64(n)+2, MaxSketchStrata) }
