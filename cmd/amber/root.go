package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

type env struct {
	ctx    context.Context
	stdout io.Writer
	stderr io.Writer
	args   []string // the whole command line, for the custody record
	// remote are the registry flags of the command run (--insecure,
	// --cache), for an archive given as docker://REF.
	remote remoteFlags
}

func run(args []string) int {
	// AMBER_CPUPROFILE=file writes a CPU profile: how the benchmarks'
	// figures are explained.
	if p := os.Getenv("AMBER_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				defer pprof.StopCPUProfile()
			}
		}
	}
	// AMBER_MEMPROFILE=file writes a heap profile at exit (alloc_space
	// shows what allocated most).
	if p := os.Getenv("AMBER_MEMPROFILE"); p != "" {
		defer func() {
			runtime.GC()
			if f, err := os.Create(p); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	if p := os.Getenv("AMBER_TRACE"); p != "" {
		if f, err := os.Create(p); err == nil {
			if trace.Start(f) == nil {
				defer trace.Stop()
			}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{ctx: ctx, stdout: os.Stdout, stderr: os.Stderr, args: append([]string{os.Args[0]}, args...)}
	return e.exec(args)
}

func (e *env) exec(args []string) int {
	root := e.newRoot()
	root.SetArgs(args)
	err := root.ExecuteContext(e.ctx)
	if err != nil && e.ctx.Err() != nil && !errors.Is(err, context.Canceled) {
		// A signal came first: what failed after it (an engine stream cut
		// off mid-read) failed because of it.
		err = fmt.Errorf("%w: %v", context.Canceled, err)
	}
	return report(e.stderr, err)
}

func (e *env) newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "amber",
		Short: "Capture container evidence into sealed archives and examine it",
		Long: `amber preserves container evidence "in amber": it captures containers
(filesystem, metadata, logs, process memory) and images into sealed, hashed,
chain-of-custody archives (NAME.tar.zst), verifies them, and shows their
contents in the mount layout, mounted read-only or without mounting.

Exit codes: 0 ok, 1 error, 2 usage, 3 tampered or damaged evidence,
4 not an amber archive or unsupported version, 5 not found (archive path,
container, image), 6 bad source, 7 mount point busy or stale, 8 Docker
engine unreachable or failing, 9 /proc of the container unreadable,
10 container gone during the capture, 11 needs the engine's own host,
12 extract destination or registry tag exists (--force), 13 extract
incomplete (entries the file system refused, named), 14 not an amber
mount (umount --force), 15 needs Linux, 16 a registry refused the
credentials, 130 interrupted.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(e.newCaptureCmd(), e.newVerifyCmd(), e.newLsCmd(), e.newCatCmd(), e.newLogCmd(), e.newMountCmd(), e.newUmountCmd())
	root.AddCommand(e.newConfigCmds()...)
	root.AddCommand(e.newTimelineCmd(), e.newDiffCmd(), e.newExtractCmd(), e.newPsCmd(), e.newHostCmd())
	root.AddCommand(e.newLayersCmds()...)
	root.AddCommand(e.newReportCmd())
	root.AddCommand(e.newBrowseCmd())
	root.AddCommand(e.newExportCmd())
	for _, c := range root.Commands() {
		// Every command that opens an archive reads docker://REF too
		// (capture keeps files: its sidecars are local).
		if strings.Contains(c.Use, "ARCHIVE") {
			e.addRemoteFlags(c)
		}
	}
	// push and pull name an archive file and a registry reference: their
	// flags are their own (no --cache: they read no frames).
	root.AddCommand(e.newPushCmd(), e.newPullCmd())
	root.AddCommand(e.newSignCmd(), e.newKeygenCmd())
	return root
}

// exactArgs is cobra.ExactArgs returning a usage error.
func argsRange(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || (max >= 0 && len(args) > max) {
			if min == max {
				return usageError{fmt.Errorf("%s takes %d argument(s), got %d", cmd.CommandPath(), min, len(args))}
			}
			return usageError{fmt.Errorf("%s: wrong number of arguments (%d)", cmd.CommandPath(), len(args))}
		}
		return nil
	}
}

// isTerminal reports whether f is a terminal, for progress output.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
