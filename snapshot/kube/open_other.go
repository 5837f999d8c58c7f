//go:build !linux

package kube

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// openBeneath opens rel under dir when, its links resolved, it still lies
// beneath dir (without openat2 a link swapped in after the check is not
// caught: amber captures on Linux).
func openBeneath(dir, rel string) (*os.File, error) {
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("the pod's log directory: %w", err)
	}
	real, err := filepath.EvalSymlinks(filepath.Join(dir, rel))
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	if _, ok := beneath(realDir, real); !ok {
		return nil, engine.Claimf("the log file %s leads out of the pod's log directory %s", rel, dir)
	}
	return os.Open(real)
}
