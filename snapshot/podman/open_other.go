//go:build !linux

package podman

import (
	"errors"
	"os"
)

// openBeneath needs Linux's openat2: Podman's storage is only read there.
func openBeneath(root, rel string, noatime bool) (*os.File, error) {
	return nil, errors.New("reading podman's storage needs Linux")
}

func dirBeneath(root, rel string) error {
	return errors.New("reading podman's storage needs Linux")
}
