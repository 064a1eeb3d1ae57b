package plugin

import (
	"bytes"
	"fmt"
	"time"

	pb "github.com/pebble-ae/pebble-ae/plugin/gen/pebbleae/v1"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// Conversions between the reconcile types and their protobuf messages. The
// encoders run on the server (answers) and the client (requests); the
// decoders validate what they decode, since it comes from the other side.

func toPBRange(r reconcile.KeyRange) *pb.KeyRange {
	return &pb.KeyRange{Start: r.Start, End: r.End}
}

func fromPBRange(r *pb.KeyRange) reconcile.KeyRange {
	return reconcile.KeyRange{Start: r.GetStart(), End: r.GetEnd()}
}

func toPBFingerprint(f reconcile.Fingerprint) *pb.Fingerprint {
	h := f.Hash
	return &pb.Fingerprint{Hash: h[:], Count: f.Count}
}

func fromPBFingerprint(f *pb.Fingerprint) (reconcile.Fingerprint, error) {
	var out reconcile.Fingerprint
	if f == nil {
		return out, fmt.Errorf("%w: missing fingerprint", ErrBadResponse)
	}
	if len(f.GetHash()) != reconcile.FingerprintSize {
		return out, fmt.Errorf("%w: fingerprint hash of %d bytes, want %d", ErrBadResponse, len(f.GetHash()), reconcile.FingerprintSize)
	}
	copy(out.Hash[:], f.GetHash())
	out.Count = f.GetCount()
	return out, nil
}

// toPBNode encodes a range's fingerprint and children. Child ranges are
// implied by the splits inside parent; explicit start/end are added only
// where a child's range differs from the implied one.
func toPBNode(parent reconcile.KeyRange, fp reconcile.Fingerprint, children []reconcile.Child) *pb.Node {
	n := &pb.Node{Fingerprint: toPBFingerprint(fp)}
	if len(children) == 0 {
		return n
	}
	n.Children = make([]*pb.Node, len(children))
	for i, c := range children {
		if i > 0 {
			n.Splits = append(n.Splits, c.Range.Start)
		}
		cn := toPBNode(c.Range, c.Fingerprint, c.Children)
		if i == 0 && !bytes.Equal(c.Range.Start, parent.Start) {
			cn.Start = nonNil(c.Range.Start)
		}
		if i == len(children)-1 && !bytes.Equal(c.Range.End, parent.End) {
			cn.End = nonNil(c.Range.End)
		} else if i < len(children)-1 && !bytes.Equal(c.Range.End, children[i+1].Range.Start) {
			cn.End = nonNil(c.Range.End)
		}
		n.Children[i] = cn
	}
	return n
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// fromPBNode decodes the children of a node whose range is parent.
func fromPBNode(parent reconcile.KeyRange, n *pb.Node, depth int) (reconcile.Fingerprint, []reconcile.Child, error) {
	if depth > 64 {
		return reconcile.Fingerprint{}, nil, fmt.Errorf("%w: children nested too deep", ErrBadResponse)
	}
	fp, err := fromPBFingerprint(n.GetFingerprint())
	if err != nil {
		return fp, nil, err
	}
	kids := n.GetChildren()
	if len(kids) == 0 {
		if len(n.GetSplits()) != 0 {
			return fp, nil, fmt.Errorf("%w: %d splits without children", ErrBadResponse, len(n.GetSplits()))
		}
		return fp, nil, nil
	}
	if len(n.GetSplits()) != len(kids)-1 {
		return fp, nil, fmt.Errorf("%w: %d splits for %d children", ErrBadResponse, len(n.GetSplits()), len(kids))
	}
	out := make([]reconcile.Child, len(kids))
	for i, k := range kids {
		if k == nil {
			return fp, nil, fmt.Errorf("%w: nil child", ErrBadResponse)
		}
		r := reconcile.KeyRange{Start: parent.Start, End: parent.End}
		if i > 0 {
			r.Start = n.GetSplits()[i-1]
		}
		if i < len(kids)-1 {
			r.End = n.GetSplits()[i]
		}
		if k.Start != nil {
			r.Start = k.Start
		}
		if k.End != nil {
			r.End = k.End
		}
		r.Start, r.End = cloneBytes(r.Start), cloneBytes(r.End)
		cfp, sub, err := fromPBNode(r, k, depth+1)
		if err != nil {
			return fp, nil, err
		}
		out[i] = reconcile.Child{Range: r, Fingerprint: cfp, Children: sub}
	}
	return fp, out, nil
}

// cloneBytes copies b; nil and empty stay nil.
func cloneBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

func toPBEntries(es []reconcile.Entry) []*pb.Entry {
	out := make([]*pb.Entry, len(es))
	for i, e := range es {
		out[i] = &pb.Entry{Key: e.Key, Digest: e.Digest, Record: e.Record}
	}
	return out
}

// fromPBEntries decodes entries; keys must be non-empty.
func fromPBEntries(es []*pb.Entry) ([]reconcile.Entry, error) {
	if len(es) == 0 {
		return nil, nil
	}
	out := make([]reconcile.Entry, len(es))
	for i, e := range es {
		if e == nil || len(e.GetKey()) == 0 {
			return nil, fmt.Errorf("entry %d: missing key", i)
		}
		out[i] = reconcile.Entry{Key: e.GetKey(), Digest: e.GetDigest(), Record: cloneBytes(e.GetRecord())}
	}
	return out, nil
}

func toPBInfo(info reconcile.Info) *pb.InfoResponse {
	out := &pb.InfoResponse{
		Id:   []byte(info.ID),
		Mode: uint32(info.Mode),
		Tree: &pb.TreeParams{
			HashVersion: info.Tree.HashVersion,
			LeafSize:    info.Tree.LeafSize,
			Seed:        info.Tree.Seed,
			Partitioner: info.Tree.Partitioner,
		},
		WallTime:       info.WallTime,
		MaxClockOffset: int64(info.MaxClockOffset),
		Capabilities:   uint32(info.Capabilities),
	}
	for _, p := range info.Partitions {
		out.Partitions = append(out.Partitions, &pb.PartitionInfo{Id: p.ID, Range: toPBRange(p.Range), Ready: p.Ready, Records: p.Records})
	}
	return out
}

func fromPBInfo(r *pb.InfoResponse) (reconcile.Info, error) {
	info := reconcile.Info{
		ID:   record.ReplicaID(r.GetId()),
		Mode: record.Mode(r.GetMode()),
		Tree: reconcile.TreeParams{
			HashVersion: r.GetTree().GetHashVersion(),
			LeafSize:    r.GetTree().GetLeafSize(),
			Seed:        r.GetTree().GetSeed(),
			Partitioner: r.GetTree().GetPartitioner(),
		},
		WallTime:       r.GetWallTime(),
		MaxClockOffset: time.Duration(r.GetMaxClockOffset()),
		// What the server serves and the client calls (every optional call
		// of the contract); 0 from servers that predate the field.
		Capabilities: reconcile.Capabilities(r.GetCapabilities()) & reconcile.CapAll,
	}
	if r.GetCapabilities() == 0 {
		info.Capabilities = reconcile.CapAll
	}
	if r.GetWallTime() < 0 || r.GetMaxClockOffset() < 0 {
		return info, fmt.Errorf("%w: negative clock (wall time %d, max offset %d)", ErrBadResponse, r.GetWallTime(), r.GetMaxClockOffset())
	}
	if r.GetMode() > 255 {
		return info, fmt.Errorf("%w: mode %d", ErrBadResponse, r.GetMode())
	}
	for _, p := range r.GetPartitions() {
		if p == nil {
			return info, fmt.Errorf("%w: nil partition", ErrBadResponse)
		}
		info.Partitions = append(info.Partitions, reconcile.PartitionInfo{
			ID:      p.GetId(),
			Range:   reconcile.KeyRange{Start: cloneBytes(p.GetRange().GetStart()), End: cloneBytes(p.GetRange().GetEnd())},
			Ready:   p.GetReady(),
			Records: p.GetRecords(),
		})
	}
	return info, nil
}

// Sketch encodings (see RangeSketchResponse and FetchByHashRequest).
const (
	sketchCellSize = 9
	sketchIDSize   = 6
)

func encodeCells(cells []reconcile.SketchCell) []byte {
	out := make([]byte, 0, len(cells)*sketchCellSize)
	for _, c := range cells {
		out = append(out, byte(c.Count), byte(c.Check>>8), byte(c.Check))
		out = appendID(out, c.ID)
	}
	return out
}

func appendID(b []byte, id uint64) []byte {
	return append(b, byte(id>>40), byte(id>>32), byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
}

func readID(b []byte) uint64 {
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

func decodeCells(b []byte) ([]reconcile.SketchCell, error) {
	if len(b)%sketchCellSize != 0 {
		return nil, fmt.Errorf("%w: sketch cells of %d bytes, not a multiple of %d", ErrBadResponse, len(b), sketchCellSize)
	}
	if len(b) == 0 {
		return nil, nil
	}
	out := make([]reconcile.SketchCell, len(b)/sketchCellSize)
	for i := range out {
		c := b[i*sketchCellSize:]
		out[i] = reconcile.SketchCell{Count: int8(c[0]), Check: uint16(c[1])<<8 | uint16(c[2]), ID: readID(c[3:])}
	}
	return out, nil
}

func encodeStrata(vs []uint16) []byte {
	out := make([]byte, 0, 2*len(vs))
	for _, v := range vs {
		out = append(out, byte(v>>8), byte(v))
	}
	return out
}

func decodeStrata(b []byte) ([]uint16, error) {
	if len(b)%2 != 0 {
		return nil, fmt.Errorf("%w: strata of %d bytes, not a multiple of 2", ErrBadResponse, len(b))
	}
	if len(b) == 0 {
		return nil, nil
	}
	out := make([]uint16, len(b)/2)
	for i := range out {
		out[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
	}
	return out, nil
}

func encodeIDs(ids []uint64) []byte {
	out := make([]byte, 0, len(ids)*sketchIDSize)
	for _, id := range ids {
		out = appendID(out, id)
	}
	return out
}

func toPBRanges(rs []reconcile.KeyRange) []*pb.KeyRange {
	if len(rs) == 0 {
		return nil
	}
	out := make([]*pb.KeyRange, len(rs))
	for i, r := range rs {
		out[i] = toPBRange(r)
	}
	return out
}
