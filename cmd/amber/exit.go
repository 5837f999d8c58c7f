package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/amber-forensics/amber/attest"
	"github.com/amber-forensics/amber/extract"
	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/fusefs"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot"
	"github.com/amber-forensics/amber/snapshot/registry"
	"github.com/amber-forensics/amber/view"
)

// Exit codes. Never reuse a number for a different meaning: scripts and
// examiners' notes depend on them.
const (
	exitOK           = 0
	exitError        = 1   // the operation failed (capture error, I/O error)
	exitUsage        = 2   // bad command line
	exitTampered     = 3   // integrity check failed: the evidence is altered or damaged
	exitUnreadable   = 4   // not an amber archive, unsupported version, cannot be opened
	exitNotFound     = 5   // a view path, artifact or source that does not exist
	exitSource       = 6   // the source is not a valid image (bad digest, bad manifest)
	exitBusy         = 7   // the mount point is in use, or a stale mount (amber umount clears it)
	exitEngine       = 8   // the Docker engine cannot be reached, or failed
	exitProcAccess   = 9   // the container's processes cannot be read in /proc (run as root on the engine's host)
	exitGone         = 10  // the container stopped existing during the capture
	exitNotLocal     = 11  // asked for something only the engine's own host can do (--route upperdir on a remote engine)
	exitExists       = 12  // extract: the destination exists; push, capture -o docker://: the tag exists (--force replaces it); sign: the key signed already, or the timestamp file exists
	exitIncomplete   = 13  // extract: entries the destination refused (named) were skipped; the rest was extracted and recorded
	exitForeignMount = 14  // umount: the mount point is not an amber mount (--force unmounts it)
	exitNeedsLinux   = 15  // mount, umount and capture container (and so memory) run on Linux only; this build is for another system
	exitAuth         = 16  // a registry refused the credentials (401/403): the message names the registry and the user; check the Docker config's login for it
	exitInterrupted  = 130 // stopped by SIGINT/SIGTERM; nothing partial left behind
)

// usageError marks command-line mistakes.
type usageError struct{ error }

// exitCode maps an error to its exit code.
func exitCode(err error) int {
	var ue usageError
	var ce *childError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ce):
		var n int
		fmt.Sscan(ce.code, &n)
		return n
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.Is(err, fileindex.ErrTempSpace):
		return exitError // this machine's temp space, whatever the cause
	case errors.Is(err, errTampered), errors.Is(err, manifest.ErrCorrupt), errors.Is(err, manifest.ErrChainBroken), errors.Is(err, fileindex.ErrBadIndex):
		return exitTampered
	case errors.Is(err, manifest.ErrNotArchive), errors.Is(err, manifest.ErrUnsupportedVersion):
		return exitUnreadable
	case errors.Is(err, registry.ErrAltered):
		return exitTampered
	case errors.Is(err, extract.ErrExists), errors.Is(err, registry.ErrExists), errors.Is(err, attest.ErrExists):
		return exitExists
	case errors.Is(err, extract.ErrIncomplete):
		return exitIncomplete
	case errors.Is(err, fusefs.ErrForeign):
		return exitForeignMount
	case errors.Is(err, registry.ErrAuth):
		return exitAuth
	case errors.Is(err, registry.ErrRef):
		return exitUsage
	case errors.Is(err, registry.ErrNotFound):
		return exitNotFound
	case errors.Is(err, errNeedsLinux):
		return exitNeedsLinux
	case errors.Is(err, fusefs.ErrBusy), errors.Is(err, fusefs.ErrStale):
		return exitBusy
	case errors.Is(err, snapshot.ErrContainerGone):
		return exitGone
	case errors.Is(err, snapshot.ErrProcAccess):
		return exitProcAccess
	case errors.Is(err, snapshot.ErrNotLocal):
		return exitNotLocal
	case errors.Is(err, snapshot.ErrNoSuchObject):
		return exitNotFound
	case errors.Is(err, snapshot.ErrEngine):
		return exitEngine
	case errors.Is(err, view.ErrNotFound), errors.Is(err, manifest.ErrNotFound), errors.Is(err, os.ErrNotExist):
		return exitNotFound
	case errors.Is(err, snapshot.ErrSource), errors.Is(err, snapshot.ErrDigestMismatch), errors.Is(err, snapshot.ErrBomb), errors.Is(err, fileindex.ErrIndexTooBig),
		errors.Is(err, fileindex.ErrTooSparse):
		return exitSource
	}
	return exitError
}

// interrupted is an interruption that says what it left behind, for the
// line report prints: a registry has no output name, and what an
// interrupted push leaves there is the user's to know.
type interrupted struct {
	err  error // wraps context.Canceled
	left string
}

func (i *interrupted) Error() string { return i.err.Error() }
func (i *interrupted) Unwrap() error { return i.err }

// interruptedAt tells err, when it is an interruption (a signal came,
// whatever then failed), with left; any other err as it is.
func interruptedAt(e *env, err error, left string) error {
	if err == nil || (!errors.Is(err, context.Canceled) && e.ctx.Err() == nil) {
		return err
	}
	if !errors.Is(err, context.Canceled) {
		err = fmt.Errorf("%w: %v", context.Canceled, err)
	}
	return &interrupted{err: err, left: left}
}

var (
	errTampered   = errors.New("verification failed")
	errNeedsLinux = errors.New("needs Linux")
)

// report prints err, escaped: an error names what failed, and that is
// often evidence (a tar member, a tag, a path of the image).
func report(stderr io.Writer, err error) int {
	code := exitCode(err)
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "amber: %s\nRun 'amber --help' for usage.\n", escapeName(err.Error()))
		} else if code == exitInterrupted {
			var in *interrupted
			if errors.As(err, &in) {
				fmt.Fprintf(stderr, "amber: interrupted; %s\n", escapeName(in.left))
			} else {
				fmt.Fprintln(stderr, "amber: interrupted; nothing was left at the output name")
			}
		} else {
			fmt.Fprintf(stderr, "amber: %s\n", escapeName(err.Error()))
		}
	}
	return code
}
