package main

import (
	"fmt"
	"runtime"
)

// needsLinux refuses, on any system but Linux, a command that only works
// there (FUSE, an overlay upper directory, /proc), saying why and what
// works instead: examining an archive and capturing image files work on
// any system.
func needsLinux(command, why string) error { return needsLinuxOn(runtime.GOOS, command, why) }

func needsLinuxOn(goos, command, why string) error {
	if goos == "linux" {
		return nil
	}
	return fmt.Errorf("amber %s %w (%s); this is %s: here amber verify, ls, cat, diff, extract and capture image work",
		command, errNeedsLinux, why, goos)
}
