//go:build linux

package snapshot

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
)

// A regular file of the upper directory route, read while a container
// may be writing it: see storeFile.

// readHook, when a test sets it, runs after each read of a file's content
// and before the file's state is compared: the test changes the file
// there, at the one moment that matters.
var readHook func(path string, pass int)

// fileState is what tells one version of a file from the next without
// reading it again: its size and its modification and change times.
type fileState struct {
	size         int64
	mtime, ctime unix.Timespec
}

func stateOf(st *unix.Stat_t) fileState { return fileState{st.Size, st.Mtim, st.Ctim} }

func (s fileState) String() string {
	return fmt.Sprintf("size %d, mtime %s, ctime %s", s.size, timespec(s.mtime), timespec(s.ctime))
}

func timespec(t unix.Timespec) string {
	return time.Unix(t.Unix()).UTC().Format(time.RFC3339Nano)
}

// coarseNow is the clock the kernel stamps files with (current_time).
func coarseNow() unix.Timespec {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_REALTIME_COARSE, &ts)
	return ts
}

// racy reports whether a file whose change time is ctime may have been
// written at or after start without its times showing it: the kernel
// stamps a write with the clock's current tick, so writes within one tick
// leave ctime as it was. Only a ctime older than the tick in which a read
// began proves that nothing wrote during the read. A ctime with no
// nanoseconds is taken as whole seconds (a file system that keeps no
// more).
func racy(ctime, start unix.Timespec) bool {
	if ctime.Nsec == 0 {
		return ctime.Sec >= start.Sec
	}
	return ctime.Sec > start.Sec || ctime.Sec == start.Sec && ctime.Nsec >= start.Nsec
}

// storeFile stores the regular file at p (st: its lstat) as the entry h,
// opened so that its access time is not changed. A live container may
// rewrite the file while it is read, and a plain copy would then seal a
// version that never existed: so its size, mtime and ctime are compared
// before the read (lstat) and after it (fstat of the open file). When they
// differ the file is read once more, describing the version then found;
// if it changes again that second read is stored and flagged
// changed-during-capture with the states around both reads (--pause
// avoids it). A file smaller than buf is read into buf before anything is
// written; a larger one is streamed into the layer and, when it changed,
// taken back out of it before the second read.
func storeFile(e entryAt, st *unix.Stat_t, h *tar.Header, lf *layerFile, buf []byte, rel string, anomalies *[]manifest.Anomaly) error {
	p := e.path()
	fd, err := openRegular(e)
	if err != nil {
		// Gone or unreadable: recorded with the size lstat saw.
		h.Size = st.Size
		if err := lf.header(h); err != nil {
			return err
		}
		*anomalies = append(*anomalies, manifest.Anomaly{Path: rel, Kind: "unreadable", Detail: fmt.Sprintf("%v; %d zero bytes stored in its place", err, st.Size)})
		return writeZeros(lf.tw, st.Size, buf)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	before := stateOf(st)
	var reads []string
	for pass := 0; ; pass++ {
		var n int64
		var rerr error
		mark := int64(-1)
		start := coarseNow()
		if before.size < int64(len(buf)) {
			k, err := readAllAt(f, buf)
			n, rerr = int64(k), err
		} else {
			if mark, err = lf.mark(); err != nil {
				return err
			}
			h.Size = before.size
			if err := lf.header(h); err != nil {
				return err
			}
			src := &readErrReader{r: io.NewSectionReader(f, 0, before.size)}
			if n, err = io.CopyBuffer(lf.tw, src, buf); err != nil {
				return fmt.Errorf("storing %s: %w", rel, err)
			}
			rerr = src.err
			if err := writeZeros(lf.tw, before.size-n, buf); err != nil {
				return fmt.Errorf("storing %s: %w", rel, err)
			}
		}
		if readHook != nil {
			readHook(p, pass)
		}
		var now unix.Stat_t
		if err := unix.Fstat(fd, &now); err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		after := stateOf(&now)
		changed := rerr == nil && (after != before || n != before.size || racy(after.ctime, start))
		if changed && pass == 0 {
			reads = append(reads, fmt.Sprintf("first read: %s before, %s after", before, after))
			if mark >= 0 {
				if err := lf.rollback(mark); err != nil {
					return err
				}
			}
			// The second read is described by what it finds, and begins
			// once the clock has left the tick of the last change, so
			// that a quiet file reads as quiet (at most a tick; a second
			// on a file system with whole-second times).
			for i := 0; i < 1100 && racy(after.ctime, coarseNow()); i++ {
				time.Sleep(time.Millisecond)
			}
			before = after
			h.Mode, h.Uid, h.Gid = int64(now.Mode&0o7777), int(now.Uid), int(now.Gid)
			h.ModTime, h.AccessTime, h.ChangeTime = time.Unix(now.Mtim.Unix()), time.Unix(now.Atim.Unix()), time.Unix(now.Ctim.Unix())
			continue
		}
		if mark < 0 {
			// Read whole into buf: stored as read, unless a read failed.
			h.Size = n
			if rerr != nil {
				h.Size = max(n, before.size)
			}
			if err := lf.header(h); err != nil {
				return err
			}
			if _, err := lf.tw.Write(buf[:n]); err != nil {
				return fmt.Errorf("storing %s: %w", rel, err)
			}
			if err := writeZeros(lf.tw, h.Size-n, buf); err != nil {
				return fmt.Errorf("storing %s: %w", rel, err)
			}
		}
		switch {
		case rerr != nil:
			*anomalies = append(*anomalies, manifest.Anomaly{Path: rel, Kind: "size-changed", Detail: fmt.Sprintf("read failed: %v: %d of %d bytes; the rest stored as zeros", rerr, n, h.Size)})
		case changed:
			reads = append(reads, fmt.Sprintf("second read, stored: %s before, %s after", before, after))
			d := "changed while read, twice (use --pause for a busy container): " + strings.Join(reads, "; ")
			if after == before && n == before.size {
				d = "may have changed while read, twice: changed within the clock tick each read began in, so its times cannot tell (use --pause for a busy container): " + strings.Join(reads, "; ")
			}
			if n != h.Size {
				d += fmt.Sprintf("; %d bytes read, stored as %d (the size seen before the read; cut, or padded with zeros)", n, h.Size)
			}
			*anomalies = append(*anomalies, manifest.Anomaly{Path: rel, Kind: "changed-during-capture", Detail: d})
		}
		return nil
	}
}

// errNotRegular says a name that lstat found a regular file was something
// else when it was opened.
var errNotRegular = errors.New("no longer a regular file when opened")

// openRegular opens the regular file e for reading, without changing its
// access time. Only a regular file is ever opened: a running container
// could put a device node (the host's disk, a watchdog that opening arms)
// or a FIFO (whose open never returns) in place of a file between lstat
// and open, so it is held first by an O_PATH descriptor, which opens
// nothing, checked, and then reopened through that descriptor.
func openRegular(e entryAt) (int, error) {
	pfd, err := unix.Openat(e.dir.fd, e.name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: e.path(), Err: err}
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return -1, &os.PathError{Op: "stat", Path: e.path(), Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return -1, &os.PathError{Op: "open", Path: e.path(), Err: errNotRegular}
	}
	self := fmt.Sprintf("/proc/self/fd/%d", pfd)
	fd, err := unix.Open(self, unix.O_RDONLY|unix.O_NOATIME|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EPERM) {
		fd, err = unix.Open(self, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: e.path(), Err: err}
	}
	return fd, nil
}

// readAllAt reads f from its start into buf until EOF or buf is full.
func readAllAt(f *os.File, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := f.ReadAt(buf[n:], int64(n))
		n += k
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// mark flushes the layer to an entry boundary and returns its length, for
// rollback.
func (l *layerFile) mark() (int64, error) {
	if err := l.tw.Flush(); err != nil {
		return 0, fmt.Errorf("writing the changes layer: %w", err)
	}
	if err := l.bw.Flush(); err != nil {
		return 0, fmt.Errorf("writing the changes layer: %w", err)
	}
	return l.h.Size(), nil
}

// rollback takes what was written after mark out of the layer: the file
// is cut back and the digest computed again over what stays (the hash's
// state cannot be saved; this happens only for a large file that changed
// while it was read).
func (l *layerFile) rollback(mark int64) error {
	l.bw.Reset(l.f)
	if err := l.f.Truncate(mark); err != nil {
		return fmt.Errorf("writing the changes layer: %w", err)
	}
	if _, err := l.f.Seek(mark, io.SeekStart); err != nil {
		return fmt.Errorf("writing the changes layer: %w", err)
	}
	h := hashing.NewMulti(false, false)
	if _, err := io.Copy(h, io.NewSectionReader(l.f, 0, mark)); err != nil {
		return fmt.Errorf("reading the changes layer back: %w", err)
	}
	l.h = h
	l.tw = tar.NewWriter(io.MultiWriter(l.bw, l.h))
	l.count--
	return nil
}

// readErrReader ends the stream at a read error and keeps the error, so
// that a copy tells a failing source from a failing destination.
type readErrReader struct {
	r   io.Reader
	err error
}

func (r *readErrReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
		return n, io.EOF
	}
	return n, err
}

func writeZeros(w io.Writer, n int64, buf []byte) error {
	clear(buf)
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := w.Write(buf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}
