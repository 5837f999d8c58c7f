package main

// The mount and umount commands' work: FUSE, umount2 and /proc/self/mountinfo
// are Linux's (mount_other.go says so elsewhere).

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/archive/cgozstd"
	"github.com/amber-forensics/amber/fusefs"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot"
)

// rebasedNote says how a mount with --rebase-links shows symlinks.
const rebasedNote = "symlinks are rebased: readlink shows each target resolved inside its view, not as captured ('amber ls' shows the captured targets)"

// readyFDEnv names the file descriptor on which a background mount tells
// its parent that it is ready (or why it failed).
const readyFDEnv = "AMBER_MOUNT_READY_FD"

// runUmount unmounts dir if it is an amber mount, or whatever is there
// with force.
func (e *env) runUmount(dir string, force bool) error {
	fstype, source, ok := fusefs.MountAt(dir)
	if !ok {
		return fmt.Errorf("%w: %s is not a mount point", os.ErrNotExist, dir)
	}
	if !fusefs.IsAmberMount(fstype, source) && !force {
		return fmt.Errorf("%w: %s is a %s mount of %s; 'amber umount --force %s' unmounts it anyway", errForeignMount,
			escapeName(dir), escapeName(fstype), escapeName(source), escapeName(dir))
	}
	if err := fusefs.Unmount(dir); err != nil {
		return err
	}
	if !fusefs.WaitUnmounted(dir, 5*time.Second) {
		return fmt.Errorf("%s is still mounted", dir)
	}
	fmt.Fprintf(e.stdout, "unmounted %s\n", dir)
	return nil
}

func (e *env) runMount(o *mountOptions, archive, dir string) error {
	if o.background && os.Getenv(readyFDEnv) == "" {
		return e.mountBackground(archive, dir, o.rebaseLinks)
	}
	ready := func(err error) {}
	if fd := os.Getenv(readyFDEnv); fd != "" {
		var n int
		fmt.Sscan(fd, &n)
		pipe := os.NewFile(uintptr(n), "ready")
		ready = func(err error) {
			if err != nil {
				fmt.Fprintf(pipe, "%d %v\n", exitCode(err), err)
			} else {
				fmt.Fprintln(pipe, "0 ok")
			}
			pipe.Close()
		}
	}
	logw := e.stderr
	if o.logFile != "" {
		lf, err := os.OpenFile(o.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			ready(err)
			return fmt.Errorf("mount log: %w", err)
		}
		defer lf.Close()
		logw = lf
	}
	// A mount may run for days over any archive: collect garbage sooner
	// than Go's default (which lets the heap reach twice what is live), so
	// resident memory stays near the frame cache and the live inodes.
	debug.SetGCPercent(40)
	// and a soft ceiling, so freed memory goes back to the system, raised
	// with what is live (a large index, many inodes): a fixed
	// ceiling under the live heap makes the collector run without pause.
	stopLimit := adaptMemoryLimit(96<<20, time.Second)
	defer stopLimit()
	// A plain docker-save tarball or OCI layout is indexed into a
	// temporary archive, removed at unmount. It is a view, not evidence:
	// nothing goes into a custody log.
	a, plain, closeArchive, err := snapshot.OpenAny(e.ctx, archive, manifest.Tool{Name: "amber", Version: version}, e.args, snapshot.Options{Encoder: cgozstd.Encoder()})
	if err != nil {
		ready(err)
		return err
	}
	defer closeArchive()
	if plain {
		e.notePlain(archive)
		o.noLog = true
	}
	absDir, _ := filepath.Abs(dir)
	// A log line names evidence (a path of the archive): escaped.
	server, err := fusefs.Mount(a, dir, fusefs.Options{AllowOther: o.allowOther, Debug: o.debug, RebaseLinks: o.rebaseLinks,
		Log: func(s string) {
			fmt.Fprintf(logw, "%s amber: %s\n", time.Now().UTC().Format(time.RFC3339), escapeName(s))
		}})
	if err != nil {
		ready(err)
		return err
	}
	if !o.noLog {
		details := map[string]string{"mountpoint": absDir, "pid": fmt.Sprint(os.Getpid()), "tool": "amber " + version}
		if o.rebaseLinks {
			details["rebase_links"] = "true"
		}
		e.custodyEvent(archive, a, "mounted", details)
	}
	ready(nil)
	if os.Getenv(readyFDEnv) == "" {
		fmt.Fprintf(e.stderr, "mounted %s at %s (read-only); Ctrl-C or 'amber umount %s' to unmount\n", archive, dir, dir)
		if o.rebaseLinks {
			fmt.Fprintln(e.stderr, rebasedNote)
		}
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	done := make(chan struct{})
	go func() { server.Wait(); close(done) }()
	select {
	case <-done: // unmounted from outside (amber umount, fusermount -u)
	case <-sig:
		// A shell sitting in the mount makes it busy: retry, then detach
		// lazily so the process can still exit cleanly.
		var uerr error
		for i := 0; i < 20; i++ {
			if uerr = server.Unmount(); uerr == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if uerr != nil {
			fusefs.Unmount(dir)
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	}
	if p := os.Getenv("AMBER_HEAPPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	if !o.noLog {
		e.custodyEvent(archive, a, "unmounted", map[string]string{"mountpoint": absDir, "pid": fmt.Sprint(os.Getpid())})
	}
	return nil
}

// mountBackground starts "amber mount" again as a detached child and
// returns once the child reports the mount ready, or its error.
func (e *env) mountBackground(archivePath, dir string, rebased bool) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	var args []string
	for _, a := range os.Args[1:] {
		if a != "--background" {
			args = append(args, a)
		}
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	// The child outlives this process: it must not hold on to a pipe that
	// someone waits on. A terminal it may keep.
	if isTerminal(e.stderr) {
		cmd.Stderr = os.Stderr
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// The archive's tail is read from disk while the child starts.
	archive.WarmOpen(archivePath)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the mount: %w", err)
	}
	w.Close()
	b := make([]byte, 4096)
	n, _ := r.Read(b)
	msg := strings.TrimSpace(string(b[:n]))
	if msg == "" {
		cmd.Wait()
		return errors.New("the background mount exited without a word")
	}
	code, text, _ := strings.Cut(msg, " ")
	if code != "0" {
		cmd.Wait()
		return &childError{code: code, msg: text}
	}
	pid := cmd.Process.Pid
	cmd.Process.Release()
	fmt.Fprintf(e.stdout, "mounted %s at %s (pid %d); 'amber umount %s' to unmount\n", archivePath, dir, pid, dir)
	if rebased {
		fmt.Fprintln(e.stdout, rebasedNote)
	}
	return nil
}

// adaptMemoryLimit keeps the runtime's soft memory limit at floor, or at
// the live heap plus an eighth and 8 MiB when that is more, checking
// every period.
func adaptMemoryLimit(floor int64, period time.Duration) (stop func()) {
	debug.SetMemoryLimit(floor)
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	done := make(chan struct{})
	go func() {
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
	return func() { close(done) }
}
