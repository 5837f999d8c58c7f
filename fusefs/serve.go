//go:build linux

package fusefs

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/internal/textsafe"
)

// Session is a mount being served: Serve returns it once the mount is
// ready, Wait serves it until it ends.
type Session struct {
	server *fuse.Server
	dir    string
	ctx    context.Context
	done   chan struct{} // closed when the server has stopped serving
	// restore undoes the memory settings of the session (Options.GCPercent,
	// Options.MemoryFloor) once it has ended.
	restore func()
	// held is the mount point's own directory (under the mount), opened
	// and share-locked before mounting, until Close: UnmountAmber waits for
	// the lock, so that it returns only once the serving process has
	// finished (its custody event written), not when the kernel lets go.
	held *os.File
}

// unmountTries and unmountPause bound the clean unmount of a busy mount
// (a shell sitting in it) before it is detached lazily; unmountGrace is
// how long the server then has to stop.
const (
	unmountTries = 20
	unmountPause = 50 * time.Millisecond
	unmountGrace = 10 * time.Second
)

// Serve opens an archive with open and serves it at dir, and returns once
// the mount is ready. The memory settings of o are in place before open
// is called, so that indexing a plain source at open runs under them too;
// they are undone when the session ends, or at once when Serve fails.
// When ctx is done (cmd/amber cancels it on SIGINT and SIGTERM) the
// session unmounts itself as Unmount does; Wait returns once it has ended.
// The archive is the caller's to close, after Wait.
func Serve(ctx context.Context, dir string, open func() (*archive.Archive, error), o Options) (*Session, error) {
	restore := setMemory(o.GCPercent, o.MemoryFloor)
	a, err := open()
	if err != nil {
		restore()
		return nil, err
	}
	// Checked before it is opened to be held: a dead FUSE mount there
	// fails (or hangs) an open, and is named as such by the check.
	if err := CheckMountpoint(dir); err != nil {
		restore()
		return nil, err
	}
	held, err := holdMountpoint(dir)
	if err != nil {
		restore()
		return nil, err
	}
	server, err := Mount(a, dir, o)
	if err != nil {
		held.Close()
		restore()
		return nil, err
	}
	s := &Session{server: server, dir: dir, ctx: ctx, done: make(chan struct{}), restore: restore, held: held}
	go func() { server.Wait(); close(s.done) }()
	return s, nil
}

// Wait serves the mount until it is unmounted from outside (amber umount,
// fusermount -u) or the session's context is done, which unmounts it.
func (s *Session) Wait() {
	defer s.restore()
	select {
	case <-s.done:
	case <-s.ctx.Done():
		s.Unmount()
	}
}

// Close lets UnmountAmber return: call it once the session has ended and
// whatever follows it (the custody event) is done. Exiting the process
// does the same.
func (s *Session) Close() {
	if s.held != nil {
		s.held.Close()
		s.held = nil
	}
}

// holdMountpoint opens dir and takes a shared lock on it, released when
// the file is closed (or the process exits).
func holdMountpoint(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s is held by another amber mount: %w", dir, err)
	}
	return f, nil
}

// waitReleased waits, up to d, until no serving process holds dir (see
// Session.held). A mount made by anything else holds nothing.
func waitReleased(dir string, d time.Duration) {
	f, err := os.Open(dir)
	if err != nil {
		return
	}
	defer f.Close()
	for deadline := time.Now().Add(d); ; {
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			unix.Flock(int(f.Fd()), unix.LOCK_UN)
			return
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Unmount ends the session: a clean unmount, retried while the mount is
// busy (a shell sitting in it), else a lazy detach so that the process can
// still exit cleanly; it then gives the server up to 10 s to stop, and
// reports the error of the last try when the mount had to be detached.
func (s *Session) Unmount() error {
	select {
	case <-s.done:
		return nil // already unmounted
	default:
	}
	var err error
	for range unmountTries {
		if err = s.server.Unmount(); err == nil {
			break
		}
		time.Sleep(unmountPause)
	}
	if err != nil {
		Unmount(s.dir)
	}
	select {
	case <-s.done:
	case <-time.After(unmountGrace):
	}
	return err
}

// UnmountAmber unmounts dir when it is an amber mount, live or left stale
// by a killed amber, or, with force, whatever is mounted there, and waits
// up to 5 s for it to be gone, and up to 5 s more for the process that
// served it to finish (its "unmounted" custody event written: a script
// that reads the custody log after amber umount finds it). Any other mount (a tmpfs, a bind mount,
// another FUSE file system) is refused with ErrForeign: a mistyped path
// must not unmount the evidence disk or the system's own mounts. The
// names in the error are escaped (a mount's source is anyone's text).
func UnmountAmber(dir string, force bool) error {
	fstype, source, ok := MountAt(dir)
	if !ok {
		return fmt.Errorf("%w: %s is not a mount point", os.ErrNotExist, dir)
	}
	if !IsAmberMount(fstype, source) && !force {
		return fmt.Errorf("%w: %s is a %s mount of %s; 'amber umount --force %s' unmounts it anyway", ErrForeign,
			textsafe.Escape(dir), textsafe.Escape(fstype), textsafe.Escape(source), textsafe.Escape(dir))
	}
	if err := Unmount(dir); err != nil {
		return err
	}
	if !WaitUnmounted(dir, 5*time.Second) {
		return fmt.Errorf("%s is still mounted", dir)
	}
	waitReleased(dir, 5*time.Second)
	return nil
}

// setMemory collects garbage at gcPercent and keeps a soft memory limit
// of at least floor (adaptMemoryLimit), each only when above 0, and
// returns what restores the runtime's previous settings.
func setMemory(gcPercent int, floor int64) (restore func()) {
	var undo []func()
	if gcPercent > 0 {
		prev := debug.SetGCPercent(gcPercent)
		undo = append(undo, func() { debug.SetGCPercent(prev) })
	}
	if floor > 0 {
		prev := debug.SetMemoryLimit(-1) // -1 reads the limit
		stop := adaptMemoryLimit(floor, time.Second)
		undo = append(undo, func() { stop(); debug.SetMemoryLimit(prev) })
	}
	return func() {
		for _, f := range undo {
			f()
		}
	}
}

// adaptMemoryLimit keeps the runtime's soft memory limit at floor, or at
// the live heap plus an eighth and 8 MiB when that is more, checking
// every period, until stop is called.
func adaptMemoryLimit(floor int64, period time.Duration) (stop func()) {
	debug.SetMemoryLimit(floor)
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(period)
		defer t.Stop()
		cur := floor
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			metrics.Read(sample)
			if sample[0].Value.Kind() != metrics.KindUint64 {
				continue
			}
			live := int64(sample[0].Value.Uint64())
			want := max(floor, live+live/8+8<<20)
			if want != cur {
				debug.SetMemoryLimit(want)
				cur = want
			}
		}
	}()
	return func() { close(done); <-exited }
}
