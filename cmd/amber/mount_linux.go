package main

// The mount and umount commands' work: FUSE, umount2 and /proc/self/mountinfo
// are Linux's (mount_other.go says so elsewhere).

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/archive/cgozstd"
	"github.com/amber-forensics/amber/fusefs"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot"
	"github.com/amber-forensics/amber/snapshot/registry"
)

// rebasedNote says how a mount with --rebase-links shows symlinks.
const rebasedNote = "symlinks are rebased: readlink shows each target resolved inside its view, not as captured ('amber ls' shows the captured targets)"

// readyFDEnv names the file descriptor on which a background mount tells
// its parent that it is ready (or why it failed).
const readyFDEnv = "AMBER_MOUNT_READY_FD"

// runUmount unmounts dir if it is an amber mount, or whatever is there
// with force.
func (e *env) runUmount(dir string, force bool) error {
	if err := fusefs.UnmountAmber(dir, force); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "unmounted %s\n", dir)
	return nil
}

func (e *env) runMount(o *mountOptions, archivePath, dir string) error {
	if o.background && os.Getenv(readyFDEnv) == "" {
		return e.mountBackground(archivePath, dir, o.rebaseLinks)
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
	// A plain docker-save tarball or OCI layout is indexed into a
	// temporary archive, removed at unmount. It is a view, not evidence:
	// nothing goes into a custody log.
	var a *archive.Archive
	closeArchive := func() {}
	defer func() { closeArchive() }()
	// The custody events of evidence read from a registry go to a sidecar
	// under the cache (registry.Blob.CustodyBase).
	recordAt := archivePath
	open := func() (*archive.Archive, error) {
		if registry.IsRef(archivePath) {
			ra, blob, err := e.openRemote(archivePath)
			if err != nil {
				return nil, err
			}
			if recordAt, err = blob.CustodyBase(); err != nil {
				ra.Close()
				return nil, err
			}
			a, closeArchive = ra, func() { ra.Close() }
			return a, nil
		}
		var plain bool
		var err error
		a, plain, closeArchive, err = snapshot.OpenAny(e.ctx, archivePath, manifest.Tool{Name: "amber", Version: version}, e.args, snapshot.Options{Encoder: cgozstd.Encoder()})
		if err != nil {
			closeArchive = func() {}
			return nil, err
		}
		if plain {
			e.notePlain(archivePath)
			o.noLog = true
		}
		return a, nil
	}
	absDir, _ := filepath.Abs(dir)
	// e.ctx ends at SIGINT or SIGTERM: the session then unmounts.
	session, err := fusefs.Serve(e.ctx, dir, open, fusefs.Options{
		AllowOther: o.allowOther, Debug: o.debug, RebaseLinks: o.rebaseLinks,
		// A log line names evidence (a path of the archive): escaped.
		Log: func(s string) {
			fmt.Fprintf(logw, "%s amber: %s\n", time.Now().UTC().Format(time.RFC3339), escapeName(s))
		},
		// Collect garbage sooner than Go's default (which lets the heap
		// reach twice what is live), so resident memory stays near the
		// frame cache and the live inodes, under a soft ceiling, so freed
		// memory goes back to the system.
		GCPercent: 40, MemoryFloor: 96 << 20,
	})
	if err != nil {
		ready(err)
		return err
	}
	// Released once the unmounted event below is written: amber umount
	// waits for it.
	defer session.Close()
	if !o.noLog {
		details := map[string]string{"mountpoint": absDir, "pid": fmt.Sprint(os.Getpid()), "tool": "amber " + version}
		if o.rebaseLinks {
			details["rebase_links"] = "true"
		}
		e.custodyEvent(recordAt, a, "mounted", details)
	}
	ready(nil)
	if os.Getenv(readyFDEnv) == "" {
		fmt.Fprintf(e.stderr, "mounted %s at %s (read-only); Ctrl-C or 'amber umount %s' to unmount\n", archivePath, dir, dir)
		if o.rebaseLinks {
			fmt.Fprintln(e.stderr, rebasedNote)
		}
	}
	session.Wait()
	if p := os.Getenv("AMBER_HEAPPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	if !o.noLog {
		e.custodyEvent(recordAt, a, "unmounted", map[string]string{"mountpoint": absDir, "pid": fmt.Sprint(os.Getpid())})
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
