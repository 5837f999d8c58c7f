package fusefs

import "errors"

// Sentinel errors of mounting. They are declared on every OS (the rest of
// the package is Linux only) so that cmd/amber maps them to exit codes in
// one place whatever it is built for.
var (
	ErrStale = errors.New("fusefs: stale mount")
	ErrBusy  = errors.New("fusefs: mount point in use")
	// ErrForeign: UnmountAmber refused a mount that is not amber's.
	ErrForeign = errors.New("not an amber mount")
)
