//go:build !linux

package tmpfile

import "os"

func OpenUnnamed(string, os.FileMode) (*os.File, error) { return nil, nil }

func LinkUnnamed(*os.File, string) error { return os.ErrInvalid }

func LockPartial(*os.File) bool { return false }

// TempFile creates a temporary file in dir; elsewhere than Linux it keeps
// its name until the caller removes it.
func TempFile(dir, pattern string) (*os.File, error) { return os.CreateTemp(dir, pattern) }

// ReopenPath is a path that opens f again.
func ReopenPath(f *os.File) string { return f.Name() }
