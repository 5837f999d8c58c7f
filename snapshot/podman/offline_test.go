//go:build linux

package podman_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/podman"
)

// treeHashes is every file of dir: its path, type, mode, size and, for a
// regular file, its content's SHA-256 — what must not change when amber
// reads a dead host's storage.
func treeHashes(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %v %d mtime=%d.%d", p, fi.Mode(), fi.Size(), st.Mtim.Sec, st.Mtim.Nsec)
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			line += " " + hex.EncodeToString(sum[:])
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// saved reads a SaveImage stream: each member's SHA-256 by name.
func saved(t *testing.T, rc io.ReadCloser) map[string]string {
	t.Helper()
	defer rc.Close()
	out := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.New()
		if _, err := io.Copy(sum, tr); err != nil {
			t.Fatal(err)
		}
		out[h.Name] = hex.EncodeToString(sum.Sum(nil))
	}
}

// deadHost makes a dead host's root from a stopped Podman's graph root:
// root/data/storage is a read-only bind mount of it, and the default
// graph root root/var/lib/containers/storage a symbolic link with an
// absolute target, "/data/storage", to be resolved inside root (on the
// examiner's host it leads nowhere).
func deadHost(t *testing.T, graph string) string {
	t.Helper()
	root := t.TempDir()
	mnt := filepath.Join(root, "data/storage")
	for _, d := range []string{mnt, filepath.Join(root, "var/lib/containers"), filepath.Join(root, "etc")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("deadbox\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/data/storage", filepath.Join(root, "var/lib/containers/storage")); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "mount", "--bind", graph, mnt)
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	testenv.Run(t, "mount", "-o", "remount,bind,ro", mnt)
	return root
}

// TestOfflineStorage: a Podman container run and changed, the container
// stopped and the run root deleted (a dead host has none); its graph root
// read offline, through a read-only bind mount reached by an absolute
// symbolic link inside the host's root: the containers with the states
// libpod recorded, the image with its refs and size, the container's
// upper directory holding its changes, the logs, the image's layers with
// their diff_ids — and nothing in the storage changed.
func TestOfflineStorage(t *testing.T) {
	testenv.Root(t)
	testenv.Tool(t, "mount")
	save := testImage(t)
	p := newPodman(t)
	p.run("load", "-q", "-i", save)
	script := `cp -p /srv/keep /tmp/ref; printf 'changed\n' > /srv/keep; touch -r /tmp/ref /srv/keep; rm /tmp/ref
echo new > /srv/new; rm /srv/doomed; echo started; echo oops >&2; sleep 3600`
	id := p.run("run", "-d", "--name", "web", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
		"--log-driver", "k8s-file", "amber-podman-test:1", "sh", "-c", script)
	testenv.Shell(t, fmt.Sprintf(`for i in $(seq 100); do grep -q oops %q && exit 0; sleep 0.1; done; exit 1`,
		filepath.Join(p.root, "overlay-containers", id, "userdata", "ctr.log")))
	idle := p.run("create", "--name", "idle", "--network", "none", "amber-podman-test:1", "true")
	p.run("stop", "-t", "0", "web")
	imgID := p.run("image", "inspect", "-f", "{{.Id}}", "amber-podman-test:1")
	layerDir := p.run("image", "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", "amber-podman-test:1")
	if err := os.RemoveAll(p.runRoot); err != nil {
		t.Fatal(err)
	}

	root := deadHost(t, p.root)
	before := treeHashes(t, p.root)
	s, err := podman.OpenOffline(root, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	info := s.Info()
	if info.Runtime != "podman" || info.Host != "containers-storage-root:/var/lib/containers/storage" || !info.Local ||
		info.StorageDriver != "overlay" || info.Name != "deadbox" || info.Offline == nil || info.Offline.Root != root ||
		info.Offline.Mount != filepath.Join(root, "data/storage") || !strings.HasPrefix(info.Offline.Options, "ro") {
		t.Errorf("Info: %+v, offline %+v", info, info.Offline)
	}

	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]engine.Summary{}
	for _, c := range list {
		got[c.Name] = c
	}
	if w := got["web"]; w.ID != id || w.State != "exited" || w.Pid != 0 || w.Created == "" || w.Started == "" || w.Image != "localhost/amber-podman-test:1" {
		t.Errorf("web listed as %+v", w)
	}
	if c := got["idle"]; c.ID != idle || c.State != "created" || c.Created == "" || c.Started != "" {
		t.Errorf("idle listed as %+v", c)
	}
	imgs, err := s.ListImages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var img engine.ImageSummary
	for _, im := range imgs {
		if im.ID == "sha256:"+imgID {
			img = im
		}
	}
	if fmt.Sprint(img.Refs) != "[localhost/amber-podman-test:1]" || img.Size <= 0 || img.Created == "" {
		t.Errorf("image listed as %+v (all: %+v)", img, imgs)
	}

	c, err := s.Container(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != id || c.Running || c.Paused || c.Pid != 0 || c.State != "exited" || c.Image != "sha256:"+imgID {
		t.Errorf("container: %+v", c)
	}
	dirs, err := s.UpperDirs(c)
	if err != nil || len(dirs) != 1 {
		t.Fatalf("upper dirs %q: %v", dirs, err)
	}
	if !strings.HasPrefix(dirs[0], filepath.Join(root, "data/storage")+"/") {
		t.Errorf("upper dir %s is not inside the host's root", dirs[0])
	}
	if b, err := os.ReadFile(filepath.Join(dirs[0], "srv/new")); err != nil || string(b) != "new\n" {
		t.Errorf("srv/new in the upper dir: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dirs[0], "srv/keep")); err != nil || string(b) != "changed\n" {
		t.Errorf("srv/keep in the upper dir: %q %v", b, err)
	}
	var wh syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(dirs[0], "srv/doomed"), &wh); err != nil || wh.Mode&syscall.S_IFMT != syscall.S_IFCHR || wh.Rdev != 0 {
		t.Errorf("srv/doomed is no whiteout in the upper dir: %v", err)
	}
	ls, err := s.Logs(ctx, id, false)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := ls.Copy(&stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	ls.Close()
	if !strings.HasSuffix(stdout.String(), " started\n") || !strings.HasSuffix(stderr.String(), " oops\n") {
		t.Errorf("logs: %q %q", stdout.String(), stderr.String())
	}
	if err := s.Pause(ctx, id); err == nil {
		t.Error("Pause of a dead host's container did not fail")
	}
	if err := s.Unpause(ctx, id); !errors.Is(err, engine.ErrNotPaused) {
		t.Errorf("Unpause: %v", err)
	}
	if _, err := s.VolumeDir("", "/etc"); !errors.Is(err, engine.ErrEngineClaim) {
		t.Errorf("VolumeDir of a bind mount of the dead host's /etc: %v", err)
	}

	im, err := s.Image(ctx, "amber-podman-test:1")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := s.SaveImage(ctx, "amber-podman-test:1")
	if err != nil {
		t.Fatal(err)
	}
	if lf := s.LayerFindings("amber-podman-test:1"); len(lf) != 0 {
		t.Errorf("findings of an unchanged image: %+v", lf)
	}
	members := saved(t, rc)
	for _, d := range im.DiffIDs {
		hx := strings.TrimPrefix(d, "sha256:")
		if members["blobs/sha256/"+hx] != hx {
			t.Errorf("layer %s: saved as %q", d, members["blobs/sha256/"+hx])
		}
	}
	if after := treeHashes(t, p.root); after != before {
		t.Errorf("the dead host's storage changed while amber read it")
	}

	// A lower layer edited on disk (the image's own, below the
	// container): streamed as found, named by its own digest, and
	// named with the paths changed.
	top := im.DiffIDs[len(im.DiffIDs)-1]
	if err := os.WriteFile(filepath.Join(layerDir, "srv/keep"), []byte("kept\n"), 0o644); err != nil { // same size
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(layerDir, "srv/planted"), []byte("evil\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rc, err = s.SaveImage(ctx, "amber-podman-test:1")
	if err != nil {
		t.Fatal(err)
	}
	lf := s.LayerFindings("amber-podman-test:1")
	members = saved(t, rc)
	if len(lf) != 1 || lf[0].DiffID != top {
		t.Fatalf("findings: %+v, want the top layer %s", lf, top)
	}
	var paths []string
	for _, cp := range lf[0].Paths {
		paths = append(paths, cp.Path+":"+cp.What)
	}
	if fmt.Sprint(paths) != "[/srv/keep:content /srv/planted:added]" {
		t.Errorf("changed paths: %v", paths)
	}
	found := strings.TrimPrefix(lf[0].Found, "sha256:")
	if found == strings.TrimPrefix(top, "sha256:") || members["blobs/sha256/"+found] != found {
		t.Errorf("the changed layer is not streamed as found: %s, members %v", lf[0].Found, members)
	}
	if _, ok := members["blobs/sha256/"+strings.TrimPrefix(top, "sha256:")]; ok {
		t.Errorf("the changed layer is also streamed under its diff_id")
	}
}
