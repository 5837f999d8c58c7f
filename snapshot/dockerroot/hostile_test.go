//go:build linux

package dockerroot

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
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"
	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/snapshot/engine"
)

// crafted is a hand-made data root: root/var/lib/docker is a symbolic
// link to /data/docker, to be resolved inside root.
type crafted struct {
	t        *testing.T
	root, dr string
	repos    map[string]map[string]string
}

func newCrafted(t *testing.T, driver string) *crafted {
	c := &crafted{t: t, root: filepath.Join(t.TempDir(), "root"), repos: map[string]map[string]string{}}
	c.dr = filepath.Join(c.root, "data/docker")
	c.mkdir("image/" + driver + "/imagedb/content/sha256")
	c.mkdir("containers")
	os.MkdirAll(filepath.Join(c.root, "var/lib"), 0o755)
	if err := os.Symlink("/data/docker", filepath.Join(c.root, "var/lib/docker")); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *crafted) mkdir(rel string) string {
	p := filepath.Join(c.dr, rel)
	if err := os.MkdirAll(p, 0o755); err != nil {
		c.t.Fatal(err)
	}
	return p
}

func (c *crafted) write(rel, body string) {
	c.mkdir(filepath.Dir(rel))
	if err := os.WriteFile(filepath.Join(c.dr, rel), []byte(body), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

func (c *crafted) link(rel, target string) {
	c.mkdir(filepath.Dir(rel))
	if err := os.Symlink(target, filepath.Join(c.dr, rel)); err != nil {
		c.t.Fatal(err)
	}
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// tarSplit is the gzipped tar-split of a layer tar.
func tarSplit(t *testing.T, layer []byte) []byte {
	var js, gz bytes.Buffer
	r, done, err := asm.NewInputTarStreamWithDone(bytes.NewReader(layer), storage.NewJSONPacker(&js), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, r)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(&gz)
	zw.Write(js.Bytes())
	zw.Close()
	return gz.Bytes()
}

// image writes an image of the given layers (diff IDs, hex) whose layer
// store entries mend sets up, under ref; it returns the image ID.
func (c *crafted) image(ref string, diffIDs []string, layer func(i int, chain string)) string {
	var ids []string
	for _, d := range diffIDs {
		ids = append(ids, "sha256:"+d)
	}
	cfg, _ := json.Marshal(map[string]any{"created": "2025-01-02T03:04:05Z", "rootfs": map[string]any{"type": "layers", "diff_ids": ids}})
	id := sum(cfg)
	c.write("image/overlay2/imagedb/content/sha256/"+id, string(cfg))
	for i, ch := range chainIDs(ids) {
		base := "image/overlay2/layerdb/sha256/" + ch + "/"
		c.write(base+"diff", ids[i])
		c.write(base+"size", "10")
		if i > 0 {
			c.write(base+"parent", "sha256:"+chainIDs(ids)[i-1])
		}
		layer(i, ch)
	}
	name, _, _ := strings.Cut(ref, ":")
	if c.repos[name] == nil {
		c.repos[name] = map[string]string{}
	}
	c.repos[name][ref] = "sha256:" + id
	b, _ := json.Marshal(map[string]any{"Repositories": c.repos})
	c.write("image/overlay2/repositories.json", string(b))
	return id
}

func hexID(n int) string { return fmt.Sprintf("%064x", n) }

// container writes a container record.
func (c *crafted) container(id, name, mountID string, mounts map[string]any) {
	rec, _ := json.Marshal(map[string]any{"ID": id, "Name": "/" + name, "Image": "sha256:" + hexID(99), "Driver": "overlay2",
		"Created": "2025-01-02T03:04:05Z", "State": map[string]any{"StartedAt": "2025-01-02T03:04:06Z", "FinishedAt": "2025-01-02T03:05:06Z"},
		"Config": map[string]any{"Image": "good:1"}, "MountPoints": mounts})
	c.write("containers/"+id+"/config.v2.json", string(rec))
	if mountID != "" {
		c.write("image/overlay2/layerdb/mounts/"+id+"/mount-id", mountID)
	}
}

// watchCanary watches dir and everything in it for any open or read;
// the returned function says what was seen.
func watchCanary(t *testing.T, dir string) func() []string {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	add := func(p string) {
		if _, err := unix.InotifyAddWatch(fd, p, unix.IN_OPEN|unix.IN_ACCESS); err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := os.ReadDir(dir) // before the watch: the test's own look
	add(dir)
	for _, e := range ents {
		add(filepath.Join(dir, e.Name()))
	}
	return func() []string {
		var seen []string
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Read(fd, buf)
			if n <= 0 || err != nil {
				return seen
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
				seen = append(seen, fmt.Sprintf("mask %#x %s", ev.Mask, name))
				off += unix.SizeofInotifyEvent + int(ev.Len)
			}
		}
	}
}

// TestHostileDataRoot: a crafted data root, reached through a symbolic
// link with an absolute target (resolved inside the root), holds a 100 MB
// config.v2.json, a record that is no JSON, mount-id and cache-id files
// climbing out with "../", link and lower files pointing out, a layer's
// diff directory, a volume's _data and a log file that are symbolic links
// to a canary directory outside the root, a layer store parent loop, a
// tar-split that is not gzip and one that is no JSON. Each answer is a
// clear error or a flagged listing, the others go on, nothing panics, and
// the canary is never opened (inotify).
func TestHostileDataRoot(t *testing.T) {
	testenv.Root(t) // trusted.overlay.* attributes and O_NOATIME on any file
	c := newCrafted(t, "overlay2")
	canary := filepath.Join(filepath.Dir(c.root), "canary")
	os.MkdirAll(canary, 0o755)
	os.WriteFile(filepath.Join(canary, "secret"), []byte("the examiner's own file\n"), 0o644)

	// A good layer: etc/motd, whose directory has link and lower files
	// pointing out (never read: a layer's directory comes from its
	// cache-id).
	layer := fixture.Layer(fixture.Dir("etc/"), fixture.File("etc/motd", "hi\n"))
	good := sum(layer)
	cacheGood := hexID(1)
	d := c.mkdir("overlay2/" + cacheGood + "/diff/etc")
	os.Chmod(d, 0o755)
	os.WriteFile(filepath.Join(d, "motd"), []byte("hi\n"), 0o644)
	os.Chmod(filepath.Join(d, "motd"), 0o644)
	os.Chtimes(filepath.Join(d, "motd"), fixture.Epoch, fixture.Epoch) // as Docker unpacks it
	c.write("overlay2/"+cacheGood+"/link", "../../../canary")
	c.write("overlay2/"+cacheGood+"/lower", "../../../canary:"+canary)
	split := tarSplit(t, layer)
	setLayer := func(cache string, split []byte) func(int, string) {
		return func(_ int, ch string) {
			c.write("image/overlay2/layerdb/sha256/"+ch+"/cache-id", cache)
			c.write("image/overlay2/layerdb/sha256/"+ch+"/tar-split.json.gz", string(split))
		}
	}
	c.image("good:1", []string{good}, setLayer(cacheGood, split))
	// The same layer under other diff IDs (other chains), each with its
	// own flaw.
	c.image("notgzip:1", []string{hexID(201)}, setLayer(cacheGood, []byte("not gzip at all")))
	var badJSON bytes.Buffer
	zw := gzip.NewWriter(&badJSON)
	zw.Write([]byte("{\"type\":1,\"payload\":\n}}}}\n"))
	zw.Close()
	c.image("badsplit:1", []string{hexID(202)}, setLayer(cacheGood, badJSON.Bytes()))
	c.image("climb:1", []string{hexID(203)}, setLayer("../../../canary", split))
	c.image("abs:1", []string{hexID(204)}, setLayer(canary, split))
	cacheLink := hexID(2)
	c.link("overlay2/"+cacheLink+"/diff", canary)
	c.image("linked:1", []string{hexID(205)}, setLayer(cacheLink, split))
	c.image("loop:1", []string{hexID(206), hexID(207)}, func(i int, ch string) {
		setLayer(cacheGood, split)(i, ch)
		if i == 1 {
			c.write("image/overlay2/layerdb/sha256/"+ch+"/parent", "sha256:"+ch)
		}
	})
	// An image config that is no JSON (its name its digest).
	c.write("image/overlay2/imagedb/content/sha256/"+sum([]byte("{")), "{")

	// Containers.
	big, broken, climb, linked, ok := hexID(11), hexID(12), hexID(13), hexID(14), hexID(15)
	c.mkdir("containers/" + big)
	f, _ := os.Create(filepath.Join(c.dr, "containers", big, "config.v2.json"))
	f.Truncate(100 << 20)
	f.Close()
	c.write("containers/"+broken+"/config.v2.json", "{not json")
	c.container(climb, "climb", "../../../canary", map[string]any{"/x": map[string]any{"Type": "bind", "Source": "../../../../canary", "Destination": "/x"}})
	c.container(linked, "linked", hexID(3), map[string]any{"/v": map[string]any{"Type": "volume", "Name": "evil", "Source": canary, "Destination": "/v"}})
	c.link("overlay2/"+hexID(3)+"/diff", canary)
	c.link("volumes/evil/_data", canary)
	c.link("containers/"+linked+"/"+linked+"-json.log", filepath.Join(canary, "secret"))
	c.container(ok, "ok", hexID(4), nil)
	c.mkdir("overlay2/" + hexID(4) + "/diff")
	c.write("containers/"+ok+"/hostconfig.json", `{"LogConfig":{"Type":"journald"}}`)

	seen := watchCanary(t, canary)
	ctx := context.Background()
	s, err := Open(c.root, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if want := filepath.Join(c.root, "data/docker"); s.real != want {
		t.Errorf("the data root resolved to %s, want %s", s.real, want)
	}
	list, err := s.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	states := map[string]string{}
	for _, sm := range list {
		states[sm.ID] = sm.State
	}
	if len(list) != 5 || !strings.Contains(states[big], "unreadable: ") || !strings.Contains(states[big], "over the bound") ||
		!strings.HasPrefix(states[broken], "unreadable: ") || states[ok] != "exited" {
		t.Errorf("List: %+v", list)
	}
	if _, err := s.Container(ctx, big); err == nil || !strings.Contains(err.Error(), "config.v2.json is 104857600 bytes, over the bound") {
		t.Errorf("Container of a 100 MB record: %v", err)
	}
	claim := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, engine.ErrEngineClaim) {
			t.Errorf("%s: %v, want a refused claim", what, err)
		}
	}
	for _, id := range []string{climb, linked} {
		ct, err := s.Container(ctx, id)
		if err != nil {
			t.Fatalf("Container: %v", err)
		}
		_, err = s.UpperDirs(ct)
		claim("UpperDirs of "+id, err)
	}
	_, err = s.VolumeDir("evil", canary)
	claim("VolumeDir of a linked volume", err)
	_, err = s.VolumeDir("../../canary", "")
	claim("VolumeDir ../../canary", err)
	if ls, err := s.Logs(ctx, linked, false); err == nil {
		err = ls.Copy(io.Discard, io.Discard)
		claim("Logs through a link", err)
	}
	var un *engine.Unavailable
	if _, err := s.Logs(ctx, ok, false); !errors.As(err, &un) || !strings.Contains(err.Error(), "journald") {
		t.Errorf("Logs of a journald container: %v", err)
	}

	imgs, err := s.ListImages(ctx)
	if err != nil || len(imgs) != 8 {
		t.Errorf("ListImages: %d %v", len(imgs), err)
	}
	rc, err := s.SaveImage(ctx, "good:1")
	if err != nil {
		t.Fatalf("SaveImage good:1: %v", err)
	}
	_, members, _ := readSave(t, rc)
	if members["blobs/sha256/"+good] != good || len(s.LayerFindings("good:1")) != 0 {
		t.Errorf("good:1: %v %v", members, s.LayerFindings("good:1"))
	}
	for ref, want := range map[string]string{"notgzip:1": "not gzip", "badsplit:1": "tar-split", "climb:1": "not 64 hex digits",
		"abs:1": "not 64 hex digits", "linked:1": "symbolic link", "loop:1": "loops"} {
		rc, err := s.SaveImage(ctx, ref)
		if err == nil {
			rc.Close()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("SaveImage %s: %v, want an error saying %q", ref, err, want)
		}
	}
	if _, err := s.Image(ctx, "loop:1"); err == nil || !strings.Contains(err.Error(), "loops") {
		t.Errorf("Image of a parent loop: %v", err)
	}
	if _, err := s.Image(ctx, sum([]byte("{"))); err == nil {
		t.Error("Image of a config that is no JSON: no error")
	}
	if ev := seen(); len(ev) > 0 {
		t.Errorf("the canary outside the root was opened: %v", ev)
	}
}

// TestOtherDriver: a data root of another graph driver lists, and its
// capture calls name the driver.
func TestOtherDriver(t *testing.T) {
	c := newCrafted(t, "vfs")
	c.container(hexID(1), "web", "", nil)
	os.MkdirAll(filepath.Join(c.root, "etc"), 0o755)
	os.WriteFile(filepath.Join(c.root, "etc/hostname"), []byte("deadhost\n"), 0o644)
	s, err := Open(c.root, "/var/lib/docker")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if info := s.Info(); s.Driver() != "vfs" || info.StorageDriver != "vfs" || info.Name != "deadhost" || info.Runtime != "docker" || !info.Local ||
		info.Host != "docker-root:/var/lib/docker" || info.Offline == nil || info.Offline.Root != c.root {
		t.Errorf("driver %q, info %+v", s.Driver(), info)
	}
	if l, err := s.List(context.Background()); err != nil || len(l) != 1 || l[0].Name != "web" {
		t.Errorf("List: %+v %v", l, err)
	}
	var un *engine.Unavailable
	if _, err := s.SaveImage(context.Background(), "x"); !errors.As(err, &un) || err.Error() != "storage driver vfs is not read offline: overlay2 only" {
		t.Errorf("SaveImage: %v", err)
	}
	ct, err := s.Container(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpperDirs(ct); !errors.As(err, &un) || !strings.Contains(err.Error(), "vfs") {
		t.Errorf("UpperDirs: %v", err)
	}
}

// TestLogsRotated: the json-file logs are read oldest first (a compressed
// rotated file, a plain one, the live one), each record as docker logs
// --timestamps prints it on its stream; lines that are no record (one not
// JSON, one of 2 MiB) are counted and skipped. An ID prefix two
// containers share is an error naming both.
func TestLogsRotated(t *testing.T) {
	c := newCrafted(t, "overlay2")
	id := hexID(16)
	c.container(id, "web", "", nil)
	c.container(hexID(17), "db", "", nil)
	rec := func(stream, log, ts string) string {
		b, _ := json.Marshal(map[string]string{"log": log, "stream": stream, "time": ts})
		return string(b) + "\n"
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(rec("stdout", "one\n", "2025-01-02T03:04:05.1Z")))
	zw.Close()
	base := "containers/" + id + "/" + id + "-json.log"
	c.write(base+".2.gz", gz.String())
	c.write(base+".1", rec("stderr", "two\n", "2025-01-02T03:04:06.123456789Z"))
	c.write(base, rec("stdout", "three\n", "2025-01-02T03:04:07Z")+"not json\n"+strings.Repeat("x", 2<<20)+"\n"+rec("stdout", "four", "2025-01-02T03:04:08Z"))
	s, err := Open(c.root, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ls, err := s.Logs(context.Background(), id, false)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := ls.Copy(&out, &errOut); err != nil {
		t.Fatal(err)
	}
	wantOut := "2025-01-02T03:04:05.100000000Z one\n2025-01-02T03:04:07.000000000Z three\n2025-01-02T03:04:08.000000000Z four"
	if out.String() != wantOut || errOut.String() != "2025-01-02T03:04:06.123456789Z two\n" || ls.(*logStream).Skipped != 2 {
		t.Errorf("stdout %q\nstderr %q\nskipped %d", out.String(), errOut.String(), ls.(*logStream).Skipped)
	}
	if _, err := s.Container(context.Background(), "000000"); err == nil || !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), hexID(17)) {
		t.Errorf("an ambiguous prefix: %v", err)
	}
}

// TestListLarge: a data root of 1,000 containers and 5,000 images lists in
// well under a second (no layer is read).
func TestListLarge(t *testing.T) {
	c := newCrafted(t, "overlay2")
	for i := 0; i < 1000; i++ {
		c.container(hexID(100000+i), fmt.Sprintf("c%d", i), hexID(200000+i), map[string]any{"/v": map[string]any{"Type": "volume", "Name": "v", "Destination": "/v"}})
	}
	repos := map[string]string{}
	for i := 0; i < 5000; i++ {
		ids := []string{"sha256:" + hexID(1), "sha256:" + hexID(2+i%7), "sha256:" + hexID(300000+i)}
		cfg, _ := json.Marshal(map[string]any{"created": "2025-01-02T03:04:05Z", "rootfs": map[string]any{"type": "layers", "diff_ids": ids}})
		id := sum(cfg)
		c.write("image/overlay2/imagedb/content/sha256/"+id, string(cfg))
		for _, ch := range chainIDs(ids) {
			if _, err := os.Stat(filepath.Join(c.dr, "image/overlay2/layerdb/sha256", ch)); err != nil {
				c.write("image/overlay2/layerdb/sha256/"+ch+"/size", "1000")
			}
		}
		repos[fmt.Sprintf("img%d:1", i)] = "sha256:" + id
	}
	b, _ := json.Marshal(map[string]any{"Repositories": map[string]any{"img": repos}})
	c.write("image/overlay2/repositories.json", string(b))
	unix.Sync()
	s, err := Open(c.root, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	l, err := s.List(context.Background())
	if err != nil || len(l) != 1000 {
		t.Fatalf("List: %d %v", len(l), err)
	}
	imgs, err := s.ListImages(context.Background())
	if err != nil || len(imgs) != 5000 || imgs[0].Size != 3000 || len(imgs[0].Refs) != 1 {
		t.Fatalf("ListImages: %d %v %+v", len(imgs), err, imgs[0])
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("listing 1,000 containers and 5,000 images took %v", took)
	} else {
		t.Logf("listing 1,000 containers and 5,000 images took %v", took)
	}
}
