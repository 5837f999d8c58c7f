//go:build linux

package containerd_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/fusefs"
	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot"
	"github.com/amber-forensics/amber/snapshot/containerd"
	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/view"
)

const (
	ns        = "amber-test"
	imageName = "docker.io/library/amber-containerd-test:1"
	memSecret = "amber-mem-secret-c7d1"
	// The secret is only ever in sh's memory: its pieces are joined there.
	ctrCommand = `a=amber-mem; b=c7d1; S="${a}-secret-${b}"; while :; do sleep 3600; done`
	// The attacker adds, changes (content only, mtime put back), deletes,
	// changes a mode, and adds a link and a directory.
	attack = `set -e; echo new > /srv/added; mkdir /srv/dir; chmod 700 /srv/dir; ln -s /srv/app /srv/link
touch -r /srv/app /srv/.ref; echo HELLO > /srv/app; touch -r /srv/.ref /srv/app; rm /srv/.ref; rm /srv/old`
)

var (
	imageOnce sync.Once
	imageTar  string
	imageErr  error
)

// testImage builds a two-layer busybox image with the host's Docker
// engine (as cmd/amber's tests do) and returns its docker save.
func testImage(t *testing.T) string {
	t.Helper()
	testenv.Docker(t)
	busybox := testenv.Tool(t, "busybox")
	imageOnce.Do(func() {
		dir, err := os.MkdirTemp("", "amber-ctrd-image")
		if err != nil {
			imageErr = err
			return
		}
		imageTar, imageErr = testenv.BusyboxImage(busybox, dir, "amber-containerd-test-base:1", "amber-containerd-test:1",
			"FROM amber-containerd-test-base:1\nRUN mkdir -p /srv && echo hello > /srv/app && echo gone > /srv/old\n", false)
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return imageTar
}

func TestMain(m *testing.M) {
	code := m.Run()
	if imageTar != "" {
		os.RemoveAll(filepath.Dir(imageTar))
	}
	os.Exit(code)
}

func hexID(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// settledState is state once containerd has collected what nothing
// references (a lease made and deleted with --sync runs its collector):
// content an import left unreferenced would otherwise vanish during the
// capture, when the capture's own lease is deleted and the collector runs.
func settledState(t *testing.T, d *testenv.ContainerdDaemon) string {
	t.Helper()
	d.Ctr(t, ns, "leases", "create", "--id", "amber-settle")
	d.Ctr(t, ns, "leases", "delete", "--sync", "amber-settle")
	return state(t, d)
}

// state lists what containerd holds: every capture must leave it as found.
func state(t *testing.T, d *testenv.ContainerdDaemon) string {
	t.Helper()
	var b strings.Builder
	for _, what := range [][]string{{"containers", "ls"}, {"images", "ls"}, {"snapshots", "ls"}, {"leases", "ls"}, {"content", "ls", "-q"}} {
		fmt.Fprintf(&b, "== %s\n%s", strings.Join(what, " "), d.Ctr(t, ns, what...))
	}
	return b.String()
}

// running starts a container of the test image that holds the secret in
// memory, and plays the attacker in it.
func running(t *testing.T, d *testenv.ContainerdDaemon, id string) {
	t.Helper()
	d.Ctr(t, ns, "run", "-d", imageName, id, "sh", "-c", ctrCommand)
	d.Ctr(t, ns, "tasks", "exec", "--exec-id", "attacker", id, "sh", "-c", attack)
}

// TestCaptureContainerd: a container of the test's own containerd,
// captured through CaptureEngine with --pause: the archive verifies; its
// rootfs equals the container's snapshot mounted read-only (names, types,
// modes, owners, sizes, times, link targets, content), and so do umoci's
// unpack of the archive's layout and amber's FUSE mount (find listing and
// diff -r --no-dereference); changes.txt lists the content-only change;
// the memory-only secret is in a core readelf parses; the task runs
// again; containerd's lists are as before.
func TestCaptureContainerd(t *testing.T) {
	img := testImage(t)
	d := testenv.Containerd(t)
	testenv.Tool(t, "readelf")
	d.Ctr(t, ns, "images", "import", img)
	id := hexID(t.Name())
	running(t, d, id)
	before := settledState(t, d)

	ctx := context.Background()
	rt, err := containerd.Dial(ctx, d.Address, ns)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if info := rt.Info(); info.Runtime != "containerd" || info.Namespace != ns || !info.Local || info.Host != "unix://"+d.Address || !strings.HasPrefix(info.Version, "1.") {
		t.Errorf("Info() = %+v", info)
	}
	out := filepath.Join(t.TempDir(), "c.tar.zst")
	res, err := snapshot.CaptureEngine(ctx, rt, snapshot.EngineRequest{Containers: []string{id[:10]}, Output: out, Pause: true,
		Tool: manifest.Tool{Name: "amber", Version: "test"}})
	if err != nil {
		t.Fatal(err)
	}
	if after := state(t, d); after != before {
		t.Errorf("containerd's lists changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if st := d.Ctr(t, ns, "tasks", "ls"); !regexp.MustCompile(id + `\s+\d+\s+RUNNING`).MatchString(st) {
		t.Errorf("the task is not running again after the capture:\n%s", st)
	}
	rep, err := archive.Verify(out, archive.VerifyOptions{})
	if err != nil || len(rep.Problems) > 0 {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	a, ok := res.Manifest.Artifact(manifest.KindContainer, id)
	if !ok {
		t.Fatalf("no container artifact %s: %+v", id, res.Manifest.Artifacts)
	}
	c := a.Container
	if c.Route != snapshot.RouteUpperdir || !c.Paused || c.Driver != "overlayfs" {
		t.Errorf("container record: route %q paused %v driver %q", c.Route, c.Paused, c.Driver)
	}
	// The image is named as Docker names it (amber-containerd-test:1).
	if im, ok := res.Manifest.Artifact(manifest.KindImage, "amber-containerd-test_1"); !ok || c.Image != im.Name || im.ImageID != a.ImageID {
		t.Errorf("image artifact %+v of container image %q: want amber-containerd-test_1", im, c.Image)
	}
	if acq := res.Manifest.Acquisition.Docker; acq == nil || acq.Runtime != "containerd" || acq.Namespace != ns {
		t.Errorf("acquisition engine: %+v", acq)
	}

	v := &view.View{A: fixture.Open(t, out)}
	base := "containers/" + id
	// The reconstruction: the snapshot's mounts, read-only.
	mnt := t.TempDir()
	mountSnapshot(t, d, id, mnt)
	want := listDir(t, mnt)
	got := listView(t, v, base+"/rootfs")
	t.Logf("%d entries in the rootfs, %d in the mount; changes.txt:\n%s", len(got), len(want), member(t, v, base+"/changes.txt"))
	if diff := diffLists(want, got); diff != "" {
		t.Errorf("the captured rootfs differs from the snapshot's mounts (- mount, + archive):\n%s", diff)
	}
	umociMatches(t, out, a.Name, mnt)
	fuseMatches(t, out, base+"/rootfs", mnt)
	for _, p := range []string{"srv/added", "srv/link", "srv/dir"} {
		if _, ok := got[p]; !ok {
			t.Errorf("the attacker's %s is not in the captured rootfs", p)
		}
	}
	if _, ok := got["srv/old"]; ok {
		t.Error("the deleted srv/old is in the captured rootfs")
	}
	changes := member(t, v, base+"/changes.txt")
	for _, l := range []string{"C /srv/app", "A /srv/added", "D /srv/old", "A /srv/link"} {
		if !strings.Contains(changes, l+"\n") {
			t.Errorf("changes.txt lacks %q:\n%s", l, changes)
		}
	}
	var why []string
	for _, an := range res.Manifest.Anomalies {
		if an.Kind == "engine-change-list" {
			why = append(why, an.Detail)
		}
	}
	if len(why) != 1 || !strings.Contains(why[0], "containerd keeps no change list") {
		t.Errorf("engine-change-list anomalies %q: want one saying containerd keeps none", why)
	}
	if why := member(t, v, base+"/logs/unavailable"); !strings.Contains(why, "containerd keeps no logs") {
		t.Errorf("logs/unavailable: %q", why)
	}
	if insp := member(t, v, base+"/inspect.json"); !strings.Contains(insp, `"SnapshotKey": "`+id+`"`) || !strings.Contains(insp, `"Snapshotter": "overlayfs"`) {
		t.Errorf("inspect.json: %.400s", insp)
	}

	// Memory: the secret in sh's core, which readelf parses.
	var core string
	for _, p := range c.Processes {
		if p.Comm != "sh" {
			continue
		}
		e, err := v.Stat(base + "/" + p.Dir + "/core")
		if err != nil {
			t.Fatal(err)
		}
		r, err := v.Open(e)
		if err != nil {
			t.Fatal(err)
		}
		core = filepath.Join(t.TempDir(), "core")
		f, _ := os.Create(core)
		io.Copy(f, r)
		f.Close()
		if b, _ := os.ReadFile(core); strings.Contains(string(b), memSecret) {
			break
		}
		core = ""
	}
	if core == "" {
		t.Fatalf("the secret is in no core of sh: %+v", c.Processes)
	}
	if rl := testenv.Run(t, "readelf", "-l", core); !strings.Contains(rl, "CORE (Core file)") || strings.Count(rl, "LOAD") < 3 {
		t.Errorf("readelf -l of the core:\n%s", rl)
	}
}

// umociMatches checks the archive with an independent OCI tool: the
// archive is extracted as the OCI layout it is, the container's manifest
// (its index.json ref.name) unpacked by umoci, and the rootfs umoci makes
// compared with the snapshot mounted read-only at mnt: find's listing of
// type, mode, owner, size, link target and mtime (to the second: umoci
// need not keep more), then diff -r --no-dereference for the content.
func umociMatches(t *testing.T, arch, ref, mnt string) {
	t.Helper()
	for _, tool := range []string{"umoci", "zstd", "tar", "find", "diff"} {
		testenv.Tool(t, tool)
	}
	dir := t.TempDir()
	layout, bundle := filepath.Join(dir, "x"), filepath.Join(dir, "bundle")
	testenv.Shell(t, fmt.Sprintf("mkdir %q && zstd -dc %q | tar -x -C %q", layout, arch, layout))
	b, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var index struct {
		Manifests []struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(b, &index); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	found := false
	for _, m := range index.Manifests {
		found = found || m.Annotations["org.opencontainers.image.ref.name"] == ref
	}
	if !found {
		t.Fatalf("index.json names no manifest %q:\n%s", ref, b)
	}
	testenv.Run(t, "umoci", "unpack", "--image", layout+":"+ref, bundle)
	rootfs := filepath.Join(bundle, "rootfs")
	if got, want := findListing(t, rootfs), findListing(t, mnt); got != want {
		t.Errorf("umoci's rootfs differs from the snapshot's mounts (- mount, + umoci):\n%s", lineDiff(want, got))
	}
	if out, err := exec.Command("diff", "-r", "--no-dereference", mnt, rootfs).CombinedOutput(); err != nil {
		t.Errorf("diff -r --no-dereference mount umoci: %v\n%s", err, out)
	}
}

// fuseMatches serves the archive on amber's read-only FUSE mount and
// compares its tree at rootfs with the snapshot mounted at mnt by diff -r
// --no-dereference: the view's content through the file system a user
// reads, by a tool that is not amber's.
func fuseMatches(t *testing.T, arch, rootfs, mnt string) {
	t.Helper()
	testenv.FUSE(t)
	testenv.Tool(t, "diff")
	a, err := archive.Open(arch)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	srv, err := fusefs.Mount(a, dir, fusefs.Options{})
	if err != nil {
		a.Close()
		t.Fatalf("mount: %v", err)
	}
	defer func() {
		for i := 0; i < 50 && srv.Unmount() != nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
		if fusefs.IsMountpoint(dir) {
			fusefs.Unmount(dir)
		}
		a.Close()
	}()
	// This process serves the mount: go-fuse's poll hack must run first.
	if err := srv.WaitMount(); err != nil {
		t.Fatalf("wait mount: %v", err)
	}
	if out, err := exec.Command("diff", "-r", "--no-dereference", mnt, filepath.Join(dir, rootfs)).CombinedOutput(); err != nil {
		t.Errorf("diff -r --no-dereference mount amber-fuse: %v\n%s", err, out)
	}
}

// findListing lists a tree with find: type, mode, owner, size (not of
// directories: that is the file system's), link target, mtime in whole
// seconds, path; sorted.
func findListing(t *testing.T, dir string) string {
	t.Helper()
	out := testenv.Run(t, "find", dir, "-mindepth", "1", "-printf", `%y|%m|%U|%G|%s|%l|%T@|%P\n`)
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.SplitN(l, "|", 8); len(f) == 8 {
			if f[0] == "d" {
				f[4] = "-"
			}
			f[6], _, _ = strings.Cut(f[6], ".")
			l = strings.Join(f, "|")
		}
		keep = append(keep, l)
	}
	sort.Strings(keep)
	return strings.Join(keep, "\n")
}

// lineDiff lists the lines of want missing from got (-) and of got
// missing from want (+).
func lineDiff(want, got string) string {
	w, g := map[string]bool{}, map[string]bool{}
	for _, l := range strings.Split(want, "\n") {
		w[l] = true
	}
	for _, l := range strings.Split(got, "\n") {
		g[l] = true
	}
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}

// mountSnapshot mounts the container's active snapshot read-only at dir,
// as ctr snapshots mounts says: its upper and lower directories as the
// lower layers of a read-only overlay (the upper is in use by the
// container's own mount).
func mountSnapshot(t *testing.T, d *testenv.ContainerdDaemon, key, dir string) {
	t.Helper()
	line := d.Ctr(t, ns, "snapshots", "mounts", dir, key)
	var upper, lower string
	for _, o := range strings.Split(regexp.MustCompile(` -o (\S+)`).FindStringSubmatch(line)[1], ",") {
		if v, ok := strings.CutPrefix(o, "upperdir="); ok {
			upper = v
		}
		if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
			lower = v
		}
	}
	if upper == "" || lower == "" {
		t.Fatalf("ctr snapshots mounts: %s", line)
	}
	testenv.Run(t, "mount", "-t", "overlay", "overlay", "-o", "ro,lowerdir="+upper+":"+lower, dir)
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
}

// listDir lists a directory tree, one line per entry: type, mode, owner,
// size, mtime, link target or content hash.
func listDir(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		typ, extra := "file", ""
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFDIR:
			typ = "dir"
		case syscall.S_IFLNK:
			typ = "symlink"
			extra, _ = os.Readlink(p)
		case syscall.S_IFCHR:
			typ = "char"
		case syscall.S_IFIFO:
			typ = "fifo"
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h := sha256.Sum256(b)
			extra = hex.EncodeToString(h[:])
		}
		size := st.Size
		if typ != "file" {
			size = 0
		}
		out[rel] = fmt.Sprintf("%s %o %d:%d %d %d.%09d %s", typ, st.Mode&0o7777, st.Uid, st.Gid, size, st.Mtim.Sec, st.Mtim.Nsec, extra)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// listView lists a tree of the archive's view as listDir does.
func listView(t *testing.T, v *view.View, root string) map[string]string {
	t.Helper()
	top, err := v.Stat(root)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	err = v.Walk(top, func(e *view.Entry) error {
		if e.Path == top.Path {
			return nil
		}
		rel := strings.TrimPrefix(e.Path, top.Path+"/")
		typ, extra, size := view.TypeName(e.Type), "", int64(0)
		switch e.Type {
		case fileindex.TypeSymlink:
			extra = e.Node.Rec.Linkname
		case fileindex.TypeReg:
			r, err := v.Open(e)
			if err != nil {
				return err
			}
			h := sha256.New()
			if _, err := io.Copy(h, r); err != nil {
				return err
			}
			extra, size = hex.EncodeToString(h.Sum(nil)), e.Size
		}
		out[rel] = fmt.Sprintf("%s %o %d:%d %d %d.%09d %s", typ, e.Mode&0o7777, e.Node.Rec.UID, e.Node.Rec.GID, size, e.ModTime.Unix(), e.ModTime.Nanosecond(), extra)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffLists(want, got map[string]string) string {
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if w, g := want[k], got[k]; w != g {
			fmt.Fprintf(&b, "- %s %s\n+ %s %s\n", k, w, k, g)
		}
	}
	return b.String()
}

func member(t *testing.T, v *view.View, p string) string {
	t.Helper()
	e, err := v.Stat(p)
	if err != nil {
		t.Errorf("%s: %v", p, err)
		return ""
	}
	r, err := v.Open(e)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestContainerdLookups: a container is found by its ID, a unique prefix
// or not at all (ErrNoSuchObject); an image by its name, its short Docker
// name and its config digest, with the config's diff_ids; a container
// with no task is not running, and is captured without memory.
func TestContainerdLookups(t *testing.T) {
	img := testImage(t)
	d := testenv.Containerd(t)
	d.Ctr(t, ns, "images", "import", img)
	id := hexID(t.Name())
	d.Ctr(t, ns, "containers", "create", imageName, id, "true")
	ctx := context.Background()
	rt, err := containerd.Dial(ctx, d.Address, ns)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	for _, ref := range []string{id, id[:8]} {
		c, err := rt.Container(ctx, ref)
		if err != nil {
			t.Fatalf("Container(%s): %v", ref, err)
		}
		if c.ID != id || c.Running || c.State != "created" || c.Pid != 0 || c.ImageRef != imageName || !strings.HasPrefix(c.Image, "sha256:") {
			t.Errorf("Container(%s) = %+v", ref, c)
		}
	}
	for _, ref := range []string{"nothere", "../x", hexID("other")} {
		if _, err := rt.Container(ctx, ref); !errors.Is(err, engine.ErrNoSuchObject) {
			t.Errorf("Container(%q): %v, want ErrNoSuchObject", ref, err)
		}
	}
	c, _ := rt.Container(ctx, id)
	var first *engine.Image
	for _, ref := range []string{imageName, "amber-containerd-test:1", c.Image} {
		ii, err := rt.Image(ctx, ref)
		if err != nil {
			t.Fatalf("Image(%s): %v", ref, err)
		}
		if ii.ID != c.Image || len(ii.DiffIDs) != 2 {
			t.Errorf("Image(%s) = %+v, want ID %s and 2 layers", ref, ii, c.Image)
		}
		first = ii
	}
	_ = first
	if _, err := rt.Image(ctx, "nothere:1"); !errors.Is(err, engine.ErrNoSuchObject) {
		t.Errorf("Image(nothere:1): %v", err)
	}
	// A container with no task is captured without memory, through its
	// snapshot's upper directory, and left as found.
	before := settledState(t, d)
	res, err := snapshot.CaptureEngine(ctx, rt, snapshot.EngineRequest{Containers: []string{id}, Output: filepath.Join(t.TempDir(), "c.tar.zst"), Pause: true,
		Tool: manifest.Tool{Name: "amber", Version: "test"}})
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := res.Manifest.Artifact(manifest.KindContainer, id); !ok || a.Container.Route != snapshot.RouteUpperdir || a.Container.Paused || !strings.Contains(a.Container.MemorySkipped, "not running") {
		t.Errorf("container record of a container with no task: %+v", a.Container)
	}
	if after := state(t, d); after != before {
		t.Errorf("containerd's lists changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestContainerdDown: a containerd that does not answer is an engine
// error naming it.
func TestContainerdDown(t *testing.T) {
	_, err := containerd.Dial(context.Background(), filepath.Join(t.TempDir(), "nosock"), ns)
	if !errors.Is(err, engine.ErrEngine) || !strings.Contains(err.Error(), "containerd") {
		t.Errorf("Dial of no socket: %v", err)
	}
}

// TestSaveCompressedImage: an image whose layers the content store holds
// gzip- and zstd-compressed (as pulled from a registry) is captured with
// its layers uncompressed, each the diff_id its config lists; a save
// abandoned half-way leaves no lease; containerd's lists are as before.
func TestSaveCompressedImage(t *testing.T) {
	d := testenv.Containerd(t)
	l0 := fixture.Layer(fixture.Dir("etc/"), fixture.File("etc/hostname", "gz\n"), fixture.File("etc/big", strings.Repeat("amber ", 50000)))
	l1 := fixture.Layer(fixture.Dir("srv/"), fixture.File("srv/app", "zstd\n"))
	img := fixture.Image{Layers: [][]byte{l0, l1}}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(l0)
	zw.Close()
	enc, _ := zstd.NewWriter(nil)
	zs := enc.EncodeAll(l1, nil)
	lay := fixture.NewLayout()
	cfg := lay.Blob("application/vnd.oci.image.config.v1+json", img.Config())
	m := lay.Manifest(fixture.Desc{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": cfg,
		"layers": []fixture.Desc{lay.Blob("application/vnd.oci.image.layer.v1.tar+gzip", gz.Bytes()), lay.Blob("application/vnd.oci.image.layer.v1.tar+zstd", zs)}})
	dir := t.TempDir()
	if err := lay.Write(filepath.Join(dir, "layout"), m.With("annotations", map[string]string{"io.containerd.image.name": "docker.io/library/amber-compressed:1"})); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "tar", "-C", filepath.Join(dir, "layout"), "-cf", filepath.Join(dir, "layout.tar"), ".")
	d.Ctr(t, ns, "images", "import", "--no-unpack", filepath.Join(dir, "layout.tar"))
	before := settledState(t, d)

	ctx := context.Background()
	rt, err := containerd.Dial(ctx, d.Address, ns)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	// Abandoned after a few bytes: Close still deletes the lease.
	rc, err := rt.SaveImage(ctx, "amber-compressed:1")
	if err != nil {
		t.Fatal(err)
	}
	if leases := d.Ctr(t, ns, "leases", "ls", "-q"); strings.TrimSpace(leases) == "" {
		t.Error("no lease holds the image's content while it is saved")
	}
	if _, err := io.ReadFull(rc, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	if leases := d.Ctr(t, ns, "leases", "ls", "-q"); strings.TrimSpace(leases) != "" {
		t.Errorf("a lease is left after the save was closed: %s", leases)
	}

	out := filepath.Join(dir, "i.tar.zst")
	res, err := snapshot.CaptureEngine(ctx, rt, snapshot.EngineRequest{Images: []string{"amber-compressed:1"}, Output: out,
		Tool: manifest.Tool{Name: "amber", Version: "test"}})
	if err != nil {
		t.Fatal(err)
	}
	if after := state(t, d); after != before {
		t.Errorf("containerd's lists changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if rep, err := archive.Verify(out, archive.VerifyOptions{}); err != nil || len(rep.Problems) > 0 {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	a, ok := res.Manifest.Artifact(manifest.KindImage, "amber-compressed_1")
	if !ok {
		t.Fatalf("no image artifact: %+v", res.Manifest.Artifacts)
	}
	if len(a.Layers) != 2 || a.Layers[0].Digest.String() != sum(l0) || a.Layers[1].Digest.String() != sum(l1) || a.Layers[0].Size != int64(len(l0)) {
		t.Errorf("layers %+v: want the uncompressed %s and %s", a.Layers, sum(l0), sum(l1))
	}
	v := &view.View{A: fixture.Open(t, out)}
	if got := member(t, v, "images/amber-compressed_1/rootfs/srv/app"); got != "zstd\n" {
		t.Errorf("srv/app of the captured image: %q", got)
	}
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// TestCaptureShortID: a container of containerd's own ID grammar (ctr run
// IMG web, not 64 hex digits) is captured with its memory: the archive
// verifies and names it containers/web; its processes are those of its
// cgroup (/<namespace>/web), none of the look-alike webapp's running
// beside it; the memory-only secret is in a core; containerd's lists are
// as before.
func TestCaptureShortID(t *testing.T) {
	img := testImage(t)
	d := testenv.Containerd(t)
	d.Ctr(t, ns, "images", "import", img)
	running(t, d, "web")
	d.Ctr(t, ns, "run", "-d", imageName, "webapp", "sh", "-c", "while :; do sleep 3600; done")
	before := settledState(t, d)

	ctx := context.Background()
	rt, err := containerd.Dial(ctx, d.Address, ns)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	out := filepath.Join(t.TempDir(), "c.tar.zst")
	res, err := snapshot.CaptureEngine(ctx, rt, snapshot.EngineRequest{Containers: []string{"web"}, Output: out, Pause: true,
		Tool: manifest.Tool{Name: "amber", Version: "test"}})
	if err != nil {
		t.Fatal(err)
	}
	if after := state(t, d); after != before {
		t.Errorf("containerd's lists changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if rep, err := archive.Verify(out, archive.VerifyOptions{}); err != nil || len(rep.Problems) > 0 {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	a, ok := res.Manifest.Artifact(manifest.KindContainer, "web")
	if !ok || a.Container.ID != "web" {
		t.Fatalf("no container artifact web: %+v", res.Manifest.Artifacts)
	}
	for _, an := range res.Manifest.Anomalies {
		if strings.HasPrefix(an.Kind, "engine-claims") {
			t.Errorf("anomaly %+v", an)
		}
	}
	// The oracle of which processes are web's: the kernel's cgroup
	// listing of its task.
	want := map[int]bool{}
	for _, f := range strings.Fields(d.Ctr(t, ns, "tasks", "ps", "web")) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
				want[pid] = true
			}
		}
	}
	c := a.Container
	if c.MemorySkipped != "" || len(c.Processes) == 0 {
		t.Fatalf("no memory taken: %q %+v", c.MemorySkipped, c.Processes)
	}
	v := &view.View{A: fixture.Open(t, out)}
	secret := false
	for _, p := range c.Processes {
		cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.PID))
		if !want[p.PID] || strings.Contains(string(cg), "webapp") {
			t.Errorf("process %d (%s) is not web's: cgroup %q, ctr tasks ps %v", p.PID, p.Comm, cg, want)
		}
		if p.Comm == "sh" && strings.Contains(member(t, v, "containers/web/"+p.Dir+"/core"), memSecret) {
			secret = true
		}
	}
	if !secret {
		t.Errorf("the secret is in no core of sh: %+v", c.Processes)
	}
	if got := listView(t, v, "containers/web/rootfs"); got["srv/added"] == "" || got["srv/old"] != "" {
		t.Errorf("the attacker's changes are not in the captured rootfs")
	}
}

// TestCaptureNativeSnapshotter: a container of the native snapshotter (no
// overlay upper directory) is captured through the snapshot route: its
// rootfs equals the snapshot's directory as mount shows it (names, types,
// modes, owners, sizes, times, link targets, content); changes.txt lists
// the attacker's changes; nothing is left mounted; containerd's lists are
// as before.
func TestCaptureNativeSnapshotter(t *testing.T) {
	img := testImage(t)
	d := testenv.Containerd(t)
	d.Ctr(t, ns, "images", "import", "--snapshotter", "native", img)
	id := "native-web"
	d.Ctr(t, ns, "run", "-d", "--snapshotter", "native", imageName, id, "sh", "-c", ctrCommand)
	d.Ctr(t, ns, "tasks", "exec", "--exec-id", "attacker", id, "sh", "-c", attack)
	before := settledState(t, d)

	ctx := context.Background()
	rt, err := containerd.Dial(ctx, d.Address, ns)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	out := filepath.Join(t.TempDir(), "c.tar.zst")
	res, err := snapshot.CaptureEngine(ctx, rt, snapshot.EngineRequest{Containers: []string{id}, Output: out, Pause: true,
		Route: snapshot.RouteAuto, Tool: manifest.Tool{Name: "amber", Version: "test"}})
	if err != nil {
		t.Fatal(err)
	}
	if after := state(t, d); after != before {
		t.Errorf("containerd's lists changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// Other tests mount meanwhile: the route's own mount point is the one
	// that must be gone.
	if after, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(after), "amber-snapshot-") {
		t.Errorf("the snapshot is left mounted:\n%s", after)
	}
	if left, _ := filepath.Glob(filepath.Join(os.TempDir(), "amber-snapshot-*")); len(left) > 0 {
		t.Errorf("mount points left: %v", left)
	}
	if rep, err := archive.Verify(out, archive.VerifyOptions{}); err != nil || len(rep.Problems) > 0 {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	a, ok := res.Manifest.Artifact(manifest.KindContainer, id)
	if !ok || a.Container.Route != snapshot.RouteSnapshot || a.Container.Driver != "native" {
		t.Fatalf("container artifact %+v: want route snapshot, driver native", a.Container)
	}
	// The oracle: the snapshot's directory as ctr names it, bind-mounted
	// read-only by mount(8).
	line := d.Ctr(t, ns, "snapshots", "--snapshotter", "native", "mounts", "/x", id)
	m := regexp.MustCompile(`mount -t bind (\S+) /x`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("ctr snapshots mounts: %s", line)
	}
	mnt := t.TempDir()
	testenv.Run(t, "mount", "--bind", "-o", "ro", m[1], mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	v := &view.View{A: fixture.Open(t, out)}
	base := "containers/" + id
	want, got := listDir(t, mnt), listView(t, v, base+"/rootfs")
	if diff := diffLists(want, got); diff != "" {
		t.Errorf("the captured rootfs differs from the snapshot (- snapshot, + archive):\n%s", diff)
	}
	changes := member(t, v, base+"/changes.txt")
	for _, l := range []string{"C /srv/app", "A /srv/added", "D /srv/old", "A /srv/link", "A /srv/dir"} {
		if !strings.Contains(changes, l+"\n") {
			t.Errorf("changes.txt lacks %q:\n%s", l, changes)
		}
	}
	if strings.Contains(changes, "/bin/") {
		t.Errorf("changes.txt lists the image's own files:\n%s", changes)
	}
}
