package main

import (
	"bytes"
	"runtime"
	"testing"
)

// TestNeedsLinux: on another system, mount, umount and capture container
// refuse with exit 15 and a line naming the command, why, and what works
// there (the cross-builds in make lint compile those paths; this checks
// what they say). On Linux they go on.
func TestNeedsLinux(t *testing.T) {
	for _, goos := range []string{"darwin", "windows"} {
		err := needsLinuxOn(goos, "mount", "the mount is served through Linux's FUSE")
		var stderr bytes.Buffer
		if code := report(&stderr, err); code != exitNeedsLinux || exitNeedsLinux != 15 {
			t.Errorf("%s: exit %d, want 15 (%v)", goos, code, err)
		}
		want := "amber: amber mount needs Linux (the mount is served through Linux's FUSE); this is " + goos +
			": here amber verify, ls, cat, diff, extract and capture image work\n"
		if stderr.String() != want {
			t.Errorf("%s: said %q, want %q", goos, stderr.String(), want)
		}
	}
	if err := needsLinuxOn("linux", "mount", "FUSE"); err != nil {
		t.Errorf("linux: %v", err)
	}
	if err := needsLinux("capture container", "here"); (err == nil) != (runtime.GOOS == "linux") {
		t.Errorf("on %s: %v", runtime.GOOS, err)
	}
}
