//go:build !linux

package snapshot

import (
	"errors"
	"fmt"

	"github.com/amber-forensics/amber/manifest"
)

// errRouteUnsupported: see upper.go (Linux).
var errRouteUnsupported = errors.New("overlay upper directory uses redirects or metacopy")

// errNeedsLinux: an overlay upper directory, a volume's directory and
// /proc are read with Linux's system calls (O_NOATIME, coarse clocks,
// overlay xattrs); amber captures containers on Linux only.
var errNeedsLinux = errors.New("capturing a container needs Linux")

// upperRoute refuses: see errNeedsLinux.
func upperRoute(dirs []string, overlay bool, lf *layerFile, anomalies *[]manifest.Anomaly) error {
	return fmt.Errorf("reading the container's layer directory: %w", errNeedsLinux)
}
