//go:build linux

package podman_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/podman"
)

// canary is a directory outside every root, holding a file, watched with
// inotify: check fails the test when anything in it was opened or read.
func canary(t *testing.T) (dir string, check func()) {
	t.Helper()
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("canary\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ctr.log"), []byte("2024-01-01T00:00:00Z stdout F canary\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_OPEN|unix.IN_ACCESS); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return dir, func() {
		t.Helper()
		buf := make([]byte, 4096)
		if n, _ := unix.Read(fd, buf); n > 0 {
			t.Errorf("the canary %s outside the root was opened or read (%d bytes of inotify events)", dir, n)
		}
	}
}

// craftedRoot is a dead host's root holding a made-up Podman graph root at
// var/lib/containers/storage: n containers and m images of one layer
// each, and libpod's database recording each container's log at logPath
// (its %s the container's ID).
func craftedRoot(t *testing.T, n, m int, logPath string) (root, graph string, ids []string) {
	t.Helper()
	root = t.TempDir()
	graph = filepath.Join(root, "var/lib/containers/storage")
	mk := func(p string, b []byte) {
		t.Helper()
		os.MkdirAll(filepath.Dir(filepath.Join(graph, p)), 0o755)
		if err := os.WriteFile(filepath.Join(graph, p), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	js := func(v any) []byte { b, _ := json.Marshal(v); return b }
	layer := strings.Repeat("aa", 32)
	var ctrs, imgs []map[string]any
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%064x", i+1)
		ids = append(ids, id)
		ctrs = append(ctrs, map[string]any{"id": id, "names": []string{fmt.Sprintf("c%d", i)}, "image": strings.Repeat("ee", 32),
			"layer": fmt.Sprintf("%064x", 1<<40+i), "metadata": `{"image-name":"localhost/x:1","name":"c"}`, "created": "2024-05-01T10:00:00Z"})
	}
	for i := 0; i < m; i++ {
		imgs = append(imgs, map[string]any{"id": fmt.Sprintf("%064x", 1<<50+i), "names": []string{fmt.Sprintf("localhost/img%d:1", i)},
			"layer": layer, "created": "2024-05-01T09:00:00Z"})
	}
	mk("overlay-containers/containers.json", js(ctrs))
	mk("overlay-images/images.json", js(imgs))
	mk("overlay-layers/layers.json", js([]map[string]any{{"id": layer, "diff-digest": "sha256:" + strings.Repeat("dd", 32), "diff-size": 1234}}))
	os.MkdirAll(filepath.Join(graph, "libpod"), 0o755)
	db, err := bolt.Open(filepath.Join(graph, "libpod/bolt_state.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		rc, _ := tx.CreateBucket([]byte("runtime-config"))
		rc.Put([]byte("graph-root"), []byte("/var/lib/containers/storage"))
		b, _ := tx.CreateBucket([]byte("ctr"))
		for _, id := range ids {
			c, _ := b.CreateBucket([]byte(id))
			c.Put([]byte("config"), js(map[string]any{"createdTime": "2024-05-01T10:00:00Z", "logDriver": "k8s-file", "logPath": strings.ReplaceAll(logPath, "%s", id)}))
			c.Put([]byte("state"), js(map[string]any{"state": 6, "startedTime": "2024-05-01T10:00:01Z"}))
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	return root, graph, ids
}

// TestOfflineHostileRoot: a dead host's root crafted to lead amber out of
// it — the graph root a link with an absolute target, libpod's log path
// out of the graph root, an upper directory and libpod's database linked
// to a canary outside the root, a volume source climbing out, a database
// that is not one, a 100 MB OCI spec — is read inside the root or
// refused, clearly, with no panic; the canary is never opened.
func TestOfflineHostileRoot(t *testing.T) {
	ctx := context.Background()
	out, check := canary(t)
	defer check()

	// The graph root, a link to the canary's absolute path: resolved in
	// the root, where there is nothing.
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "var/lib/containers"), 0o755)
	os.Symlink(out, filepath.Join(root, "var/lib/containers/storage"))
	if _, err := podman.OpenOffline(root, ""); err == nil {
		t.Errorf("a graph root linked to %s on the examiner's host was opened", out)
	}
	// A link climbing with "..": it stops at the root.
	os.Remove(filepath.Join(root, "var/lib/containers/storage"))
	os.Symlink(strings.Repeat("../", 20)+strings.TrimPrefix(out, "/"), filepath.Join(root, "var/lib/containers/storage"))
	if _, err := podman.OpenOffline(root, ""); err == nil {
		t.Errorf("a graph root linked up out of the root was opened")
	}

	// libpod's log paths: out of the graph root (absolute, climbing).
	for _, lp := range []string{out + "/ctr.log", "/var/lib/containers/storage/../../../.." + out + "/ctr.log"} {
		root, _, ids := craftedRoot(t, 1, 1, lp)
		s, err := podman.OpenOffline(root, "")
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Logs(ctx, ids[0], false)
		if !errors.Is(err, engine.ErrEngineClaim) || !strings.Contains(err.Error(), "outside the graph root") {
			t.Errorf("log path %s: %v, want refused", lp, err)
		}
	}

	root, graph, ids := craftedRoot(t, 2, 1, "/var/lib/containers/storage/overlay-containers/%s/userdata/ctr.log")
	s, err := podman.OpenOffline(root, "")
	if err != nil {
		t.Fatal(err)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 2 || list[0].State != "exited" || list[0].Started != "2024-05-01T10:00:01Z" || list[0].Pid != 0 {
		t.Errorf("list: %+v %v", list, err)
	}
	// The upper directory linked to the canary.
	os.MkdirAll(filepath.Join(graph, "overlay", fmt.Sprintf("%064x", 1<<40)), 0o755)
	os.Symlink(out, filepath.Join(graph, "overlay", fmt.Sprintf("%064x", 1<<40), "diff"))
	c := &engine.Container{ID: ids[0], Driver: "overlay", Storage: map[string]string{"LayerID": fmt.Sprintf("%064x", 1<<40)}}
	if dirs, err := s.UpperDirs(c); !errors.Is(err, engine.ErrEngineClaim) {
		t.Errorf("an upper dir linked out of the root: %q %v", dirs, err)
	}
	// Volume sources that are not a volume of the graph root.
	os.MkdirAll(filepath.Join(graph, "volumes/v/_data"), 0o755)
	if d, err := s.VolumeDir("v", "/var/lib/containers/storage/volumes/v/_data"); err != nil || d != filepath.Join(graph, "volumes/v/_data") {
		t.Errorf("a volume of the graph root: %q %v", d, err)
	}
	for _, src := range []string{"/var/lib/containers/storage/volumes/../../../../.." + out + "/_data", out, "/etc"} {
		if d, err := s.VolumeDir("v", src); !errors.Is(err, engine.ErrEngineClaim) {
			t.Errorf("volume source %s: %q %v, want refused", src, d, err)
		}
	}
	// A 100 MB OCI spec: that container is refused, clearly; the list
	// goes on.
	spec := filepath.Join(graph, "overlay-containers", ids[1], "userdata/config.json")
	os.MkdirAll(filepath.Dir(spec), 0o755)
	if err := os.WriteFile(spec, make([]byte, 100<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Container(ctx, ids[1]); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("a 100 MB OCI spec: %v", err)
	}
	if l, err := s.List(ctx); err != nil || len(l) != 2 {
		t.Errorf("list with a 100 MB OCI spec: %d %v", len(l), err)
	}

	// libpod's database: linked to the canary, then not a database. The
	// states are unknown, the list goes on.
	db := filepath.Join(graph, "libpod/bolt_state.db")
	for _, bad := range []func(){
		func() { os.Remove(db); os.Symlink(filepath.Join(out, "secret"), db) },
		func() { os.Remove(db); os.WriteFile(db, []byte("not a database at all, not at all\n"), 0o644) },
		func() { os.Truncate(db, 0); os.WriteFile(db, make([]byte, 64<<10), 0o644) },
	} {
		bad()
		s, err := podman.OpenOffline(root, "")
		if err != nil {
			t.Fatal(err)
		}
		l, err := s.List(ctx)
		if err != nil || len(l) != 2 || l[0].State != "unknown (offline)" || l[0].Created != "2024-05-01T10:00:00Z" {
			t.Errorf("list with a bad libpod database: %+v %v", l, err)
		}
	}
}

// TestOfflineListingScale: 1,000 containers and 5,000 images listed in
// well under a second, no layer read.
func TestOfflineListingScale(t *testing.T) {
	root, _, _ := craftedRoot(t, 1000, 5000, "/var/lib/containers/storage/overlay-containers/%s/userdata/ctr.log")
	start := time.Now()
	s, err := podman.OpenOffline(root, "")
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.List(context.Background())
	if err != nil || len(l) != 1000 {
		t.Fatalf("list: %d %v", len(l), err)
	}
	im, err := s.ListImages(context.Background())
	if err != nil || len(im) != 5000 || im[0].Size != 1234 || im[0].Created != "2024-05-01T09:00:00Z" {
		t.Fatalf("images: %d %+v %v", len(im), im[:1], err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("listing 1,000 containers and 5,000 images took %v", d)
	}
}
