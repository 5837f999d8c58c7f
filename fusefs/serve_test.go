//go:build linux

package fusefs_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/fusefs"
	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
)

// gcPercent reads the collector's percentage (SetGCPercent returns it).
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestServeSession: Serve sets the session's memory before it opens the
// archive; the end of its context unmounts it, retrying while a process
// sits in the mount (a clean unmount once it leaves, not a lazy detach);
// the runtime's settings come back when it ends. Every access to the
// mount is by another process (stat, cat, sleep): this one must never
// touch its own mount (see mount).
func TestServeSession(t *testing.T) {
	testenv.FUSE(t)
	p := fixture.Capture(t, t.TempDir(), "wh", fixture.WhiteoutImage())
	dir := t.TempDir()
	gc0, limit0 := gcPercent(), debug.SetMemoryLimit(-1)
	var a *archive.Archive
	var gcAtOpen int
	var limitAtOpen int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := fusefs.Serve(ctx, dir, func() (*archive.Archive, error) {
		gcAtOpen, limitAtOpen = gcPercent(), debug.SetMemoryLimit(-1)
		var err error
		a, err = archive.Open(p)
		return a, err
	}, fusefs.Options{GCPercent: 40, MemoryFloor: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	t.Cleanup(func() {
		if fusefs.IsMountpoint(dir) {
			fusefs.Unmount(dir)
		}
	})
	if gcAtOpen != 40 || limitAtOpen != 64<<20 {
		t.Errorf("at open: GC percent %d, memory limit %d; want 40 and %d", gcAtOpen, limitAtOpen, 64<<20)
	}
	if out, err := exec.Command("cat", filepath.Join(dir, "images/wh_1/rootfs/etc/shadow")).Output(); err != nil || string(out) != "new-shadow\n" {
		t.Fatalf("cat through the session: %q %v", out, err)
	}
	// A process whose working directory is in the mount makes it busy.
	sitter := exec.Command("sleep", "60")
	sitter.Dir = filepath.Join(dir, "images")
	if err := sitter.Start(); err != nil {
		t.Fatal(err)
	}
	defer sitter.Process.Kill()
	ended := make(chan struct{})
	go func() { s.Wait(); close(ended) }()
	cancel()
	// Each try of go-fuse's Server.Unmount itself retries for about
	// 0.3 s: after 1.5 s a session that detached after a few tries has.
	time.Sleep(1500 * time.Millisecond)
	select {
	case <-ended:
		t.Fatal("the session ended while a process sat in the mount")
	default:
	}
	if !fusefs.IsMountpoint(dir) {
		t.Fatal("the busy mount was detached before the retries ran out")
	}
	sitter.Process.Kill()
	sitter.Wait()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the session did not end within 5 s of the mount's last user leaving")
	}
	if fusefs.IsMountpoint(dir) {
		t.Error("still mounted after the session ended")
	}
	if gc, limit := gcPercent(), debug.SetMemoryLimit(-1); gc != gc0 || limit != limit0 {
		t.Errorf("after the session: GC percent %d, memory limit %d; want %d and %d as before", gc, limit, gc0, limit0)
	}
	if err := s.Unmount(); err != nil {
		t.Errorf("Unmount of an ended session: %v", err)
	}
}

// TestServeFailsClean: when the archive cannot be opened, or the mount
// point is busy, Serve returns the error, mounts nothing, and leaves the
// runtime's settings as they were.
func TestServeFailsClean(t *testing.T) {
	testenv.FUSE(t)
	p := fixture.Capture(t, t.TempDir(), "wh", fixture.WhiteoutImage())
	gc0, limit0 := gcPercent(), debug.SetMemoryLimit(-1)
	o := fusefs.Options{GCPercent: 40, MemoryFloor: 64 << 20}
	dir := t.TempDir()
	bad := errors.New("no archive here")
	if _, err := fusefs.Serve(context.Background(), dir, func() (*archive.Archive, error) { return nil, bad }, o); !errors.Is(err, bad) {
		t.Errorf("open failing: %v", err)
	}
	full := t.TempDir()
	exec.Command("touch", filepath.Join(full, "x")).Run()
	var a *archive.Archive
	_, err := fusefs.Serve(context.Background(), full, func() (*archive.Archive, error) {
		var err error
		a, err = archive.Open(p)
		return a, err
	}, o)
	if a != nil {
		a.Close()
	}
	if !errors.Is(err, fusefs.ErrBusy) || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("non-empty mount point: %v", err)
	}
	if fusefs.IsMountpoint(dir) || fusefs.IsMountpoint(full) {
		t.Error("a failed Serve left a mount")
	}
	if gc, limit := gcPercent(), debug.SetMemoryLimit(-1); gc != gc0 || limit != limit0 {
		t.Errorf("after failing: GC percent %d, memory limit %d; want %d and %d", gc, limit, gc0, limit0)
	}
}

// TestUmountWaitsForServer: UnmountAmber returns only once the session
// that served the mount is closed (cmd/amber closes it after writing the
// "unmounted" custody event), not as soon as the kernel lets go; a mount
// point nothing holds is not waited on.
func TestUmountWaitsForServer(t *testing.T) {
	testenv.FUSE(t)
	p := fixture.Capture(t, t.TempDir(), "wh", fixture.WhiteoutImage())
	dir := t.TempDir()
	a, err := archive.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	s, err := fusefs.Serve(context.Background(), dir, func() (*archive.Archive, error) { return a, nil }, fusefs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if fusefs.IsMountpoint(dir) {
			fusefs.Unmount(dir)
		}
	})
	const hold = 400 * time.Millisecond
	go func() {
		s.Wait()
		time.Sleep(hold) // the custody event being written
		s.Close()
	}()
	start := time.Now()
	if err := fusefs.UnmountAmber(dir, false); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < hold {
		t.Errorf("UnmountAmber returned after %v, before the session was closed (%v after it ended)", took, hold)
	}
	start = time.Now()
	if out, err := exec.Command("mount", "-t", "tmpfs", "none", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("mounting a tmpfs: %v %s", err, out)
		}
		t.Logf("no tmpfs mount (%v): the unheld case is not checked", err)
		return
	}
	if err := fusefs.UnmountAmber(dir, true); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a mount nothing holds took %v to unmount", took)
	}
}
