//go:build linux

package dockerroot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// notRunning is the answer of every call that needs the engine itself.
func (s *Store) notRunning() error {
	return &engine.Unavailable{Why: "the engine is not running (read offline from " + s.root + ")"}
}

// Changes has no engine to ask: the capture's comparison stands alone.
func (s *Store) Changes(ctx context.Context, id string) ([]engine.Change, error) {
	return nil, s.notRunning()
}

// Export has no engine to ask.
func (s *Store) Export(ctx context.Context, id string) (io.ReadCloser, error) {
	return nil, s.notRunning()
}

// CopyFrom has no engine to ask.
func (s *Store) CopyFrom(ctx context.Context, id, p string) (io.ReadCloser, error) {
	return nil, s.notRunning()
}

// Pause: nothing runs here.
func (s *Store) Pause(ctx context.Context, id string) error {
	return fmt.Errorf("container %s cannot be paused: %w", id, s.notRunning())
}

// Unpause: nothing was paused.
func (s *Store) Unpause(ctx context.Context, id string) error { return engine.ErrNotPaused }

// UpperDirs returns the container's read-write layer and, below it, its
// init layer (hosts, resolv.conf, /dev: part of its filesystem as docker
// export shows it), as the layer store records them
// (layerdb/mounts/<id>/mount-id, init-id): overlay2/<mount-id>/diff and
// overlay2/<mount-id>-init/diff, real directories of the data root.
func (s *Store) UpperDirs(c *engine.Container) ([]string, error) {
	if err := s.needOverlay2(); err != nil {
		return nil, err
	}
	if !hex64.MatchString(c.ID) {
		return nil, engine.Claimf("container ID %q is not 64 hex digits", c.ID)
	}
	mounts := path.Join("image", s.driver, "layerdb/mounts", c.ID)
	mid, err := s.readID(path.Join(mounts, "mount-id"), false)
	if errors.Is(err, os.ErrNotExist) {
		return nil, &engine.Unavailable{Why: "the layer store has no read-write layer for container " + c.ID}
	}
	if err != nil {
		return nil, err
	}
	upper, err := s.realDir(path.Join("overlay2", mid, "diff"))
	if err != nil {
		return nil, fmt.Errorf("container %s's upper directory: %w", c.ID, err)
	}
	dirs := []string{upper}
	iid, err := s.readFile(path.Join(mounts, "init-id"), maxSmall)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return dirs, nil
	case err != nil:
		return nil, err
	case string(iid) != mid+"-init":
		return nil, engine.Claimf("%s/%s/init-id holds %q, not %s-init: refused", s.real, mounts, trunc(string(iid)), mid)
	}
	init, err := s.realDir(path.Join("overlay2", mid+"-init", "diff"))
	if err != nil {
		return nil, fmt.Errorf("container %s's init layer: %w", c.ID, err)
	}
	return append(dirs, init), nil
}

// VolumeDir returns the real path of the named volume's data,
// volumes/<name>/_data in the data root. source, the dead host's path,
// is not read.
func (s *Store) VolumeDir(name, source string) (string, error) {
	if name == "" || name == "." || name == ".." || len(name) > 255 || containsSlash(name) {
		return "", engine.Claimf("volume name %q is not one path element: refused", trunc(name))
	}
	d, err := s.realDir(path.Join("volumes", name, "_data"))
	if err != nil {
		return "", fmt.Errorf("volume %s: %w", name, err)
	}
	return d, nil
}

func containsSlash(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' || s[i] == 0 {
			return true
		}
	}
	return false
}
