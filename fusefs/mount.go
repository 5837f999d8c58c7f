//go:build linux

package fusefs

import (
	"cmp"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/amber-forensics/amber/archive"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Options tune a mount.
type Options struct {
	// AllowOther lets users other than the mounting one read the mount.
	AllowOther bool
	// CacheFrames is the number of decoded frames kept (about 1 MiB each).
	CacheFrames int
	// Debug logs every FUSE request.
	Debug bool
	// Log receives notable events (files refused for a bad hash).
	Log func(string)
	// MaxInodes is how many inodes the mount keeps before asking the
	// kernel to forget the oldest (0: DefaultMaxInodes).
	MaxInodes int
	// NoPush turns off storing a directory's next files into the
	// kernel's cache while one of them is read (push.go).
	NoPush bool
	// RebaseLinks shows every symlink of a tree as resolved inside its
	// view's root, as in the container (an absolute target from the
	// view's root, ".." never above it), as a relative target: following
	// it (diff -r, sha256sum, cat) never reaches the examiner's own host.
	// amber ls shows the captured target.
	RebaseLinks bool
	// PreloadIndexes bounds the bytes of file indexes read in the
	// background once the mount is ready (archive.Archive.Preload;
	// 0: DefaultPreloadIndexes; negative: none read ahead).
	PreloadIndexes int64

	// The process's memory while Serve's session lasts (Mount alone
	// leaves them): a mount may run for days over any archive.

	// GCPercent, when above 0, is the garbage collector's percentage
	// (debug.SetGCPercent).
	GCPercent int
	// MemoryFloor, when above 0, is the least soft memory limit
	// (debug.SetMemoryLimit), raised with what is live.
	MemoryFloor int64
}

// CheckMountpoint says whether dir can be mounted on: an existing, empty
// directory that is not already a mount (a stale FUSE mount, left by a
// killed process, answers ENOTCONN).
func CheckMountpoint(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) && errno == syscall.ENOTCONN {
			return fmt.Errorf("%w: %s is a dead FUSE mount (its amber was killed); clear it with: amber umount %s", ErrStale, dir, dir)
		}
		return fmt.Errorf("mount point: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("mount point %s is not a directory", dir)
	}
	if IsMountpoint(dir) {
		return fmt.Errorf("%w: %s is already a mount point; unmount it first (amber umount %s)", ErrBusy, dir, dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("mount point: %w", err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("%w: %s is not empty; mount on an empty directory", ErrBusy, dir)
	}
	return nil
}

// IsMountpoint reports whether dir is the root of a mount, from
// /proc/self/mountinfo.
func IsMountpoint(dir string) bool {
	_, _, ok := MountAt(dir)
	return ok
}

// MountAt reads the file system type and source of the mount at dir from
// /proc/self/mountinfo (never stat'ing dir: a stale FUSE mount hangs or
// fails); of mounts stacked there, the top one, which umount removes.
func MountAt(dir string) (fstype, source string, ok bool) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", "", false
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", "", false
	}
	// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || unescapeMount(f[4]) != abs {
			continue
		}
		fstype, source, ok = "", "", true
		for i := 6; i+2 < len(f); i++ {
			if f[i] == "-" {
				fstype, source = unescapeMount(f[i+1]), unescapeMount(f[i+2])
				break
			}
		}
	}
	return fstype, source, ok
}

// IsAmberMount tells amber's mounts by what Mount names them: subtype
// "amber" (fstype fuse.amber, direct or through fusermount3) and source
// "amber:ARCHIVE".
func IsAmberMount(fstype, source string) bool {
	return fstype == "fuse.amber" || (strings.HasPrefix(fstype, "fuse") && strings.HasPrefix(source, "amber:"))
}

// Mount serves a on dir and returns once the mount is ready. The caller
// waits on the server and unmounts it.
func Mount(a *archive.Archive, dir string, o Options) (*fuse.Server, error) {
	srv, _, err := mount(a, dir, o)
	return srv, err
}

func mount(a *archive.Archive, dir string, o Options) (*fuse.Server, *FS, error) {
	if err := CheckMountpoint(dir); err != nil {
		return nil, nil, err
	}
	frames := o.CacheFrames
	if frames <= 0 {
		frames = 16
	}
	a.SetCache(frames, 2)
	f := New(a)
	f.inodes = newBudget(o.MaxInodes)
	f.rebase = o.RebaseLinks
	if !o.NoPush {
		f.push = make(chan pushJob, 64)
	}
	if o.Log != nil {
		f.Log = o.Log
	}
	root, err := f.Root()
	if err != nil {
		return nil, nil, err
	}
	t := Timeout
	name := filepath.Base(a.Path)
	mo := fuse.MountOptions{
		AllowOther:       o.AllowOther,
		FsName:           "amber:" + name,
		Name:             "amber",
		DirectMount:      os.Geteuid() == 0,
		DirectMountFlags: syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV,
		MaxWrite:         1 << 20,
		MaxReadAhead:     1 << 20,
		Options:          []string{"ro", "nosuid", "nodev", "default_permissions"},
		Debug:            o.Debug,
		// Request logs (--debug) with microseconds: what timing needs.
		Logger:        log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds),
		MaxBackground: 12,
		// Replies carry bytes, never a file descriptor: with splice on,
		// go-fuse first tries every READ reply through a pipe (growing
		// it, writing the header in, finding nothing to splice, falling
		// back to writev), which cost more CPU than the decoding.
		DisableSplice: true,
		// The kernel caches symlink targets per inode. (Not ACLs: the
		// kernel would ask for each inode's; see Getxattr.)
		EnableSymlinkCaching: true,
		// Content never changes: no automatic invalidation either.
		ExplicitDataCacheControl: true,
		// Directories need no OPENDIR/RELEASEDIR (see noOpendir).
		ExtraCapabilities: fuse.CAP_NO_OPENDIR_SUPPORT,
	}
	opts := &fs.Options{
		MountOptions:    mo,
		EntryTimeout:    &t,
		AttrTimeout:     &t,
		NegativeTimeout: &t,
		RootStableAttr:  &fs.StableAttr{Ino: 1},
		// Modes as captured: without it go-fuse shows a mode of 0000
		// (/etc/shadow on RHEL, BuildKit's .wh. markers) as 0644, or
		// 0755 for a directory. The kernel checks permissions
		// (default_permissions), so root still reads such files.
		NullPermissions: true,
	}
	// Not fs.Mount: its WaitMount opens a file on the new mount from this
	// very process (go-fuse's poll hack). A SIGKILL landing then leaves a
	// thread waiting on a FUSE request that only this dying process could
	// answer: an unkillable process and a mount nobody can serve. NewServer
	// has mounted and answered INIT when it returns, which is all "ready"
	// means; amber's mount process never touches its own mount. A process
	// that does (tests) must call the server's WaitMount first.
	raw := &noOpendir{RawFileSystem: fs.NewNodeFS(root, opts), open: map[uint64]*listing{}}
	server, err := fuse.NewServer(raw, dir, &opts.MountOptions)
	if err != nil {
		return nil, nil, fmt.Errorf("mounting %s on %s: %w", name, dir, err)
	}
	raw.on.Store(server.KernelSettings().Flags64()&fuse.CAP_NO_OPENDIR_SUPPORT != 0)
	raiseReadahead(dir)
	done := make(chan struct{})
	go func() {
		server.Serve()
		close(done)
	}()
	go f.inodes.run(done, 2*time.Second)
	if preload := cmp.Or(o.PreloadIndexes, DefaultPreloadIndexes); preload > 0 {
		go a.Preload(preload)
	}
	go f.pusher(done)
	return server, f, nil
}

// DefaultPreloadIndexes is Options.PreloadIndexes when 0.
const DefaultPreloadIndexes = 32 << 20

// Unmount detaches the mount at dir, also when the process serving it is
// gone: as root with umount2(MNT_DETACH), otherwise with fusermount3 -uz.
func Unmount(dir string) error {
	if os.Geteuid() == 0 {
		err := syscall.Unmount(dir, 0)
		if err == nil {
			return nil
		}
		if err2 := syscall.Unmount(dir, syscall.MNT_DETACH); err2 == nil {
			return nil
		}
		if errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("%s is not a mount point", dir)
		}
		return fmt.Errorf("unmounting %s: %w", dir, err)
	}
	for _, bin := range []string{"fusermount3", "fusermount"} {
		if p, err := execLookPath(bin); err == nil {
			out, err := execCommand(p, "-u", "-z", dir)
			if err == nil {
				return nil
			}
			return fmt.Errorf("unmounting %s: %s: %v", dir, out, err)
		}
	}
	return fmt.Errorf("unmounting %s: fusermount3 not found", dir)
}

// WaitUnmounted polls until dir is no longer a mount point.
func WaitUnmounted(dir string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !IsMountpoint(dir) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return !IsMountpoint(dir)
}

// ReadaheadKB is the kernel readahead asked for the mount's backing device:
// with the default 128 KiB the kernel reads a file one 128 KiB request
// after another; with more it sends 1 MiB requests, several in flight,
// which the frame decoding on both cores can keep up with.
const ReadaheadKB = 4096

// raiseReadahead sets the mount's readahead (only root may write the
// sysfs knob; otherwise the default stays). The device is found in
// /proc/self/mountinfo: the mount process must never stat its own mount.
func raiseReadahead(dir string) {
	if os.Geteuid() != 0 {
		return
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	dev := ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		// id parent major:minor root mountpoint ...; the last match is
		// the newest mount on that point.
		if len(f) > 4 && unescapeMountinfo(f[4]) == abs {
			dev = f[2]
		}
	}
	if dev == "" || strings.ContainsAny(dev, "/.") {
		return
	}
	os.WriteFile("/sys/class/bdi/"+dev+"/read_ahead_kb", []byte(fmt.Sprint(ReadaheadKB)), 0)
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
