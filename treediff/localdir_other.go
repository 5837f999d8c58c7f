//go:build !linux && !darwin

package treediff

import (
	"errors"
	"fmt"
)

// errNoUnixDir: comparing evidence with a local directory means comparing
// Unix modes, owners, device numbers and xattrs, which this system's file
// systems do not have; a diff full of made-up mode changes would mislead.
var errNoUnixDir = errors.New("comparing with a local directory needs Linux or macOS (this system has no Unix modes and owners to compare)")

// DirTree is a directory on local disk; on this system it cannot be opened.
type DirTree struct{}

// OpenDir refuses: see errNoUnixDir. Views of archives compare here as
// anywhere.
func OpenDir(p string) (*DirTree, error) { return nil, fmt.Errorf("%s: %w", p, errNoUnixDir) }

// Close releases nothing.
func (t *DirTree) Close() error { return nil }

// Root is never reached: OpenDir refused.
func (t *DirTree) Root() (*Node, error) { return nil, errNoUnixDir }

// ReadDir is never reached: OpenDir refused.
func (t *DirTree) ReadDir(*Node) ([]*Node, error) { return nil, errNoUnixDir }
