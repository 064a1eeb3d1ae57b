package fuzz

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/pebble-ae/pebble-ae/internal/memreplica"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// FuzzSession drives a Session between two small in-memory replicas whose
// answers the fuzzer corrupts: truthful answers from memreplicas, then
// mutated by the input (dropped, duplicated or reordered entries, flipped
// key, digest, record, count and range bytes, injected errors). The session
// must never panic, and every entry it asks to Apply must be justified: a
// record that decodes, with the right digest, equal to a record some
// delivered answer carried for that key or to the resolution of two such
// records. Untouched answers must converge.
func FuzzSession(f *testing.F) {
	// No corruption at all: two replicas differing in a few keys.
	f.Add([]byte{12, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	// Corrupt the second answer's first entry.
	f.Add([]byte{40, 7, 5, 1, 3, 0, 2, 9, 9, 9, 1, 1, 1, 1})
	// Sketches (third byte >= 0x80), no corruption, then corrupted sketches.
	f.Add([]byte{90, 5, 0x85, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{90, 5, 0x9a, 1, 3, 130, 7, 2, 200, 3, 1, 131, 9, 9})
	// A 64-byte session memory budget (third byte & 0x40): writes applied
	// every round, listings of one page; with sketches, a paired fetch.
	f.Add([]byte{60, 3, 0x45, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{90, 4, 0xc5, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{90, 4, 0xc5, 1, 3, 130, 7, 2, 200, 3, 1, 131, 9, 9})
	// Many keys, heavy corruption.
	f.Add([]byte{200, 50, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 255, 254, 253})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &fuzzReader{b: data}
		n := int(r.byte())
		diff := int(r.byte())
		var reps [2]*memreplica.Replica
		for side := range reps {
			reps[side], _ = memreplica.New(memreplica.Options{ID: record.ReplicaID([]string{"a", "b"}[side]), LeafSize: 4, PageSize: 5})
		}
		for i := range n {
			k := fmt.Appendf(nil, "k%03d", i)
			if i%4 == 3 { // keys above the reserved internal range too
				k = fmt.Appendf(nil, "\xff\xff\xffk%03d", i)
			}
			rec := record.NewLWW("a", record.Timestamp{WallTime: int64(i + 1)}, []byte("v"), false)
			reps[0].Set(k, rec)
			switch {
			case diff > 0 && i%diff == 1:
				reps[1].Set(k, record.NewLWW("b", record.Timestamp{WallTime: int64(i + 2)}, nil, true))
			case diff > 0 && i%diff == 2:
			default:
				reps[1].Set(k, rec)
			}
		}
		ctx := context.Background()
		ia, _ := reps[0].Info(ctx)
		ib, _ := reps[1].Info(ctx)
		shape := r.byte()
		method := reconcile.MethodDescent
		if shape&0x80 != 0 {
			method = reconcile.MethodSketch
		}
		s, err := reconcile.NewSession(reconcile.SessionConfig{InfoA: &ia, InfoB: &ib, Fanout: 2 + int(shape%6), MaxDepth: 1 + int(r.byte()%3),
			ScanLimit: 1 + int(r.byte()%8), Method: method, ApplyLimit: 1 + int(shape>>3)%16,
			MaxPendingBytes: int64(shape & 0x40)})
		if err != nil {
			t.Fatal(err)
		}
		delivered := map[string][][]byte{}
		corrupted := false
		for step, rounds := s.Next(), 0; !step.Done; step, rounds = s.Next(), rounds+1 {
			if rounds > 10000 {
				t.Fatalf("session does not terminate")
			}
			var resps []reconcile.Response
			for _, req := range step.Requests {
				if req.Kind == reconcile.RequestApply {
					checkJustified(t, req.Entries, delivered)
				}
				resp := reconcile.Call(ctx, reps[req.Side], req)
				if mutate(r, &resp) {
					corrupted = true
				}
				if req.Kind == reconcile.RequestFetchByHash {
					for i := range resp.Entries {
						// The session fills in the digests of hash fetches.
						resp.Entries[i].Digest = reconcile.EntryDigest(resp.Entries[i].Key, resp.Entries[i].Record)
					}
				}
				for _, e := range append(resp.Entries, resp.Scan.Entries...) {
					if e.Record != nil {
						delivered[string(e.Key)] = append(delivered[string(e.Key)], e.Record)
					}
				}
				resps = append(resps, resp)
			}
			s.Deliver(resps...)
		}
		if !corrupted {
			if err := s.Err(); err != nil || !s.Stats().Converged {
				t.Fatalf("truthful answers: err %v, %s", err, s.Stats())
			}
		}
	})
}

// mutate corrupts resp as the input says; it reports whether it changed it.
func mutate(r *fuzzReader, resp *reconcile.Response) bool {
	op := r.byte()
	if op < 128 || len(r.b) == 0 {
		return false
	}
	es := &resp.Entries
	if len(resp.Scan.Entries) > 0 {
		es = &resp.Scan.Entries
	}
	i := int(r.byte())
	if len(resp.Sketch.Cells) > 0 && op%2 == 0 {
		c := &resp.Sketch.Cells[i%len(resp.Sketch.Cells)]
		switch r.byte() % 4 {
		case 0:
			c.Count++
		case 1:
			c.ID ^= uint64(r.byte()) + 1
		case 2:
			c.Check ^= uint16(r.byte()) + 1
		case 3:
			resp.Sketch.Cells = resp.Sketch.Cells[1:]
		}
		return true
	}
	if len(resp.Sketch.Strata) > 0 && op%3 == 0 {
		resp.Sketch.Strata[i%len(resp.Sketch.Strata)] ^= uint16(r.byte()) + 1
		return true
	}
	switch op % 12 {
	case 0:
		resp.Err = errors.New("injected")
	case 1:
		if len(*es) > 0 {
			*es = (*es)[:len(*es)-1]
		}
	case 2:
		if len(*es) > 0 {
			*es = append(*es, (*es)[i%len(*es)])
		}
	case 3:
		if len(*es) > 1 {
			(*es)[0], (*es)[len(*es)-1] = (*es)[len(*es)-1], (*es)[0]
		}
	case 4:
		if len(*es) > 0 {
			e := &(*es)[i%len(*es)]
			e.Key = append(bytes.Clone(e.Key), r.byte())
		}
	case 5:
		if len(*es) > 0 {
			(*es)[i%len(*es)].Digest ^= uint64(r.byte()) + 1
		}
	case 6:
		if len(*es) > 0 && len((*es)[i%len(*es)].Record) > 0 {
			e := &(*es)[i%len(*es)]
			e.Record = bytes.Clone(e.Record)
			e.Record[int(r.byte())%len(e.Record)] ^= r.byte() | 1
			e.Digest = reconcile.EntryDigest(e.Key, e.Record)
		}
	case 7:
		if len(resp.Hashes) > 0 {
			resp.Hashes[i%len(resp.Hashes)].Fingerprint.Count += uint64(r.byte()) + 1
		}
	case 8:
		if len(resp.Hashes) > 0 {
			resp.Hashes[i%len(resp.Hashes)].Fingerprint.Hash[0] ^= 1
		}
	case 9:
		if len(resp.Hashes) > 0 && len(resp.Hashes[0].Children) > 0 {
			c := &resp.Hashes[0].Children[i%len(resp.Hashes[0].Children)]
			c.Range.Start = append(bytes.Clone(c.Range.Start), r.byte())
		}
	case 10:
		if len(resp.Hashes) > 0 {
			resp.Hashes = resp.Hashes[1:]
		}
	case 11:
		resp.Scan.More = !resp.Scan.More
		resp.Scan.Next = r.bytes(4)
	}
	return true
}

// checkJustified fails unless each applied entry is a delivered record of its
// key or the resolution of two of them.
func checkJustified(t *testing.T, es []reconcile.Entry, delivered map[string][][]byte) {
	t.Helper()
	for _, e := range es {
		if _, err := record.DecodeRecord(e.Record); err != nil {
			t.Fatalf("apply of an undecodable record for %q: %v", e.Key, err)
		}
		if e.Digest != 0 && e.Digest != reconcile.EntryDigest(e.Key, e.Record) {
			t.Fatalf("apply with a wrong digest for %q", e.Key)
		}
		recs := delivered[string(e.Key)]
		ok := false
		for i := 0; i < len(recs) && !ok; i++ {
			ok = bytes.Equal(recs[i], e.Record)
			for j := 0; j < len(recs) && !ok; j++ {
				a, err1 := record.DecodeRecord(recs[i])
				b, err2 := record.DecodeRecord(recs[j])
				if err1 != nil || err2 != nil {
					continue
				}
				if m, err := (record.LWW{}).Resolve(e.Key, a, b); err == nil && bytes.Equal(m.Encode(), e.Record) {
					ok = true
				}
			}
		}
		if !ok {
			t.Fatalf("apply of %q with a record no answer justified", e.Key)
		}
	}
}
