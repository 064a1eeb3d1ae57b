package engine

import (
	"io"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// DefaultDiskSlowThreshold is a threshold for WithDiskHealthChecks: Pebble's
// own default.
const DefaultDiskSlowThreshold = 5 * time.Second

// WithDiskHealthChecks wraps fs so that every write or sync that takes
// longer than threshold calls onSlow (Admission.DiskSlow) from a monitoring
// goroutine: Pebble's own disk-health checker (vfs.WithDiskHealthChecks).
// Pass the result as Options.FS, and close the closer after the engine. The
// checker samples every two seconds, so slowness shorter than that may go
// unreported.
func WithDiskHealthChecks(fs vfs.FS, threshold time.Duration, onSlow func(vfs.DiskSlowInfo)) (vfs.FS, io.Closer) {
	if fs == nil {
		fs = vfs.Default
	}
	return vfs.WithDiskHealthChecks(fs, threshold, nil, onSlow)
}

// SlowFS is a vfs.FS whose file writes and syncs each take an extra, settable
// delay: a slow or failing disk for tests and measurements. Reads are not
// slowed. Safe for concurrent use.
type SlowFS struct {
	vfs.FS
	delay atomic.Int64
}

// NewSlowFS wraps fs (nil: vfs.Default) with no delay.
func NewSlowFS(fs vfs.FS) *SlowFS {
	if fs == nil {
		fs = vfs.Default
	}
	return &SlowFS{FS: fs}
}

// SetDelay sets the delay added to every write and sync from now on.
func (s *SlowFS) SetDelay(d time.Duration) { s.delay.Store(int64(d)) }

func (s *SlowFS) wait() {
	if d := time.Duration(s.delay.Load()); d > 0 {
		time.Sleep(d)
	}
}

func (s *SlowFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return &slowFile{File: f, fs: s}, nil
}

// Create implements vfs.FS.
func (s *SlowFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return s.wrap(s.FS.Create(name, c))
}

// OpenReadWrite implements vfs.FS.
func (s *SlowFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return s.wrap(s.FS.OpenReadWrite(name, c, opts...))
}

// ReuseForWrite implements vfs.FS.
func (s *SlowFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return s.wrap(s.FS.ReuseForWrite(oldname, newname, c))
}

// Unwrap implements vfs.FS.
func (s *SlowFS) Unwrap() vfs.FS { return s.FS }

type slowFile struct {
	vfs.File
	fs *SlowFS
}

func (f *slowFile) Write(p []byte) (int, error) { f.fs.wait(); return f.File.Write(p) }

func (f *slowFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.wait()
	return f.File.WriteAt(p, off)
}

func (f *slowFile) Sync() error     { f.fs.wait(); return f.File.Sync() }
func (f *slowFile) SyncData() error { f.fs.wait(); return f.File.SyncData() }

func (f *slowFile) SyncTo(n int64) (bool, error) {
	f.fs.wait()
	return f.File.SyncTo(n)
}
