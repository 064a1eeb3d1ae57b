package reconcile

import (
	"bytes"
	"testing"
)

// TestWireBytesByKind checks how the wire model splits entries between
// kinds: the key of an entry that carries a record counts as data
// (RecordKeys), the key of one that only names a record (a key list) as
// metadata, and moving bytes between kinds never changes the total.
func TestWireBytesByKind(t *testing.T) {
	key := bytes.Repeat([]byte("k"), 16)
	rec := bytes.Repeat([]byte("r"), 120)
	for _, tc := range []struct {
		name                   string
		entries                []Entry
		recordKeys, records    uint64
		keyListsWithoutRecords uint64
	}{
		{name: "key and digest only", entries: []Entry{{Key: key, Digest: 7}},
			keyListsWithoutRecords: 1 + 1 + (1 + 1 + 16) + (1 + 8)},
		{name: "record without digest", entries: []Entry{{Key: key, Record: rec}},
			recordKeys: 16, records: 1 + 1 + 120},
		{name: "two records", entries: []Entry{{Key: key, Record: rec}, {Key: key[:3], Record: rec[:5]}},
			recordKeys: 16 + 3, records: (1 + 1 + 120) + (1 + 1 + 5)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := Response{Entries: tc.entries}
			b := ResponseWireSize(Request{Kind: RequestFetch}, resp)
			if b.RecordKeys != tc.recordKeys || b.Records != tc.records {
				t.Fatalf("record keys %d, records %d; want %d, %d", b.RecordKeys, b.Records, tc.recordKeys, tc.records)
			}
			if b.Data() != tc.recordKeys+tc.records || b.Metadata() != b.Total()-b.Data() {
				t.Fatalf("data %d, metadata %d of total %d", b.Data(), b.Metadata(), b.Total())
			}
			// The total is the size of the entries as proto fields, whatever
			// the kinds: tag, length, then key, digest and record fields.
			var want uint64 = GRPCFrameSize
			for _, e := range tc.entries {
				n := uint64(1+varintLen(uint64(len(e.Key)))) + uint64(len(e.Key))
				if e.Digest != 0 {
					n += 1 + 8
				}
				if len(e.Record) > 0 {
					n += uint64(1+varintLen(uint64(len(e.Record)))) + uint64(len(e.Record))
				}
				want += 1 + varintLen(n) + n
			}
			if b.Total() != want {
				t.Fatalf("total %d, want %d", b.Total(), want)
			}
			if tc.keyListsWithoutRecords != 0 && b.KeyLists != tc.keyListsWithoutRecords {
				t.Fatalf("key lists %d, want %d", b.KeyLists, tc.keyListsWithoutRecords)
			}
			apply := RequestWireSize(Request{Kind: RequestApply, Entries: tc.entries})
			if apply.RecordKeys != tc.recordKeys || apply.Records != tc.records {
				t.Fatalf("apply: record keys %d, records %d; want %d, %d", apply.RecordKeys, apply.Records, tc.recordKeys, tc.records)
			}
		})
	}
}
