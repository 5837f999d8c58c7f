//go:build !linux

package podman

import (
	"context"
	"errors"
	"io"
	"os"
)

// openBeneath needs Linux's openat2: Podman's storage is only read there.
func openBeneath(root, rel string, noatime bool) (*os.File, error) {
	return nil, errors.New("reading podman's storage needs Linux")
}

func dirBeneath(root, rel string) error {
	return errors.New("reading podman's storage needs Linux")
}

// SaveImage needs Linux's openat2 to read the layers beneath their
// directories.
func (s *Storage) SaveImage(ctx context.Context, ref string) (io.ReadCloser, error) {
	return nil, errors.New("reading podman's storage needs Linux")
}
