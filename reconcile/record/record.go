package record

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Mode is a write mode: how a replica stamps writes and how conflicting
// records of one key are reconciled. A replica and all its records use one
// mode; the zero Mode is invalid.
type Mode uint8

const (
	// ModeLWW (last writer wins, the default) stamps every write with a
	// hybrid logical clock timestamp and the writer's replica ID, without
	// reading; of two conflicting records the one with the greater
	// (timestamp, replica ID) wins and the other is lost.
	ModeLWW Mode = 1
	// ModeCausal tracks causality with dotted version vectors: a write
	// supersedes exactly the siblings its causal context has seen, and
	// concurrent writes are all kept as siblings until a later write that
	// has seen them all.
	ModeCausal Mode = 2
)

// String returns "lww" or "causal", or "Mode(n)" for an unknown mode.
func (m Mode) String() string {
	switch m {
	case ModeLWW:
		return "lww"
	case ModeCausal:
		return "causal"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// ParseMode returns the mode named s ("lww" or "causal", case-insensitive),
// or an error wrapping ErrUnknownMode.
func ParseMode(s string) (Mode, error) {
	switch {
	case strings.EqualFold(s, "lww"):
		return ModeLWW, nil
	case strings.EqualFold(s, "causal"):
		return ModeCausal, nil
	}
	return 0, fmt.Errorf("%w: %q (want \"lww\" or \"causal\")", ErrUnknownMode, s)
}

// valid reports whether m is ModeLWW or ModeCausal.
func (m Mode) valid() bool { return m == ModeLWW || m == ModeCausal }

// RecordFormatVersion is the leading byte of the records this release
// writes (format 2, see AppendEncode). DecodeRecord also reads format 1
// (RecordFormatV1), which releases before format 2 wrote.
const RecordFormatVersion = 2

// RecordFormatV1 is the leading byte of a format-1 record (see
// AppendEncodeV1).
const RecordFormatV1 = 1

// Sibling is one version of a key's value: one write, or a delete.
type Sibling struct {
	// Dot identifies the write. In a causal record it is the write's dot
	// (Counter >= 1); in an LWW record it is Dot{Replica: writer,
	// Counter: 0}.
	Dot Dot
	// Timestamp is the writer's HLC time of the write. It orders siblings
	// for LWW (see Record.Winner); causal reconciliation ignores it.
	Timestamp Timestamp
	// Tombstone marks a delete; Value is then empty.
	Tombstone bool
	// Value is the value written. A nil and an empty Value are the same
	// value.
	Value []byte
}

// compareLWW is the total order of last-writer-wins: by Timestamp, then
// Dot.Replica, Dot.Counter, then (only for conflicting copies of one write)
// a tombstone after a value, then Value bytewise. It is 0 only for identical
// siblings.
func compareLWW(a, b Sibling) int {
	if c := a.Timestamp.Compare(b.Timestamp); c != 0 {
		return c
	}
	if c := a.Dot.Compare(b.Dot); c != 0 {
		return c
	}
	if a.Tombstone != b.Tombstone {
		if a.Tombstone {
			return 1
		}
		return -1
	}
	return bytes.Compare(a.Value, b.Value)
}

// compareDots orders siblings by dot: the canonical order of a record's
// siblings.
func compareDots(a, b Sibling) int { return a.Dot.Compare(b.Dot) }

// Record is the canonical form of everything stored for one key: the Pebble
// value of a user key, and what replicas exchange. Its invariants (checked by
// Validate and by DecodeRecord) are:
//
//   - ModeLWW: exactly one sibling, whose Dot.Counter is 0; Context empty.
//   - ModeCausal: at least one sibling, sorted by dot (Dot.Compare) with no
//     two equal dots, each Counter >= 1 and covered by Context (which may
//     also cover superseded writes).
//   - Every sibling: a valid Dot.Replica, Timestamp.WallTime >= 0, and an
//     empty Value if it is a tombstone.
//
// The zero Record stands for an absent key where an argument allows it
// (CausalPut, Sync); it is not a valid record and cannot be encoded.
//
// A Record is a value whose slices and map may be shared with the records it
// was derived from: the functions of this package never mutate a Record's
// Context, Siblings or Values, and callers must not either once a Record has
// been passed around. Read-only use from several goroutines is safe.
type Record struct {
	// Mode is ModeLWW or ModeCausal.
	Mode Mode
	// Context is the set of writes this record has seen (causal mode); nil
	// in LWW mode.
	Context VersionVector
	// Siblings are the current versions of the value.
	Siblings []Sibling
}

// NewLWW returns the LWW record of one write by writer at ts. If tombstone is
// true the record is a delete and value is ignored; otherwise the sibling's
// Value aliases value (not copied).
func NewLWW(writer ReplicaID, ts Timestamp, value []byte, tombstone bool) Record {
	if tombstone {
		value = nil
	}
	return Record{
		Mode: ModeLWW,
		Siblings: []Sibling{{
			Dot:       Dot{Replica: writer},
			Timestamp: ts,
			Tombstone: tombstone,
			Value:     value,
		}},
	}
}

// Winner returns the sibling that wins under last-writer-wins: the greatest
// by (Timestamp, Dot.Replica, Dot.Counter), ties between conflicting copies
// of one write broken by tombstone-over-value and then by Value bytewise, so
// every replica picks the same winner. For an LWW record it is the only
// sibling; for a causal record it is how an LWW read sees causal data. It
// returns the zero Sibling if r has no siblings. The result's Value aliases
// r's.
func (r Record) Winner() Sibling {
	if len(r.Siblings) == 0 {
		return Sibling{}
	}
	w := r.Siblings[0]
	for _, s := range r.Siblings[1:] {
		if compareLWW(s, w) > 0 {
			w = s
		}
	}
	return w
}

// IsTombstone reports whether r has siblings and all of them are tombstones:
// the key reads as deleted.
func (r Record) IsTombstone() bool {
	if len(r.Siblings) == 0 {
		return false
	}
	for _, s := range r.Siblings {
		if !s.Tombstone {
			return false
		}
	}
	return true
}

// Equal reports whether r and o are the same logical record: same Mode,
// Context equal as version vectors (nil, empty and zero entries alike), and
// the same siblings regardless of their order (nil and empty Values alike).
// Two valid records are Equal exactly when their encodings are identical.
func (r Record) Equal(o Record) bool {
	if r.Mode != o.Mode || len(r.Siblings) != len(o.Siblings) ||
		r.Context.Compare(o.Context) != Equal {
		return false
	}
	rs, os := sortedSiblings(r.Siblings), sortedSiblings(o.Siblings)
	for i := range rs {
		if compareLWW(rs[i], os[i]) != 0 {
			return false
		}
	}
	return true
}

// sortedSiblings returns sibs sorted by dot: sibs itself if it already is,
// otherwise a sorted copy.
func sortedSiblings(sibs []Sibling) []Sibling {
	if slices.IsSortedFunc(sibs, compareDots) {
		return sibs
	}
	sorted := slices.Clone(sibs)
	slices.SortStableFunc(sorted, compareDots)
	return sorted
}

// Validate returns nil if r satisfies the Record invariants, and otherwise
// an error wrapping ErrMalformedRecord that names the first violation found.
func (r Record) Validate() error {
	switch r.Mode {
	case ModeLWW:
		if len(r.Siblings) != 1 {
			return fmt.Errorf("%w: LWW record with %d siblings, want 1", ErrMalformedRecord, len(r.Siblings))
		}
		if ids := r.Context.sortedReplicas(); len(ids) != 0 {
			return fmt.Errorf("%w: LWW record with causal context %s", ErrMalformedRecord, r.Context)
		}
		s := r.Siblings[0]
		if s.Dot.Counter != 0 {
			return fmt.Errorf("%w: LWW sibling with dot %s, want counter 0", ErrMalformedRecord, s.Dot)
		}
		return validateSibling(0, s)
	case ModeCausal:
		if len(r.Siblings) == 0 {
			return fmt.Errorf("%w: causal record without siblings", ErrMalformedRecord)
		}
		for id, n := range r.Context {
			if n == 0 {
				continue
			}
			if err := id.Validate(); err != nil {
				return fmt.Errorf("%w: context: %w", ErrMalformedRecord, err)
			}
		}
		for i, s := range r.Siblings {
			if err := validateSibling(i, s); err != nil {
				return err
			}
			if s.Dot.Counter == 0 {
				return fmt.Errorf("%w: causal sibling %d has dot %s with counter 0", ErrMalformedRecord, i, s.Dot)
			}
			if i > 0 {
				switch c := s.Dot.Compare(r.Siblings[i-1].Dot); {
				case c == 0:
					return fmt.Errorf("%w: siblings %d and %d have the same dot %s", ErrMalformedRecord, i-1, i, s.Dot)
				case c < 0:
					return fmt.Errorf("%w: sibling %d (dot %s) not after sibling %d (dot %s)",
						ErrMalformedRecord, i, s.Dot, i-1, r.Siblings[i-1].Dot)
				}
			}
			if !r.Context.Covers(s.Dot) {
				return fmt.Errorf("%w: sibling %d has dot %s not covered by context %s",
					ErrMalformedRecord, i, s.Dot, r.Context)
			}
		}
		return nil
	}
	return fmt.Errorf("%w: %w: %d", ErrMalformedRecord, ErrUnknownMode, uint8(r.Mode))
}

// validateSibling checks the invariants common to every sibling.
func validateSibling(i int, s Sibling) error {
	if err := s.Dot.Replica.Validate(); err != nil {
		return fmt.Errorf("%w: sibling %d: %w", ErrMalformedRecord, i, err)
	}
	if s.Timestamp.WallTime < 0 {
		return fmt.Errorf("%w: sibling %d: negative wall time %d", ErrMalformedRecord, i, s.Timestamp.WallTime)
	}
	if s.Tombstone && len(s.Value) != 0 {
		return fmt.Errorf("%w: sibling %d: tombstone with a %d-byte value", ErrMalformedRecord, i, len(s.Value))
	}
	return nil
}

// Encode returns the canonical encoding of r in a new slice owned by the
// caller. See AppendEncode.
func (r Record) Encode() []byte {
	return r.AppendEncode(make([]byte, 0, r.EncodedLen()))
}

// EncodedLen returns len(r.Encode()) without encoding.
func (r Record) EncodedLen() int {
	if r.Mode == ModeLWW {
		if s, ok := r.lwwSibling(); ok {
			return LWWEncodedLen(s.Dot.Replica, s.Timestamp, s.Value, s.Tombstone)
		}
		return 2
	}
	n, entries := 2, 0 // version, kind
	for id, c := range r.Context {
		if c != 0 { // zero entries are not encoded
			entries++
			n += uvarintLen(uint64(len(id))) + len(id) + uvarintLen(c)
		}
	}
	n += uvarintLen(uint64(entries)) + uvarintLen(uint64(len(r.Siblings)))
	var idBuf [4]ReplicaID
	ids := r.Context.appendSortedReplicas(idBuf[:0])
	for _, s := range r.Siblings {
		// The replica is its index among the context's ids.
		n += uvarintLen(uint64(replicaIndex(ids, s.Dot.Replica))) + uvarintLen(s.Dot.Counter)
		n += 8 + uvarintLen(uint64(s.Timestamp.Logical))
		n += 1 + uvarintLen(uint64(len(s.Value))) + len(s.Value)
	}
	return n
}

// lwwSibling returns r's sibling if r has the shape format 2 encodes as an
// LWW record: one sibling with counter 0, and no value if a tombstone, and
// no context.
func (r Record) lwwSibling() (Sibling, bool) {
	if len(r.Siblings) != 1 || r.Siblings[0].Dot.Counter != 0 || (r.Siblings[0].Tombstone && len(r.Siblings[0].Value) != 0) {
		return Sibling{}, false
	}
	for _, n := range r.Context {
		if n != 0 {
			return Sibling{}, false
		}
	}
	return r.Siblings[0], true
}

// AppendEncode appends the canonical encoding of r to dst and returns the
// extended slice: format 2 (RecordFormatVersion). Encoding canonicalizes:
// siblings are written in dot order and context entries in replica order,
// zero context entries omitted, so Equal records encode to identical bytes
// (which the Merkle tree relies on). The layout, integers minimal uvarints
// unless sized:
//
//	record  := version(1 byte = 2) kind(1 byte) body
//	kind    := mode (bits 0-1: 1 LWW, 2 causal) | tombstone << 2 (LWW only)
//	LWW     := wallTime(8 bytes, big-endian) logical idLen id value
//	causal  := context siblings
//	context := count { idLen id counter }*count          ids ascending, counters >= 1
//	siblings:= count { replica counter wallTime(8 bytes, big-endian) logical flags(1 byte) valueLen value }*count
//
// An LWW record's value is the rest of the record (empty for a tombstone);
// its dot counter (always 0) and its empty context are not written. A
// causal sibling's replica is the index of its dot's replica among the
// context's ids (a valid record's context covers every dot), and its flags
// byte has bit 0 for Tombstone, the other bits 0. The wall time is
// big-endian so that, in a run of records written close together, the
// bytes that differ come last and Pebble's block compression still finds
// the long common prefix (the little-endian uvarint of format 1 put them
// first: 8% more bytes compacted for 100-byte compressible values).
//
// Encoding does not validate: a record that fails Validate (beyond sibling
// order) encodes to bytes that DecodeRecord rejects.
func (r Record) AppendEncode(dst []byte) []byte {
	if r.Mode == ModeLWW {
		s, ok := r.lwwSibling()
		if !ok {
			// Not encodable as LWW: an unknown kind, which DecodeRecord
			// rejects.
			return append(dst, RecordFormatVersion, kindInvalid)
		}
		return AppendLWW(dst, s.Dot.Replica, s.Timestamp, s.Value, s.Tombstone)
	}
	dst = append(dst, RecordFormatVersion, byte(r.Mode))
	var idBuf [4]ReplicaID
	ids := r.Context.appendSortedReplicas(idBuf[:0])
	dst = appendVersionVector(dst, r.Context, ids)
	return appendSiblingsV2(dst, sortedSiblings(r.Siblings), ids)
}

// AppendEncodeV1 appends r in format 1 (RecordFormatV1), the format of
// releases before format 2, and returns the extended slice: for tools that
// must write records such a release can read. Equal records give identical
// bytes, and DecodeRecord reads them back. The layout, all integers
// minimal uvarints:
//
//	record  := version(1 byte = 1) mode(1 byte) context siblings
//	context := count { idLen id counter }*count          ids ascending, counters >= 1
//	siblings:= count { idLen id counter wallTime logical flags(1 byte) valueLen value }*count
//
// where flags bit 0 is Tombstone and the other bits are 0.
func (r Record) AppendEncodeV1(dst []byte) []byte {
	dst = append(dst, RecordFormatV1, byte(r.Mode))
	var idBuf [4]ReplicaID
	dst = appendVersionVector(dst, r.Context, r.Context.appendSortedReplicas(idBuf[:0]))
	return appendSiblings(dst, sortedSiblings(r.Siblings))
}

// flagTombstone is the only defined bit of a sibling's flags byte.
const flagTombstone = 1 << 0

// minSiblingLen is the smallest format-1 sibling: one byte each for idLen,
// a one-byte id, counter, wall time, logical, flags and valueLen.
const minSiblingLen = 7

// minSiblingLenV2 is the smallest format-2 causal sibling: one byte each
// for the replica index, counter, logical, flags and valueLen, and the
// 8-byte wall time.
const minSiblingLenV2 = 13

// DecodeRecord decodes an encoded record strictly: it accepts exactly the
// bytes AppendEncode produces for a valid record, so a decoded record
// re-encodes to b. It returns an error wrapping ErrUnsupportedRecordVersion
// if the leading byte is not RecordFormatVersion, and an error wrapping
// ErrMalformedRecord for anything else: truncation, trailing bytes,
// non-minimal varints, an unknown mode, length fields exceeding the input,
// invalid replica IDs, context entries out of order or with zero counters,
// siblings out of dot order or with duplicate dots, flags other than
// tombstone, and any violation of the Record invariants (see Validate).
//
// The returned record's sibling Values alias b (with capacity clipped, so
// appending to one never overwrites b): b must not be modified while the
// record is in use. Its Context and Siblings are freshly allocated.
func DecodeRecord(b []byte) (Record, error) {
	return decodeRecord(b, nil)
}

// RecordDecoder decodes records like DecodeRecord into memory it reuses
// from one Decode to the next: a read-modify-write path that decodes a
// record, derives a new one and drops the old one decodes without
// allocating (for records whose replica IDs it has seen before). The zero
// value is ready to use. A RecordDecoder is not safe for concurrent use.
type RecordDecoder struct {
	rec    Record
	ids    []ReplicaID // replica IDs seen, whose strings are reused
	ctxIDs []ReplicaID // the last context's ids, in order (format 2)
}

// maxInternedIDs bounds the replica IDs a RecordDecoder keeps.
const maxInternedIDs = 16

// Decode decodes b exactly as DecodeRecord does (same result, same
// errors), except that the returned record's Context and Siblings are the
// decoder's memory: they are valid only until the next Decode, and must not
// be modified or kept. Sibling Values alias b, as with DecodeRecord.
func (rd *RecordDecoder) Decode(b []byte) (Record, error) {
	return decodeRecord(b, rd)
}

// Release drops the decoder's references to the bytes it last decoded (the
// siblings' Values alias them), so that it does not keep them from being
// freed; the record Decode returned must not be used afterwards. Decode
// does not need it: call it when the decoder is kept idle.
func (rd *RecordDecoder) Release() {
	clear(rd.rec.Siblings[:cap(rd.rec.Siblings)])
}

// decodeRecord is DecodeRecord, into rd's memory if rd is not nil.
func decodeRecord(b []byte, rd *RecordDecoder) (Record, error) {
	d := decoder{b: b, sentinel: ErrMalformedRecord, rd: rd}
	version, err := d.byte("format version")
	if err != nil {
		return Record{}, err
	}
	switch version {
	case RecordFormatVersion:
		return decodeV2(&d, rd)
	case RecordFormatV1:
	default:
		return Record{}, fmt.Errorf("%w: version %d, this release reads %d and %d",
			ErrUnsupportedRecordVersion, version, RecordFormatV1, RecordFormatVersion)
	}
	modeByte, err := d.byte("mode")
	if err != nil {
		return Record{}, err
	}
	r := Record{Mode: Mode(modeByte)}
	if !r.Mode.valid() {
		return Record{}, fmt.Errorf("%w: offset 1: %w: %d", ErrMalformedRecord, ErrUnknownMode, modeByte)
	}
	ctxStart := d.off
	var into VersionVector
	if rd != nil {
		if rd.rec.Context == nil {
			rd.rec.Context = make(VersionVector, 4)
		}
		into = rd.rec.Context
	}
	ctx, err := d.versionVectorInto(into)
	if err != nil {
		return Record{}, err
	}
	if r.Mode == ModeCausal {
		r.Context = ctx
	} else if len(ctx) != 0 {
		return Record{}, d.failAt(ctxStart, "LWW record with causal context %s", ctx)
	}
	countStart := d.off
	count, err := d.uvarint("sibling count")
	if err != nil {
		return Record{}, err
	}
	if count > uint64(d.remaining()/minSiblingLen) {
		return Record{}, d.failAt(countStart, "sibling count %d exceeds the %d remaining bytes", count, d.remaining())
	}
	if r.Mode == ModeLWW && count != 1 {
		return Record{}, d.failAt(countStart, "LWW record with %d siblings, want 1", count)
	}
	r.Siblings = rd.siblings(int(count))
	for i := range r.Siblings {
		s := &r.Siblings[i]
		dotStart := d.off
		if s.Dot.Replica, err = d.replicaID(); err != nil {
			return Record{}, err
		}
		if s.Dot.Counter, err = d.uvarint("dot counter"); err != nil {
			return Record{}, err
		}
		if i > 0 {
			switch c := s.Dot.Compare(r.Siblings[i-1].Dot); {
			case c == 0:
				return Record{}, d.failAt(dotStart, "siblings %d and %d have the same dot %s", i-1, i, s.Dot)
			case c < 0:
				return Record{}, d.failAt(dotStart, "sibling %d (dot %s) not after sibling %d (dot %s)",
					i, s.Dot, i-1, r.Siblings[i-1].Dot)
			}
		}
		wallStart := d.off
		wall, err := d.uvarint("wall time")
		if err != nil {
			return Record{}, err
		}
		if wall > math.MaxInt64 {
			return Record{}, d.failAt(wallStart, "sibling %d: wall time %d exceeds the int64 range", i, wall)
		}
		s.Timestamp.WallTime = int64(wall)
		logicalStart := d.off
		logical, err := d.uvarint("logical time")
		if err != nil {
			return Record{}, err
		}
		if logical > math.MaxUint32 {
			return Record{}, d.failAt(logicalStart, "sibling %d: logical time %d exceeds the uint32 range", i, logical)
		}
		s.Timestamp.Logical = uint32(logical)
		flagsStart := d.off
		flags, err := d.byte("flags")
		if err != nil {
			return Record{}, err
		}
		if flags&^flagTombstone != 0 {
			return Record{}, d.failAt(flagsStart, "sibling %d: unknown flags %#02x", i, flags)
		}
		s.Tombstone = flags&flagTombstone != 0
		valueLen, err := d.uvarint("value length")
		if err != nil {
			return Record{}, err
		}
		if s.Value, err = d.bytes(valueLen, "value"); err != nil {
			return Record{}, err
		}
		if len(s.Value) == 0 {
			s.Value = nil
		}
	}
	if err := d.finish(); err != nil {
		return Record{}, err
	}
	if err := r.Validate(); err != nil {
		return Record{}, err
	}
	return r, nil
}

// CausalPut returns the record after a causal write at replica at of value
// (or of a delete, if tombstone is true: value is then ignored) with the
// client's causal context ctx (as returned by DecodeContext; nil for a blind
// write) over the current record cur (the zero Record if the key is absent).
// It is the DVV "update":
//
//   - the siblings of cur whose dots ctx covers are superseded and dropped;
//     the others are concurrent with the write and stay;
//   - the write gets the dot (at, max(cur.Context[at], ctx[at]) + 1);
//   - Context = merge(cur.Context, ctx) plus the new dot.
//
// The result is causal and sorted. An LWW cur's siblings (Counter 0) are
// always covered, so they are dropped: a causal write over LWW data
// overwrites it. Counters saturate at 2^64-1, where a write replaces the
// sibling that holds the saturated dot (unreachable in practice).
//
// CausalPut does not modify cur or ctx. The result shares cur's sibling
// Values, and the new sibling's Value aliases value.
func CausalPut(cur Record, ctx VersionVector, at ReplicaID, ts Timestamp, value []byte, tombstone bool) Record {
	dot := nextDot(cur, ctx, at)
	counter := dot.Counter
	if tombstone {
		value = nil
	}
	sibs := make([]Sibling, 0, len(cur.Siblings)+1)
	for _, s := range cur.Siblings {
		if !ctx.Covers(s.Dot) && s.Dot != dot {
			sibs = append(sibs, s)
		}
	}
	sibs = append(sibs, Sibling{Dot: dot, Timestamp: ts, Tombstone: tombstone, Value: value})
	slices.SortStableFunc(sibs, compareDots)
	context := cur.Context.Merge(ctx)
	context[at] = counter
	return Record{Mode: ModeCausal, Context: context, Siblings: sibs}
}

// Sync merges two causal records of one key (the DVV "sync"): a sibling of
// either record survives if the other record holds the same dot or its
// Context does not cover the dot (the other has not seen that write, so it
// cannot have superseded it); Context is the merge of both. If both hold a
// dot with different contents (impossible unless a replica ID was reused),
// the greater by Winner order is kept, so the choice is the same everywhere.
// Mode is the greater of the two modes, so a zero Record (an absent key) is
// the identity: Sync(a, Record{}) is Equal to a.
//
// On valid records Sync is commutative, associative and idempotent (up to
// Equal), and the result's Context covers both inputs' contexts. Records
// from one causal history always leave at least one sibling; records that
// contradict each other (each one's Context covers a dot the other holds as
// a live sibling, which no history produces) can leave none, and that result
// fails Validate: KeepSiblings reports it as an error. Sync is defined for
// causal records and the zero Record; for others the result is unspecified,
// but Sync does not panic.
//
// Sync does not modify a or b; the result shares their sibling Values.
func Sync(a, b Record) Record {
	as, bs := sortedSiblings(a.Siblings), sortedSiblings(b.Siblings)
	out := make([]Sibling, 0, len(as)+len(bs))
	i, j := 0, 0
	for i < len(as) || j < len(bs) {
		var c int
		switch {
		case i == len(as):
			c = 1
		case j == len(bs):
			c = -1
		default:
			c = as[i].Dot.Compare(bs[j].Dot)
		}
		switch {
		case c < 0:
			if !b.Context.Covers(as[i].Dot) {
				out = append(out, as[i])
			}
			i++
		case c > 0:
			if !a.Context.Covers(bs[j].Dot) {
				out = append(out, bs[j])
			}
			j++
		default:
			if compareLWW(bs[j], as[i]) > 0 {
				out = append(out, bs[j])
			} else {
				out = append(out, as[i])
			}
			i++
			j++
		}
	}
	return Record{Mode: max(a.Mode, b.Mode), Context: a.Context.Merge(b.Context), Siblings: out}
}

// nextDot returns the dot of a causal write at replica at over cur with
// causal context ctx: the next counter after both have seen, saturating.
func nextDot(cur Record, ctx VersionVector, at ReplicaID) Dot {
	counter := max(cur.Context[at], ctx[at])
	if counter < math.MaxUint64 {
		counter++
	}
	return Dot{Replica: at, Counter: counter}
}

// appendUvarint appends the minimal uvarint encoding of x.
func appendUvarint(dst []byte, x uint64) []byte { return binary.AppendUvarint(dst, x) }

// appendReplicaID appends a length-prefixed replica ID.
func appendReplicaID(dst []byte, id ReplicaID) []byte {
	dst = appendUvarint(dst, uint64(len(id)))
	return append(dst, id...)
}

// decoder reads the canonical encodings of this package (records and causal
// contexts). Its errors wrap sentinel and give the byte offset.
type decoder struct {
	b        []byte
	off      int
	sentinel error
	// rd, if set, interns replica IDs (see RecordDecoder).
	rd *RecordDecoder
}

func (d *decoder) remaining() int { return len(d.b) - d.off }

// failAt returns an error wrapping d.sentinel for a problem at offset off.
func (d *decoder) failAt(off int, format string, args ...any) error {
	return fmt.Errorf("%w: offset %d: %s", d.sentinel, off, fmt.Sprintf(format, args...))
}

func (d *decoder) byte(what string) (byte, error) {
	if d.remaining() < 1 {
		return 0, d.failAt(d.off, "truncated before %s", what)
	}
	c := d.b[d.off]
	d.off++
	return c, nil
}

// uvarint reads a minimal uvarint: non-minimal encodings (a trailing zero
// group) are rejected so that every value has exactly one encoding.
func (d *decoder) uvarint(what string) (uint64, error) {
	x, n := binary.Uvarint(d.b[d.off:])
	switch {
	case n == 0:
		return 0, d.failAt(d.off, "truncated %s", what)
	case n < 0:
		return 0, d.failAt(d.off, "%s overflows 64 bits", what)
	case n > 1 && d.b[d.off+n-1] == 0:
		return 0, d.failAt(d.off, "non-minimal varint for %s", what)
	}
	d.off += n
	return x, nil
}

// bytes returns the next n bytes, aliasing d.b with capacity clipped.
func (d *decoder) bytes(n uint64, what string) ([]byte, error) {
	if n > uint64(d.remaining()) {
		return nil, d.failAt(d.off, "%s length %d exceeds the %d remaining bytes", what, n, d.remaining())
	}
	end := d.off + int(n)
	b := d.b[d.off:end:end]
	d.off = end
	return b, nil
}

// replicaID reads a length-prefixed replica ID of valid length.
func (d *decoder) replicaID() (ReplicaID, error) {
	start := d.off
	n, err := d.uvarint("replica ID length")
	if err != nil {
		return "", err
	}
	if n == 0 || n > MaxReplicaIDLen {
		return "", fmt.Errorf("%w: offset %d: %w: length %d", d.sentinel, start, ErrInvalidReplicaID, n)
	}
	b, err := d.bytes(n, "replica ID")
	if err != nil {
		return "", err
	}
	if d.rd != nil {
		for _, id := range d.rd.ids {
			if string(id) == string(b) {
				return id, nil // valid: it was validated when first seen
			}
		}
	}
	id := ReplicaID(b)
	if err := id.Validate(); err != nil {
		return "", fmt.Errorf("%w: offset %d: %w", d.sentinel, start, err)
	}
	if d.rd != nil && len(d.rd.ids) < maxInternedIDs {
		d.rd.ids = append(d.rd.ids, id)
	}
	return id, nil
}

// finish reports trailing bytes.
func (d *decoder) finish() error {
	if d.remaining() != 0 {
		return d.failAt(d.off, "%d trailing bytes", d.remaining())
	}
	return nil
}
