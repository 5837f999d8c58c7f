//go:build linux

package containerdroot

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/snapshot/containerd"
	"github.com/amber-forensics/amber/snapshot/engine"
)

const (
	liveNS    = "amber-offline"
	otherNS   = "amber-other"
	imageName = "docker.io/library/amber-ctrdroot-test:1"
	// The attacker adds, changes and deletes a file.
	attack = `echo new > /srv/added; echo HELLO > /srv/app; rm /srv/old`
)

// testImage builds a two-layer busybox image with the host's Docker
// engine and returns its docker save.
func testImage(t *testing.T) string {
	t.Helper()
	testenv.Docker(t)
	busybox := testenv.Tool(t, "busybox")
	p, err := testenv.BusyboxImage(busybox, t.TempDir(), "amber-ctrdroot-test-base:1", "amber-ctrdroot-test:1",
		"FROM amber-ctrdroot-test-base:1\nRUN mkdir -p /srv && echo hello > /srv/app && echo gone > /srv/old\n", false)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fileState is every file of dir with its content's hash and its
// times: what must not change when amber reads a root.
func fileState(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		// A write, or a change of mode or owner, changes the ctime.
		line := fmt.Sprintf("%s %s %d %d.%d %d.%d", p, d.Type(), st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
		if d.Type().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			line += " " + hex.EncodeToString(h.Sum(nil))
		}
		b.WriteString(line + "\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestOfflineRoot: a test's own containerd imports an image (in two
// namespaces), runs a container whose files an attacker changes, and
// stops; its root, bind-mounted read-only and reached through a symbolic
// link resolved inside the host's root, is read offline: the lists name
// the container and the images, the container's config and image equal
// what the live containerd answered, its upper directory holds the
// change, the save's layers hash to the config's diff_ids; not one byte
// of the root changes.
func TestOfflineRoot(t *testing.T) {
	img := testImage(t)
	d := testenv.Containerd(t)
	testenv.Tool(t, "mount")
	ctx := context.Background()
	d.Ctr(t, liveNS, "images", "import", img)
	d.Ctr(t, otherNS, "images", "import", img)
	d.Ctr(t, liveNS, "run", "-d", imageName, "web", "sh", "-c", "while :; do sleep 3600; done")
	d.Ctr(t, liveNS, "tasks", "exec", "--exec-id", "attacker", "web", "sh", "-c", attack)

	live, err := containerd.Dial(ctx, d.Address, liveNS)
	if err != nil {
		t.Fatal(err)
	}
	lc, err := live.Container(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	li, err := live.Image(ctx, imageName)
	if err != nil {
		t.Fatal(err)
	}
	live.Close()
	d.Ctr(t, liveNS, "tasks", "kill", "-s", "SIGKILL", "web")
	testenv.Shell(t, "for i in $(seq 50); do ctr -a "+d.Address+" -n "+liveNS+" tasks ls | grep -q RUNNING || exit 0; sleep 0.1; done")
	d.Ctr(t, liveNS, "tasks", "delete", "web")
	// A containerd running on its root holds its database's lock: amber
	// waits briefly, then says so.
	if _, err := Open(filepath.Dir(d.Root), "/"+filepath.Base(d.Root)); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Errorf("Open of a running containerd's root: %v, want it said locked", err)
	}
	d.Kill(t, syscall.SIGTERM)

	// The dead host: its root holds var/lib/containerd, a link to
	// /root, which is the daemon's root inside the host's root (not
	// this machine's /root).
	host := filepath.Dir(d.Root)
	if err := os.MkdirAll(filepath.Join(host, "var/lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/"+filepath.Base(d.Root), filepath.Join(host, "var/lib/containerd")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(host, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(host, "etc/hostname"), []byte("deadhost\n"), 0o644)
	ro := t.TempDir()
	testenv.Run(t, "mount", "--bind", host, ro)
	t.Cleanup(func() { exec.Command("umount", "-l", ro).Run() })
	testenv.Run(t, "mount", "-o", "remount,bind,ro", ro)
	before := fileState(t, d.Root)

	s, err := Open(ro, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	info := s.Info()
	if info.Runtime != "containerd" || info.Host != "containerd-root:"+DefaultDataRoot || info.Name != "deadhost" || !info.Local ||
		info.StorageDriver != "overlayfs" || info.Offline == nil || info.Offline.Root != ro || info.Offline.DataRoot != DefaultDataRoot ||
		info.Offline.Mount != ro || !slices.Contains(strings.Split(info.Offline.Options, ","), "ro") {
		t.Errorf("Info() = %+v", info)
	}

	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var web *engine.Summary
	for i := range list {
		if list[i].ID == "web" {
			web = &list[i]
		}
	}
	if web == nil || web.Namespace != liveNS || web.Image != imageName || web.State != StateOffline || web.Created == "" {
		t.Errorf("List() = %+v: want web of %s, image %s, state %q, its creation time", list, liveNS, imageName, StateOffline)
	}
	ims, err := s.ListImages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var nss []string
	for _, im := range ims {
		if slices.Equal(im.Refs, []string{imageName}) && im.ID == li.ID && im.Size > 0 {
			nss = append(nss, im.Namespace)
		}
	}
	slices.Sort(nss)
	if !slices.Equal(nss, []string{otherNS, liveNS}) && !slices.Equal(nss, []string{liveNS, otherNS}) {
		t.Errorf("ListImages() = %+v: want %s (ID %s) in %s and %s", ims, imageName, li.ID, liveNS, otherNS)
	}

	c, err := s.Container(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != "web" || c.Image != lc.Image || c.ImageRef != lc.ImageRef || c.Running || c.Paused || c.Pid != 0 ||
		c.Driver != "overlayfs" || c.Tty != lc.Tty || !bytes.Equal(c.Config, lc.Config) {
		t.Errorf("Container(web) = %+v\nlive: %+v", c, lc)
	}
	if c2, err := s.Container(ctx, liveNS+"/web"); err != nil || c2.ID != "web" {
		t.Errorf("Container(%s/web) = %v, %v", liveNS, c2, err)
	}
	if err := engine.CheckID(s, c.ID); err != nil {
		t.Error(err)
	}
	uppers, err := s.UpperDirs(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(uppers) != 1 || !strings.HasPrefix(uppers[0], ro+"/root/io.containerd.snapshotter.v1.overlayfs/snapshots/") {
		t.Fatalf("UpperDirs = %v", uppers)
	}
	if b, err := os.ReadFile(filepath.Join(uppers[0], "srv/app")); err != nil || string(b) != "HELLO\n" {
		t.Errorf("the upper directory's srv/app: %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(uppers[0], "srv/added")); err != nil || string(b) != "new\n" {
		t.Errorf("the upper directory's srv/added: %q, %v", b, err)
	}
	if st, err := os.Lstat(filepath.Join(uppers[0], "srv/old")); err != nil || st.Mode()&fs.ModeCharDevice == 0 {
		t.Errorf("the upper directory's srv/old: %v, %v; want a whiteout", st, err)
	}

	im, err := s.Image(ctx, imageName)
	if err != nil {
		t.Fatal(err)
	}
	if im.ID != li.ID || !slices.Equal(im.DiffIDs, li.DiffIDs) {
		t.Errorf("Image = %+v, live %+v", im, li)
	}
	for _, ref := range []string{li.ID, "amber-ctrdroot-test:1", liveNS + "/" + imageName} {
		if im2, err := s.Image(ctx, ref); err != nil || im2.ID != li.ID {
			t.Errorf("Image(%s) = %v, %v", ref, im2, err)
		}
	}
	rc, err := s.SaveImage(ctx, imageName)
	if err != nil {
		t.Fatal(err)
	}
	members := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		members[h.Name] = b
	}
	rc.Close()
	var mj []struct {
		Config string
		Layers []string
	}
	if err := json.Unmarshal(members["manifest.json"], &mj); err != nil || len(mj) != 1 {
		t.Fatalf("manifest.json: %s, %v", members["manifest.json"], err)
	}
	if sum := sha256.Sum256(members[mj[0].Config]); "sha256:"+hex.EncodeToString(sum[:]) != li.ID {
		t.Errorf("the saved config hashes to %x, not the live image's ID %s", sum, li.ID)
	}
	var got []string
	for _, l := range mj[0].Layers {
		sum := sha256.Sum256(members[l])
		if "blobs/sha256/"+hex.EncodeToString(sum[:]) != l {
			t.Errorf("layer %s hashes to %x", l, sum)
		}
		got = append(got, "sha256:"+strings.TrimPrefix(l, "blobs/sha256/"))
	}
	if !slices.Equal(got, li.DiffIDs) {
		t.Errorf("saved layers %v, diff_ids %v", got, li.DiffIDs)
	}
	if _, err := s.Logs(ctx, "web", false); err == nil {
		t.Error("Logs of a container that is no pod's: no error")
	}
	s.Close()
	if after := fileState(t, d.Root); after != before {
		t.Errorf("the root changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
