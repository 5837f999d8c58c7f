//go:build !linux

package manifest

import "os"

func startWriteback(f *os.File, off, n int64) {}

func willNeed(f *os.File, off, n int64) {}
