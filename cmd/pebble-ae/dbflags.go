package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/internal/cliflags"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"github.com/spf13/pflag"
)

// dbFlags are the flags that open an engine directory.
type dbFlags struct {
	id            string
	mode          string
	leafSize      uint32
	seed          uint64
	splits        string
	rebuild       bool
	prefixSymbols int
	// maxOffset is engine.Options.MaxClockOffset; clockSkew, a hidden
	// flag for tests, runs the engine's clock that far from the system's.
	maxOffset, clockSkew time.Duration
	// existing makes open refuse a directory that holds no database
	// instead of creating one: the commands that read or inspect a
	// replica (a mistyped --dir must not leave an empty database behind).
	existing bool
}

// errNoDatabase is the error of a command that needs an existing
// database, given a directory without one.
var errNoDatabase = errors.New("no pebble-ae database")

func (f *dbFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.id, "id", "local", "replica ID that stamps writes")
	fs.StringVar(&f.mode, "mode", "lww", "write mode: lww or causal")
	fs.Uint32Var(&f.leafSize, "leaf-size", merkle.DefaultLeafSize, "expected keys per Merkle leaf (all replicas must agree)")
	fs.Uint64Var(&f.seed, "tree-seed", 0, "seed of the leaf boundary function (all replicas must agree)")
	fs.StringVar(&f.splits, "splits", "", "comma-separated partition split keys (all replicas must agree)")
	fs.BoolVar(&f.rebuild, "rebuild-on-change", false, "rebuild the tree if it was built with other parameters")
	fs.IntVar(&f.prefixSymbols, "prefix-symbols", 0, "symbols of each partition's persisted symbol prefix (0: 32768 for one partition, fewer for many; all replicas should agree; a change rebuilds)")
	fs.DurationVar(&f.maxOffset, "max-clock-offset", record.DefaultMaxClockOffset, "how far ahead of this node's clock a received record may be stamped; further is refused (all replicas should agree; negative: no limit)")
	fs.DurationVar(&f.clockSkew, "debug-clock-skew", 0, "run this node's clock this far from the system clock (tests of the clock guard)")
	_ = fs.MarkHidden("debug-clock-skew")
}

func (f *dbFlags) options() (*engine.Options, error) {
	mode, err := record.ParseMode(f.mode)
	if err != nil {
		return nil, err
	}
	pn, err := cliflags.ParseSplits(f.splits)
	if err != nil {
		return nil, err
	}
	return &engine.Options{
		ReplicaID:             record.ReplicaID(f.id),
		Mode:                  mode,
		Partitioner:           pn,
		Tree:                  merkle.Params{LeafSize: f.leafSize, Seed: f.seed},
		RebuildOnParamsChange: f.rebuild,
		PrefixSymbols:         f.prefixSymbols,
		MaxClockOffset:        f.maxOffset,
		Clock:                 skewedClock(f.clockSkew),
	}, nil
}

// skewedClock returns the system clock moved by skew (nil, the default
// system clock, for 0).
func skewedClock(skew time.Duration) record.PhysicalClock {
	if skew == 0 {
		return nil
	}
	return skewed(skew)
}

// skewed is the system clock plus itself.
type skewed time.Duration

func (s skewed) Now() time.Time { return time.Now().Add(time.Duration(s)) }

func (f *dbFlags) open(ctx context.Context, dir string) (*engine.Engine, error) {
	if dir == "" {
		return nil, fmt.Errorf("no database directory: pass --dir")
	}
	o, err := f.options()
	if err != nil {
		return nil, err
	}
	lockPath, hadLock := filepath.Join(dir, "LOCK"), false
	noDB := fmt.Errorf("%w in %q (this command does not create one)", errNoDatabase, dir)
	if f.existing {
		// Pebble's ErrorIfNotExists still creates the directory and its
		// LOCK file before it looks: check first that there is something,
		// and remove a LOCK file the failed open left.
		ents, err := os.ReadDir(dir)
		if err != nil || len(ents) == 0 {
			return nil, noDB
		}
		_, err = os.Lstat(lockPath)
		hadLock = err == nil
		o.Pebble = &pebble.Options{ErrorIfNotExists: true}
	}
	e, err := engine.Open(dir, o)
	if errors.Is(err, pebble.ErrDBDoesNotExist) {
		if !hadLock {
			_ = os.Remove(lockPath)
		}
		return nil, noDB
	}
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) {
		// Pebble's LOCK is held: another process has the database open.
		return nil, fmt.Errorf("%w: %q is open in another process (a running node?): reach a served node with --addr id=host:port", errDatabaseInUse, dir)
	}
	if err != nil {
		return nil, err
	}
	return e, nil
}

// errDatabaseInUse is the error of a command given the directory of a
// database another process holds open.
var errDatabaseInUse = errors.New("database in use")
