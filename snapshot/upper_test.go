//go:build linux

package snapshot

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/manifest"
)

const hostSecret = "HOST-SECRET-not-in-the-container"

// hostDir is a directory outside the upper directory, as a host's would
// be: sub/inner and sub/host-only, both secret, and a user xattr on sub.
func hostDir(t *testing.T) string {
	t.Helper()
	h := t.TempDir()
	os.MkdirAll(filepath.Join(h, "sub"), 0o755)
	os.WriteFile(filepath.Join(h, "sub", "inner"), []byte(hostSecret), 0o644)
	os.WriteFile(filepath.Join(h, "sub", "host-only"), []byte(hostSecret), 0o644)
	os.WriteFile(filepath.Join(h, "z-file"), []byte(hostSecret), 0o644)
	unix.Setxattr(filepath.Join(h, "sub"), "user.where", []byte(hostSecret), 0)
	return h
}

// noHostBytes fails t if anything of the host directory reached the
// layer: its secret as content or as an xattr, or a name only it has.
func noHostBytes(t *testing.T, files map[string][]byte, raw []byte) {
	t.Helper()
	for name, c := range files {
		if bytes.Contains(c, []byte(hostSecret)) || strings.Contains(name, "host-only") {
			t.Errorf("the layer holds %s from the host directory: %q", name, c)
		}
	}
	if bytes.Contains(raw, []byte(hostSecret)) {
		t.Errorf("the layer's bytes hold the host directory's secret")
	}
}

// TestUpperRouteDirSwappedForSymlink: while the capture is inside a
// directory of the upper directory (reading its first file), the
// container renames that directory away and puts a symlink to a host
// directory in its place. The rest of the directory is read from the
// directory that was opened (it was moved, not changed), and nothing of the
// host directory is read. Before, the names under it were resolved by path,
// through the symlink, so the host's sub/ (its files and xattrs) was stored
// as the container's.
func TestUpperRouteDirSwappedForSymlink(t *testing.T) {
	h := hostDir(t)
	u := t.TempDir()
	data := filepath.Join(u, "data")
	os.MkdirAll(filepath.Join(data, "sub"), 0o755)
	os.WriteFile(filepath.Join(data, "a-file"), []byte("a\n"), 0o644)
	os.WriteFile(filepath.Join(data, "sub", "inner"), []byte("container\n"), 0o644)
	os.WriteFile(filepath.Join(data, "z-file"), []byte("z\n"), 0o644)
	unix.Setxattr(filepath.Join(data, "sub"), "user.where", []byte("container"), 0)
	swapped := false
	readHook = func(path string, pass int) {
		if filepath.Base(path) != "a-file" || swapped {
			return
		}
		swapped = true
		if err := os.Rename(data, filepath.Join(u, "moved")); err != nil {
			t.Error(err)
		}
		if err := os.Symlink(h, data); err != nil {
			t.Error(err)
		}
	}
	defer func() { readHook = nil }()
	files, raw, _ := readLayerRaw(t, u)
	if !swapped {
		t.Fatal("the hook never ran")
	}
	noHostBytes(t, files, raw)
	for name, want := range map[string]string{"data/a-file": "a\n", "data/sub/inner": "container\n", "data/z-file": "z\n"} {
		if string(files[name]) != want {
			t.Errorf("%s: %q, want %q (the directory as opened)", name, files[name], want)
		}
	}
}

// TestUpperRouteSwappedAfterLstat: between the lstat that found an entry
// and the reads of it, the container replaces a directory by a symlink to
// a host directory, or a regular file by a FIFO (whose open would wait for
// a writer forever), by a device node (the host's devices: here
// /dev/urandom's numbers) or by nothing. Nothing is followed and no
// device or FIFO opened: the directory is recorded as vanished, the file
// replaced as unreadable (zeros), the deleted one as vanished, and the
// capture goes on.
func TestUpperRouteSwappedAfterLstat(t *testing.T) {
	h := hostDir(t)
	for _, kind := range []string{"symlink", "fifo", "device", "deleted"} {
		t.Run(kind, func(t *testing.T) {
			u := t.TempDir()
			os.MkdirAll(filepath.Join(u, "data", "sub"), 0o755)
			os.WriteFile(filepath.Join(u, "data", "sub", "inner"), []byte("container\n"), 0o644)
			victim := filepath.Join(u, "m-file")
			os.WriteFile(victim, bytes.Repeat([]byte("c"), 4096), 0o644)
			os.WriteFile(filepath.Join(u, "z-after"), []byte("after\n"), 0o644)
			statHook = func(path string) {
				var err error
				switch {
				case kind == "symlink" && path == filepath.Join(u, "data"):
					if err = os.Rename(path, filepath.Join(u, "moved")); err == nil {
						err = os.Symlink(h, path)
					}
				case kind == "fifo" && path == victim:
					if err = os.Remove(path); err == nil {
						err = unix.Mkfifo(path, 0o644)
					}
				case kind == "deleted" && path == victim:
					err = os.Remove(path)
				case kind == "device" && path == victim:
					if err = os.Remove(path); err == nil {
						err = unix.Mknod(path, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 9)))
					}
				}
				if err != nil {
					t.Errorf("swapping %s: %v", path, err)
				}
			}
			defer func() { statHook = nil }()
			done := make(chan struct{})
			var files map[string][]byte
			var raw []byte
			var anomalies []manifest.Anomaly
			go func() {
				defer close(done)
				files, raw, anomalies = readLayerRaw(t, u)
			}()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				// Let the blocked open return so the test can end.
				if f, err := os.OpenFile(victim, os.O_WRONLY, 0); err == nil {
					f.Close()
				}
				<-done
				t.Fatal("the capture waited on the FIFO put in a file's place")
			}
			noHostBytes(t, files, raw)
			if string(files["z-after"]) != "after\n" {
				t.Errorf("the capture did not go on past the swap: %q", files["z-after"])
			}
			switch kind {
			case "symlink":
				if _, ok := files["data/"]; ok || files["data/sub/inner"] != nil || anomaly(anomalies, "data", "vanished") == nil {
					t.Errorf("data replaced by a symlink before its open: want it left out as vanished; entries %v, anomalies %+v", keys(files), anomalies)
				}
			case "deleted":
				if _, ok := files["m-file"]; ok || anomaly(anomalies, "m-file", "vanished") == nil {
					t.Errorf("m-file deleted after its lstat: want it left out as vanished; entries %v, anomalies %+v", keys(files), anomalies)
				}
			default:
				c, ok := files["m-file"]
				if !ok || len(c) != 4096 || bytes.Count(c, []byte{0}) != 4096 || anomaly(anomalies, "m-file", "unreadable") == nil {
					t.Errorf("m-file replaced by a %s before its open: want 4096 zeros, flagged unreadable; got %d bytes (%d zeros), anomalies %+v",
						kind, len(c), bytes.Count(c, []byte{0}), anomalies)
				}
			}
		})
	}
}

func anomaly(anomalies []manifest.Anomaly, p, kind string) *manifest.Anomaly {
	for i, a := range anomalies {
		if a.Path == p && a.Kind == kind {
			return &anomalies[i]
		}
	}
	return nil
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
