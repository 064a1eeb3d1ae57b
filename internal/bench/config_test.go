package bench

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// TestBadConfig checks that every benchmark refuses a configuration it
// cannot run with an error wrapping ErrBadConfig, before it writes
// anything to its scratch directory (negative sizes used to panic in
// make, negative counts to print NaN ratios).
func TestBadConfig(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		run  func(dir string) error
	}{
		{"write keys", func(d string) error { _, err := Write(ctx, WriteConfig{Dir: d, Keys: -5}); return err }},
		{"write key size", func(d string) error { _, err := Write(ctx, WriteConfig{Dir: d, Keys: 10, KeySize: -1}); return err }},
		{"write value size", func(d string) error { _, err := Write(ctx, WriteConfig{Dir: d, Keys: 10, ValueSize: -1}); return err }},
		{"write batch", func(d string) error { _, err := Write(ctx, WriteConfig{Dir: d, Keys: 10, BatchSize: -1}); return err }},
		{"write rounds", func(d string) error { _, err := Write(ctx, WriteConfig{Dir: d, Keys: 10, Rounds: -1}); return err }},
		{"write bloom", func(d string) error {
			_, err := Write(ctx, WriteConfig{Dir: d, Keys: 10, BloomBitsPerKey: -10})
			return err
		}},
		{"kv transport", func(d string) error {
			_, err := KVWrite(ctx, KVConfig{Dir: d, Transport: "carrier-pigeon"})
			return err
		}},
		{"kv plugin path", func(d string) error { _, err := KVWrite(ctx, KVConfig{Dir: d, Transport: "plugin"}); return err }},
		{"kv writers", func(d string) error {
			_, err := KVWrite(ctx, KVConfig{Dir: d, Transport: "grpc", Writers: []int{0}})
			return err
		}},
		{"kv keys", func(d string) error { _, err := KVRead(ctx, KVConfig{Dir: d, Transport: "grpc", Keys: -1}); return err }},
		{"rebuild keys", func(d string) error { _, err := Rebuild(ctx, RebuildConfig{Dir: d, Keys: -1}); return err }},
		{"rebuild leaf size", func(d string) error { _, err := Rebuild(ctx, RebuildConfig{Dir: d, Keys: 10, LeafSize: 1}); return err }},
		{"sync keys", func(d string) error { _, err := Sync(ctx, SyncConfig{Dir: d, Keys: -1}); return err }},
		{"sync diffs", func(d string) error { _, err := Sync(ctx, SyncConfig{Dir: d, Keys: 10, Diffs: 11}); return err }},
		{"sync transport", func(d string) error {
			_, err := Sync(ctx, SyncConfig{Dir: d, Keys: 10, Transport: "carrier-pigeon"})
			return err
		}},
		{"loop keys", func(d string) error { _, err := LoopLoad(ctx, LoopLoadConfig{Dir: d, Keys: -1}); return err }},
		{"loop phase", func(d string) error { _, err := LoopLoad(ctx, LoopLoadConfig{Dir: d, Phase: -time.Second}); return err }},
		{"loop scan rate", func(d string) error {
			_, err := LoopLoad(ctx, LoopLoadConfig{Dir: d, ScanBytesPerSec: -1})
			return err
		}},
		{"scan rate keys", func(d string) error { _, err := ScanRate(ctx, ScanRateConfig{Dir: d, Keys: -1}); return err }},
		{"scan rate limit", func(d string) error { _, err := ScanRate(ctx, ScanRateConfig{Dir: d, Limit: -1}); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			err := tc.run(dir)
			if !errors.Is(err, ErrBadConfig) {
				t.Fatalf("error %v, want one wrapping ErrBadConfig", err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Fatalf("%d entries written to the scratch directory before the refusal", len(ents))
			}
			t.Log(err)
		})
	}
}
