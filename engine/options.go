package engine

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/hooks"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// FormatMajorVersion is the Pebble format the engine creates and requires:
// pinned, so an upgrade of Pebble never silently changes the on-disk format.
const FormatMajorVersion = pebble.FormatValueSeparation

// Options configure an Engine. The zero value of every field but ReplicaID
// is usable.
type Options struct {
	// ReplicaID names this replica; it stamps every write. Required.
	ReplicaID record.ReplicaID
	// Mode is the write mode: record.ModeLWW (default; blind writes) or
	// record.ModeCausal (version vectors and siblings).
	Mode record.Mode
	// Partitioner maps keys to partitions (default: one partition).
	Partitioner merkle.Partitioner
	// Tree are the tree parameters (default leaf size 64, seed 0). All
	// replicas must use the same.
	Tree merkle.Params
	// RebuildOnParamsChange allows Open to rebuild a tree persisted with
	// other parameters; otherwise Open fails with merkle.ErrParamsChanged.
	RebuildOnParamsChange bool
	// Resolver merges two records of one key (default:
	// record.ResolverFor(Mode)). It runs as Pebble's merge operator and
	// in anti-entropy, so it must be deterministic, commutative,
	// associative and idempotent.
	Resolver record.Resolver
	// FS is the file system (default vfs.Default). Tests pass
	// vfs.NewCrashableMem() to crash the engine.
	FS vfs.FS
	// Pebble are options passed through to Pebble. The engine sets FS,
	// Merger and FormatMajorVersion on a copy: a Pebble.FS or Pebble.Merger
	// stands for FS or Merger when those are unset, and Open refuses
	// (ErrInvalidOptions) values there that differ from FS, Merger or the
	// pinned FormatMajorVersion, rather than drop them silently.
	Pebble *pebble.Options
	// Merger is the application's own Pebble merger, if its DB had one. The
	// engine's merger takes its name (so the DB still opens) and hands it
	// every merge whose operands are not pebble-ae records.
	Merger *pebble.Merger
	// Clock is the physical clock of the hybrid logical clock (default:
	// the system clock).
	Clock record.PhysicalClock
	// MaxClockOffset is the furthest ahead of Clock a received record may
	// be stamped (default record.DefaultMaxClockOffset, 500 ms;
	// negative: no limit). Apply refuses a record stamped beyond it
	// (record.ErrClockOffset), the HLC never moves further than it
	// ahead of Clock, Info tells sessions about it (they quarantine such
	// records and refuse to run between replicas whose clocks differ by
	// more, reconcile.ErrClockSkew), and FutureRecords finds records stored
	// beyond it.
	MaxClockOffset time.Duration
	// MaxKeySize and MaxValueSize bound keys and values (defaults 4 KiB and
	// 16 MiB).
	MaxKeySize, MaxValueSize int
	// CheckpointInterval is how often the background worker recomputes
	// dirty leaves and checkpoints the tree (default 10s; negative:
	// never, the application calls Checkpoint itself).
	CheckpointInterval time.Duration
	// Hooks are the application's own write hooks, run after the tree's.
	Hooks []hooks.Hook
	// Throttle slows down background scans (see merkle.Options.Throttle).
	Throttle func(ctx context.Context, keys, bytes int) error
	// ObserveForeground, if set, is told the latency of every foreground
	// Put, Get, Delete and batch commit (admission control feeds on it).
	ObserveForeground func(time.Duration)
	// Logger receives the engine's logs (default: discard).
	Logger *slog.Logger
	// PrefixSymbols is the length of each partition's persisted symbol
	// prefix (see entries.go): a session localizes up to ~PrefixSymbols/1.5
	// differing entries of a partition from it; a larger difference
	// descends the tree. Default DefaultPrefixSymbols for one partition,
	// less for many (at least 1024 each). All replicas should use the
	// same; a change rebuilds the entry index (and the tree) at Open.
	PrefixSymbols int

	// wrapReader, for tests, wraps the reads of engine and tree.
	wrapReader func(reader) reader
}

// Defaults.
const (
	DefaultMaxKeySize         = 4 << 10
	DefaultMaxValueSize       = 16 << 20
	DefaultCheckpointInterval = 10 * time.Second
)

// EnsureDefaults returns a copy of o with zero fields set to defaults.
func (o *Options) EnsureDefaults() *Options {
	var c Options
	if o != nil {
		c = *o
	}
	if c.Mode == 0 {
		c.Mode = record.ModeLWW
	}
	if c.Partitioner == nil {
		c.Partitioner = merkle.SinglePartition()
	}
	c.Tree = c.Tree.EnsureDefaults()
	if c.Resolver == nil {
		c.Resolver = record.ResolverFor(c.Mode)
	}
	if c.Pebble != nil {
		// What the application put in the passed-through Pebble options
		// where the engine has its own field counts as that field.
		if c.FS == nil {
			c.FS = c.Pebble.FS
		}
		if c.Merger == nil {
			c.Merger = c.Pebble.Merger
		}
	}
	if c.FS == nil {
		c.FS = vfs.Default
	}
	if c.Clock == nil {
		c.Clock = record.SystemClock{}
	}
	if c.MaxClockOffset == 0 {
		c.MaxClockOffset = record.DefaultMaxClockOffset
	}
	if c.MaxKeySize == 0 {
		c.MaxKeySize = DefaultMaxKeySize
	}
	if c.MaxValueSize == 0 {
		c.MaxValueSize = DefaultMaxValueSize
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.PrefixSymbols == 0 {
		c.PrefixSymbols = defaultPrefixSymbols(c.Partitioner.NumPartitions())
	}
	return &c
}

// Validate reports whether o (after EnsureDefaults) is usable.
func (o *Options) Validate() error {
	if err := o.ReplicaID.Validate(); err != nil {
		return fmt.Errorf("%w: replica ID: %w", ErrInvalidOptions, err)
	}
	if o.Mode != record.ModeLWW && o.Mode != record.ModeCausal {
		return fmt.Errorf("%w: mode %d", ErrInvalidOptions, o.Mode)
	}
	if err := o.Tree.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	if o.PrefixSymbols < 1 || o.PrefixSymbols > reconcile.MaxSymbols {
		return fmt.Errorf("%w: prefix symbols %d out of [1, %d]", ErrInvalidOptions, o.PrefixSymbols, reconcile.MaxSymbols)
	}
	if o.MaxKeySize < 1 || o.MaxValueSize < 0 {
		return fmt.Errorf("%w: max key size %d, max value size %d", ErrInvalidOptions, o.MaxKeySize, o.MaxValueSize)
	}
	if p := o.Pebble; p != nil {
		// The engine sets these on its copy of the Pebble options; a
		// different value there would be silently dropped.
		if p.FS != nil && !sameFS(p.FS, o.FS) {
			return fmt.Errorf("%w: Pebble.FS and FS differ (set FS; the engine gives it to Pebble)", ErrInvalidOptions)
		}
		if p.Merger != nil && p.Merger != o.Merger {
			return fmt.Errorf("%w: Pebble.Merger %q and Merger differ (set Merger; the engine wraps it)", ErrInvalidOptions, p.Merger.Name)
		}
		if p.FormatMajorVersion != 0 && p.FormatMajorVersion != FormatMajorVersion {
			return fmt.Errorf("%w: Pebble.FormatMajorVersion %d: the engine pins %d", ErrInvalidOptions, p.FormatMajorVersion, FormatMajorVersion)
		}
	}
	return nil
}

// sameFS reports whether a and b are the same file system value (false for
// values of a type that cannot be compared).
func sameFS(a, b vfs.FS) bool {
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	return ta == tb && ta.Comparable() && a == b
}
