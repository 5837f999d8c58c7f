//go:build !linux

package snapshot

import (
	"context"
	"fmt"

	"github.com/amber-forensics/amber/layers"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/engine"
)

// readSnapshot refuses: see errNeedsLinux.
func readSnapshot(ctx context.Context, rt engine.Runtime, id string, mounts []engine.SnapshotMount, pristine *layers.Stack, lf *layerFile, anomalies *[]manifest.Anomaly) error {
	return fmt.Errorf("mounting the container's snapshot: %w", errNeedsLinux)
}
