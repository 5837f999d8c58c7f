//go:build !linux

package bufpool

import "os"

func StartWriteback(f *os.File, off, n int64) {}

func WillNeed(f *os.File, off, n int64) {}
