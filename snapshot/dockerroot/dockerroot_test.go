//go:build linux

package dockerroot

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/snapshot/engine"
)

// dataRootImage is the test image: busybox-static (the base layer) and a
// layer of files to change.
const dataRootImage = `FROM amber-dr-base:1
RUN mkdir /data && echo hello > /data/a && echo two > /data/b && ln -s a /data/l && ln /data/a /data/h && mkdir /data/gone && echo x > /data/gone/y
CMD ["sh"]
`

// saved is one image as docker save gave it while the engine ran.
type saved struct {
	diffIDs []string
	layers  map[string]bool // sha256 of each layer tar
}

// dockerSaveLayers reads a docker save tar: the sha256 of each layer.
func dockerSaveLayers(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(h.Name, "layer.tar") || (strings.HasPrefix(h.Name, "blobs/") && h.Size > 4096) {
			s := sha256.New()
			io.Copy(s, tr)
			out[hex.EncodeToString(s.Sum(nil))] = true
		}
	}
}

// readSave reads SaveImage's stream: manifest.json and the sha256 of each
// member.
func readSave(t *testing.T, rc io.ReadCloser) (man []struct {
	Config   string
	RepoTags []string
	Layers   []string
}, members map[string]string, bodies map[string][]byte) {
	t.Helper()
	defer rc.Close()
	members, bodies = map[string]string{}, map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading SaveImage's stream: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading SaveImage's stream: %v", err)
		}
		s := sha256.Sum256(b)
		members[h.Name] = hex.EncodeToString(s[:])
		bodies[h.Name] = b
	}
	if err := json.Unmarshal(bodies["manifest.json"], &man); err != nil || len(man) != 1 {
		t.Fatalf("SaveImage's manifest.json: %v %s", err, bodies["manifest.json"])
	}
	return man, members, bodies
}

// TestDeadDockerRoot: a dockerd of the test's own builds an image of two
// layers and runs containers (one changing files and writing logs to a
// volume and both streams, one exited, one only created); dockerd is then
// killed as a host losing power. Read offline, the data root lists them
// with the states they had; the image's layers rebuilt from disk are
// byte for byte what docker save gave (digest = diff_id), none found
// changed; logs are docker logs --timestamps's; nothing's access time
// changes. Then lower layers are edited on disk (a file of the same size,
// one of another size, a file added): SaveImage still streams the image,
// and LayerFindings names those layers and exactly those paths, each
// layer's Found the digest of what the stream holds.
func TestDeadDockerRoot(t *testing.T) {
	busybox := testenv.Tool(t, "busybox")
	d := testenv.Dockerd(t)
	t.Setenv("DOCKER_HOST", d.Host())
	if _, err := testenv.BusyboxImage(busybox, t.TempDir(), "amber-dr-base:1", "amber-dr:1", dataRootImage, true); err != nil {
		t.Fatal(err)
	}
	d.Docker("volume", "create", "vol1")
	web := strings.TrimSpace(d.Docker("run", "-d", "--name", "web", "--network", "none", "-v", "vol1:/v", "-l", "io.kubernetes.pod.namespace=ns", "-l", "io.kubernetes.pod.name=pod",
		"amber-dr:1", "sh", "-c", "echo out1; echo err1 >&2; echo x > /v/f; rm /data/b; echo new > /data/new; echo changed > /data/a; rm -r /data/gone; echo out2; touch /tmp/ready; sleep 1000"))
	d.Docker("run", "--name", "done", "--network", "none", "amber-dr:1", "sh", "-c", "echo bye")
	d.Docker("create", "--name", "made", "amber-dr:1")
	for i := 0; i < 100 && exec.Command("docker", "-H", d.Host(), "exec", web, "test", "-e", "/tmp/ready").Run() != nil; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	var before saved
	if err := json.Unmarshal([]byte(d.Docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", "amber-dr:1")), &before.diffIDs); err != nil {
		t.Fatal(err)
	}
	imageID := strings.TrimSpace(d.Docker("image", "inspect", "--format", "{{.Id}}", "amber-dr:1"))
	var graph struct{ LowerDir, UpperDir string }
	json.Unmarshal([]byte(d.Docker("image", "inspect", "--format", "{{json .GraphDriver.Data}}", "amber-dr:1")), &graph)
	savePath := filepath.Join(t.TempDir(), "save.tar")
	d.Docker("save", "-o", savePath, "amber-dr:1")
	before.layers = dockerSaveLayers(t, savePath)
	cmd := exec.Command("docker", "-H", d.Host(), "logs", "--timestamps", "web")
	var wantOut, wantErr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &wantOut, &wantErr
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	// The host loses power.
	d.Stop(syscall.SIGKILL)
	root := d.DataRoot()
	// A line that is no json-file record: skipped, not fatal.
	appendFile(t, filepath.Join(root, "containers", web, web+"-json.log"), "not json\n")
	// find's own reading of the directories sets their access times
	// once (relatime): the second listing is the one to keep.
	accessTimes(t, root)
	atimes := accessTimes(t, root)

	s, err := Open("/", root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if s.Driver() != "overlay2" {
		t.Errorf("Driver() = %q", s.Driver())
	}
	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, c := range list {
		states[c.Name] = c.State
		if c.Image != "amber-dr:1" || c.Runtime != "docker-root" || c.Created == "" {
			t.Errorf("listed %+v", c)
		}
		if c.Name == "web" && (c.Pod != "ns/pod" || c.ID != web || c.Started == "") {
			t.Errorf("listed %+v", c)
		}
	}
	if want := map[string]string{"web": "running", "done": "exited", "made": "created"}; fmt.Sprint(states) != fmt.Sprint(want) {
		t.Errorf("states %v, want %v", states, want)
	}
	imgs, err := s.ListImages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, im := range imgs {
		if im.ID == imageID {
			found = true
			if fmt.Sprint(im.Refs) != "[amber-dr:1]" || im.Size <= 0 || im.Created == "" {
				t.Errorf("listed image %+v", im)
			}
		}
	}
	if !found {
		t.Errorf("image %s not listed: %+v", imageID, imgs)
	}

	c, err := s.Container(ctx, "/web")
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != web || c.Running || c.Paused || c.Pid != 0 || c.State != "running" || c.Image != imageID || c.ImageRef != "amber-dr:1" || c.Driver != "overlay2" {
		t.Errorf("Container: %+v", c)
	}
	for _, ref := range []string{"web", web, web[:10]} {
		if c2, err := s.Container(ctx, ref); err != nil || c2.ID != web {
			t.Errorf("Container(%q): %v", ref, err)
		}
	}
	if _, err := s.Container(ctx, "nosuch"); !errors.Is(err, engine.ErrNoSuchObject) {
		t.Errorf("Container(nosuch): %v, want ErrNoSuchObject", err)
	}
	var raw struct {
		ID     string `json:"Id"`
		Source string
		Config struct{ Name string }
	}
	if err := json.Unmarshal(c.Raw, &raw); err != nil || raw.ID != web || raw.Config.Name != "/web" {
		t.Errorf("Raw: %v %s", err, c.Raw)
	}
	dirs, err := s.UpperDirs(c)
	if err != nil || len(dirs) != 2 {
		t.Fatalf("UpperDirs: %v %v", dirs, err)
	}
	if b, err := readNoatime(filepath.Join(dirs[0], "data/new")); err != nil || string(b) != "new\n" {
		t.Errorf("upper dir %s: data/new: %q %v", dirs[0], b, err)
	}
	if st, err := os.Lstat(filepath.Join(dirs[0], "data/b")); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("upper dir: data/b is no whiteout: %v", err)
	}
	var vol string
	for _, m := range c.Mounts {
		if m.Type == "volume" && m.Name == "vol1" && m.Destination == "/v" {
			vol = m.Name
		}
	}
	vd, err := s.VolumeDir(vol, "/somewhere/on/the/dead/host")
	if b, rerr := readNoatime(filepath.Join(vd, "f")); err != nil || rerr != nil || string(b) != "x\n" {
		t.Errorf("VolumeDir(%q): %s %v %q", vol, vd, err, b)
	}
	ls, err := s.Logs(ctx, web, false)
	if err != nil {
		t.Fatal(err)
	}
	var gotOut, gotErr bytes.Buffer
	if err := ls.Copy(&gotOut, &gotErr); err != nil {
		t.Fatal(err)
	}
	ls.Close()
	if gotOut.String() != wantOut.String() || gotErr.String() != wantErr.String() || ls.(*logStream).Skipped != 1 {
		t.Errorf("logs:\n%s%s\nwant:\n%s%s\nskipped %d", gotOut.String(), gotErr.String(), wantOut.String(), wantErr.String(), ls.(*logStream).Skipped)
	}
	if _, err := s.Changes(ctx, web); err == nil {
		t.Error("Changes answered without an engine")
	}

	img, err := s.Image(ctx, "amber-dr:1")
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != imageID || fmt.Sprint(img.DiffIDs) != fmt.Sprint(before.diffIDs) || len(img.DiffIDs) != 2 {
		t.Errorf("Image: %+v, engine: %s %v", img, imageID, before.diffIDs)
	}
	rc, err := s.SaveImage(ctx, "amber-dr:1")
	if err != nil {
		t.Fatal(err)
	}
	if f := s.LayerFindings("amber-dr:1"); len(f) != 0 {
		t.Errorf("findings on an unchanged image: %+v", f)
	}
	man, members, _ := readSave(t, rc)
	for i, l := range man[0].Layers {
		if "blobs/sha256/"+strings.TrimPrefix(before.diffIDs[i], "sha256:") != l || members[l] != strings.TrimPrefix(before.diffIDs[i], "sha256:") {
			t.Errorf("layer %d: %s of sha256 %s, diff_id %s", i, l, members[l], before.diffIDs[i])
		}
		if !before.layers[members[l]] {
			t.Errorf("layer %d (%s) is not one docker save gave (%v)", i, members[l], before.layers)
		}
	}
	if fmt.Sprint(man[0].RepoTags) != "[amber-dr:1]" || man[0].Config != "blobs/sha256/"+strings.TrimPrefix(imageID, "sha256:") {
		t.Errorf("manifest: %+v", man)
	}
	if after := accessTimes(t, root); after != atimes {
		t.Errorf("reading the data root changed access times:\n%s", lineDiff(atimes, after))
	}

	// The data root bind-mounted read-only, as an evidence disk is: all
	// of it reads.
	ro := t.TempDir()
	mnt := filepath.Join(ro, "var/lib/docker")
	os.MkdirAll(mnt, 0o755)
	testenv.Run(t, "mount", "--bind", root, mnt)
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	testenv.Run(t, "mount", "-o", "remount,ro,bind", mnt)
	rs, err := Open(ro, "")
	if err != nil {
		t.Fatalf("Open of a read-only mount: %v", err)
	}
	if l, err := rs.List(ctx); err != nil || len(l) != 3 {
		t.Errorf("List of a read-only mount: %v %v", l, err)
	}
	if c, err := rs.Container(ctx, "web"); err != nil {
		t.Errorf("Container of a read-only mount: %v", err)
	} else if dirs, err := rs.UpperDirs(c); err != nil || !strings.HasPrefix(dirs[0], mnt+"/") {
		t.Errorf("UpperDirs of a read-only mount: %v %v", dirs, err)
	}
	if ls, err := rs.Logs(ctx, web, false); err != nil || ls.Copy(io.Discard, io.Discard) != nil {
		t.Errorf("Logs of a read-only mount: %v", err)
	}
	if rc, err := rs.SaveImage(ctx, "amber-dr:1"); err != nil {
		t.Errorf("SaveImage of a read-only mount: %v", err)
	} else if _, ms, _ := readSave(t, rc); len(ms) != 4 || len(rs.LayerFindings(imageID)) != 0 {
		t.Errorf("SaveImage of a read-only mount: %v %v", ms, rs.LayerFindings(imageID))
	}
	if info := rs.Info(); info.Host != "docker-root:/var/lib/docker" || info.Offline == nil || info.Offline.Mount != mnt || !strings.Contains(info.Offline.Options, "ro") {
		t.Errorf("Info of a read-only mount: %+v %+v", info, info.Offline)
	}
	rs.Close()
	exec.Command("umount", mnt).Run()

	// An attacker edits the lower layers on disk.
	lower, upper := graph.LowerDir, graph.UpperDir
	if strings.Contains(lower, ":") || lower == "" || upper == "" {
		t.Fatalf("the engine's layer directories: %+v", graph)
	}
	passwd := filepath.Join(lower, "etc/passwd")
	b, err := os.ReadFile(passwd)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(passwd, bytes.Replace(b, []byte("root:x:0:0"), []byte("root::00:0"), 1), 0o644)
	os.WriteFile(filepath.Join(upper, "data/b"), []byte("a longer text\n"), 0o644)
	os.WriteFile(filepath.Join(upper, "data/planted"), []byte("evil\n"), 0o755)
	s2, err := Open("/", root)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	rc, err = s2.SaveImage(ctx, "amber-dr:1")
	if err != nil {
		t.Fatalf("SaveImage of an image changed on disk: %v", err)
	}
	findings := s2.LayerFindings("amber-dr:1")
	man, members, bodies := readSave(t, rc)
	got := map[string]string{}
	for _, f := range findings {
		var ps []string
		for _, p := range f.Paths {
			ps = append(ps, p.Path+" "+p.What)
		}
		sort.Strings(ps)
		got[f.DiffID] = strings.Join(ps, ", ")
		name := "blobs/sha256/" + strings.TrimPrefix(f.Found, "sha256:")
		if members[name] != strings.TrimPrefix(f.Found, "sha256:") {
			t.Errorf("layer %s found as %s: the stream holds %s", f.DiffID, f.Found, members[name])
		}
		if !strings.Contains(strings.Join(man[0].Layers, " "), name) {
			t.Errorf("manifest.json does not list %s: %v", name, man[0].Layers)
		}
	}
	want := map[string]string{before.diffIDs[0]: "/etc/passwd content", before.diffIDs[1]: "/data/b size, /data/planted added"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("findings:\n%v\nwant\n%v", got, want)
	}
	// The changed layer streamed as found holds the planted file.
	for _, f := range findings {
		if f.DiffID != before.diffIDs[1] {
			continue
		}
		tr := tar.NewReader(bytes.NewReader(bodies["blobs/sha256/"+strings.TrimPrefix(f.Found, "sha256:")]))
		var names []string
		for h, err := tr.Next(); err == nil; h, err = tr.Next() {
			names = append(names, h.Name)
			if h.Name == "data/planted" {
				if body, _ := io.ReadAll(tr); string(body) != "evil\n" {
					t.Errorf("data/planted holds %q", body)
				}
			}
		}
		if !strings.Contains(strings.Join(names, " "), "data/planted") || !strings.Contains(strings.Join(names, " "), "data/h") {
			t.Errorf("the layer as found lists %v", names)
		}
	}
	// The same layers again: the same digests (the fresh tar is
	// deterministic).
	rc, err = s2.SaveImage(ctx, "amber-dr:1")
	if err != nil {
		t.Fatal(err)
	}
	man2, _, _ := readSave(t, rc)
	if fmt.Sprint(man2) != fmt.Sprint(man) {
		t.Errorf("a second SaveImage: %v, first %v", man2, man)
	}
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// lineDiff is the lines of b not in a.
func lineDiff(a, b string) string {
	in := map[string]bool{}
	for _, l := range strings.Split(a, "\n") {
		in[l] = true
	}
	var out []string
	for _, l := range strings.Split(b, "\n") {
		if !in[l] {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// accessTimes lists the access time of every file but symbolic links
// under dir (find, not amber): reading a link's target sets its access
// time whatever the open flags (the kernel's readlink; no O_NOATIME).
func accessTimes(t *testing.T, dir string) string {
	t.Helper()
	return testenv.Run(t, "find", dir, "-path", "*/merged", "-prune", "-o", "-not", "-type", "l", "-printf", `%p %A@\n`)
}

// readNoatime reads a file as the test's oracle, leaving its access time.
func readNoatime(p string) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOATIME, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}
