//go:build linux

package containerdroot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/fnv"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// crafted is a made-up dead host: ROOT (host) whose var/lib/containerd
// (data) holds one image of one layer and one container c1 in namespace
// default, with an active overlayfs snapshot numbered 1.
type crafted struct {
	host, data string
	layer      []byte // the layer blob
	layerHex   string
	configHex  string
}

// craftOpts changes the records before they are written.
type craftOpts struct {
	spec      []byte            // the container's spec (JSON)
	labels    map[string]string // its labels
	snapName  string            // the backend key of its snapshot
	ext       map[string][]byte // extensions (JSON values)
	moreCtrs  int               // more containers, c2..
	moreNames []string          // more container IDs
	gzipLayer bool              // the layer blob gzip-compressed
	layerTar  []byte            // the layer (default: etc/passwd alone)
	twice     bool              // the image has the layer at two positions
}

func put(t *testing.T, b *bolt.Bucket, k string, v []byte) {
	t.Helper()
	if err := b.Put([]byte(k), v); err != nil {
		t.Fatal(err)
	}
}

func bucket(t *testing.T, tx *bolt.Tx, path ...string) *bolt.Bucket {
	t.Helper()
	b, err := tx.CreateBucketIfNotExists([]byte(path[0]))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range path[1:] {
		if b, err = b.CreateBucketIfNotExists([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func anyOf(t *testing.T, url string, v []byte) []byte {
	t.Helper()
	b, err := proto.Marshal(&anypb.Any{TypeUrl: url, Value: v})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func craft(t *testing.T, o craftOpts) *crafted {
	t.Helper()
	host := t.TempDir()
	c := &crafted{host: host, data: filepath.Join(host, "var/lib/containerd")}
	// The image: one uncompressed layer holding etc/passwd.
	var lb bytes.Buffer
	tw := tar.NewWriter(&lb)
	tw.WriteHeader(&tar.Header{Name: "etc/passwd", Mode: 0o644, Size: 5, Typeflag: tar.TypeReg})
	tw.Write([]byte("root\n"))
	tw.Close()
	if o.layerTar != nil {
		lb = *bytes.NewBuffer(o.layerTar)
	}
	diffID := sha(lb.Bytes())
	c.layer, c.layerHex = lb.Bytes(), diffID
	layerType := "application/vnd.oci.image.layer.v1.tar"
	if o.gzipLayer {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		zw.Write(lb.Bytes())
		zw.Close()
		c.layer, c.layerHex, layerType = zb.Bytes(), sha(zb.Bytes()), layerType+"+gzip"
	}
	diffIDs := `"sha256:` + diffID + `"`
	layers := `{"mediaType":"` + layerType + `","digest":"sha256:` + c.layerHex + `","size":` + itoa(len(c.layer)) + `}`
	if o.twice {
		diffIDs, layers = diffIDs+","+diffIDs, layers+","+layers
	}
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[` + diffIDs + `]}}`)
	c.configHex = sha(cfg)
	mf := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` +
		c.configHex + `","size":` + itoa(len(cfg)) + `},"layers":[` + layers + `]}`)
	for _, b := range [][]byte{c.layer, cfg, mf} {
		writeFile(t, filepath.Join(c.data, blobDir, sha(b)), b)
	}
	writeFile(t, filepath.Join(c.data, overlayRoot, "snapshots/1/fs/srv/added"), []byte("new\n"))
	if o.spec == nil {
		o.spec = []byte(`{"ociVersion":"1.0.2","process":{"terminal":true,"user":{"uid":0,"gid":0},"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"},"mounts":[{"destination":"/data","type":"bind","source":"/etc","options":["rbind","ro"]}]}`)
	}
	if o.snapName == "" {
		o.snapName = "default/5/c1"
	}
	now, _ := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).MarshalBinary()
	db, err := bolt.Open(filepath.Join(c.data, metaDB+".tmp"), 0o644, nil)
	if err != nil {
		// The directory first.
		os.MkdirAll(filepath.Join(c.data, filepath.Dir(metaDB)), 0o755)
		if db, err = bolt.Open(filepath.Join(c.data, metaDB+".tmp"), 0o644, nil); err != nil {
			t.Fatal(err)
		}
	}
	err = db.Update(func(tx *bolt.Tx) error {
		put(t, bucket(t, tx, "v1"), "version", []byte{3})
		ids := append([]string{"c1"}, o.moreNames...)
		for i := 0; i < o.moreCtrs; i++ {
			ids = append(ids, "c"+itoa(i+2))
		}
		for _, id := range ids {
			cb := bucket(t, tx, "v1", "default", "containers", id)
			put(t, cb, "image", []byte("docker.io/library/x:1"))
			put(t, cb, "snapshotter", []byte("overlayfs"))
			put(t, cb, "snapshotKey", []byte(id))
			put(t, cb, "createdat", now)
			put(t, cb, "updatedat", now)
			put(t, bucket(t, tx, "v1", "default", "containers", id, "runtime"), "name", []byte("io.containerd.runc.v2"))
			if id == "c1" {
				put(t, cb, "spec", anyOf(t, "types.containerd.io/opencontainers/runtime-spec/1/Spec", o.spec))
				if len(o.labels) > 0 {
					lb := bucket(t, tx, "v1", "default", "containers", id, "labels")
					for k, v := range o.labels {
						put(t, lb, k, []byte(v))
					}
				}
				for k, v := range o.ext {
					put(t, bucket(t, tx, "v1", "default", "containers", id, "extensions"), k, anyOf(t, "github.com/containerd/cri/pkg/store/container/Metadata", v))
				}
			}
		}
		put(t, bucket(t, tx, "v1", "default", "snapshots", "overlayfs", "c1"), "name", []byte(o.snapName))
		ib := bucket(t, tx, "v1", "default", "images", "docker.io/library/x:1")
		put(t, ib, "createdat", now)
		tb := bucket(t, tx, "v1", "default", "images", "docker.io/library/x:1", "target")
		put(t, tb, "digest", []byte("sha256:"+sha(mf)))
		put(t, tb, "mediatype", []byte("application/vnd.oci.image.manifest.v1+json"))
		put(t, tb, "size", binary.AppendVarint(nil, int64(len(mf))))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	os.Rename(filepath.Join(c.data, metaDB+".tmp"), filepath.Join(c.data, metaDB))
	os.MkdirAll(filepath.Join(c.data, overlayRoot), 0o755)
	odb, err := bolt.Open(filepath.Join(c.data, overlayDB), 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	odb.Update(func(tx *bolt.Tx) error {
		sb := bucket(t, tx, "v1", "snapshots", "default/5/c1")
		put(t, sb, "id", binary.AppendUvarint(nil, 1))
		put(t, sb, "kind", []byte{kindActive})
		return nil
	})
	odb.Close()
	return c
}

func itoa(n int) string { return strconv.Itoa(n) }

// canary is a file outside every crafted root, watched with inotify:
// noTouch fails the test if it, or its directory, was opened or read.
type canary struct {
	dir, file string
	fd        int
}

func newCanary(t *testing.T) *canary {
	t.Helper()
	c := &canary{dir: t.TempDir()}
	c.file = filepath.Join(c.dir, "secret")
	writeFile(t, c.file, []byte("the examiner's own secret\n"))
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	c.fd = fd
	t.Cleanup(func() { unix.Close(fd) })
	for _, p := range []string{c.dir, c.file} {
		if _, err := unix.InotifyAddWatch(fd, p, unix.IN_OPEN|unix.IN_ACCESS); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *canary) noTouch(t *testing.T) {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Read(c.fd, buf)
	if err == unix.EAGAIN || n <= 0 {
		return
	}
	t.Errorf("the canary outside the root was opened or read (%d bytes of inotify events)", n)
}

// all asks the store everything, as a capture would; errors are
// returned, never a panic.
func all(s *Store) []error {
	ctx := context.Background()
	var errs []error
	_, err := s.List(ctx)
	errs = append(errs, err)
	_, err = s.ListImages(ctx)
	errs = append(errs, err)
	c, err := s.Container(ctx, "c1")
	errs = append(errs, err)
	if c != nil {
		_, err = s.UpperDirs(c)
		errs = append(errs, err)
	}
	_, err = s.Image(ctx, "docker.io/library/x:1")
	errs = append(errs, err)
	if rc, err := s.SaveImage(ctx, "docker.io/library/x:1"); err == nil {
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		errs = append(errs, err)
	} else {
		errs = append(errs, err)
	}
	if l, err := s.Logs(ctx, "c1", false); err == nil {
		errs = append(errs, l.Copy(io.Discard, io.Discard))
		l.Close()
	}
	return errs
}

func TestCraftedRootReads(t *testing.T) {
	c := craft(t, craftOpts{})
	s, err := Open(c.host, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i, err := range all(s) {
		if err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	ct, err := s.Container(context.Background(), "default/c1")
	if err != nil {
		t.Fatal(err)
	}
	if !ct.Tty || len(ct.Mounts) != 1 || ct.Mounts[0].Source != "/etc" || ct.Mounts[0].RW || ct.Image != "sha256:"+c.configHex {
		t.Errorf("Container = %+v", ct)
	}
	if _, err := s.VolumeDir("x", "/etc"); !errors.Is(err, engine.ErrEngineClaim) {
		t.Errorf("VolumeDir: %v", err)
	}
	if err := s.Unpause(context.Background(), "c1"); !errors.Is(err, engine.ErrNotPaused) {
		t.Errorf("Unpause: %v", err)
	}
	var u *engine.Unavailable
	if _, err := s.Changes(context.Background(), "c1"); !errors.As(err, &u) {
		t.Errorf("Changes: %v", err)
	}
}

// mustFail checks err is an error whose message holds every want.
func mustFail(t *testing.T, what string, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error", what)
		return
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: %v; want it to say %q", what, err, w)
		}
	}
}

// TestHostileDatabases: a meta.db that is no bbolt database, empty, a
// FIFO, a link out of the root, cut short or with bytes overwritten:
// clear errors naming the file, never a panic or a crash (a corrupt
// file's pages point past its end: the mapped read's fault is caught).
func TestHostileDatabases(t *testing.T) {
	can := newCanary(t)
	c := craft(t, craftOpts{})
	meta := filepath.Join(c.data, metaDB)
	good, err := os.ReadFile(meta)
	if err != nil {
		t.Fatal(err)
	}

	os.WriteFile(meta, bytes.Repeat([]byte("not a database\n"), 1000), 0o644)
	_, err = Open(c.host, "")
	mustFail(t, "a meta.db of text", err, meta, "not a bbolt database")

	os.WriteFile(meta, nil, 0o644)
	_, err = Open(c.host, "")
	mustFail(t, "an empty meta.db", err, meta, "not a bbolt database")
	if st, _ := os.Stat(meta); st.Size() != 0 {
		t.Errorf("the empty meta.db was written: %d bytes", st.Size())
	}

	os.Remove(meta)
	syscall.Mkfifo(meta, 0o644)
	_, err = Open(c.host, "")
	mustFail(t, "a FIFO for meta.db", err, "not a regular file")

	os.Remove(meta)
	os.Symlink(can.file, meta)
	_, err = Open(c.host, "")
	mustFail(t, "meta.db a link out of the root", err, "symbolic link")
	if !errors.Is(err, engine.ErrEngineClaim) {
		t.Errorf("meta.db a link out: %v, not a claim", err)
	}
	os.Remove(meta)

	// Cut short: at every page boundary and within.
	for _, n := range []int{20, 4096, 4096 + 100, 8192, 12288, len(good) / 2, len(good) - 4096} {
		os.WriteFile(meta, good[:n], 0o644)
		if s, err := Open(c.host, ""); err == nil {
			all(s)
			s.Close()
		}
	}
	// Overwritten: random bytes over random places, the meta pages
	// kept valid in half the cases.
	rng := rand.New(rand.NewSource(17))
	for i := 0; i < 300; i++ {
		b := bytes.Clone(good)
		from := 0
		if i%2 == 0 {
			from = 8192
		}
		for k := 0; k < 1+rng.Intn(8); k++ {
			off := from + rng.Intn(len(b)-from-16)
			rng.Read(b[off : off+1+rng.Intn(16)])
		}
		os.WriteFile(meta, b, 0o644)
		if s, err := Open(c.host, ""); err == nil {
			all(s)
			s.Close()
		}
	}
	can.noTouch(t)
}

// TestHostileLayout: links and traversal in the data root, its
// snapshots and its blobs, changed blobs, oversized records: refused or
// errors naming what is wrong; the canary outside the root never opened.
func TestHostileLayout(t *testing.T) {
	can := newCanary(t)
	ctx := context.Background()

	t.Run("data root a link out", func(t *testing.T) {
		c := craft(t, craftOpts{})
		os.RemoveAll(filepath.Join(c.host, "var/lib/containerd"))
		// An absolute target is the dead host's path, a relative one
		// stops at its root: neither reaches the canary, nor a whole
		// containerd root (watched) outside the root.
		bait := craft(t, craftOpts{})
		watch := &canary{dir: filepath.Join(bait.data, filepath.Dir(metaDB))}
		watch.fd, _ = unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
		defer unix.Close(watch.fd)
		if _, err := unix.InotifyAddWatch(watch.fd, watch.dir, unix.IN_OPEN|unix.IN_ACCESS); err != nil {
			t.Fatal(err)
		}
		defer watch.noTouch(t)
		for _, target := range []string{can.dir, "../../../../../../../../" + can.dir, bait.data, "../../../../../../../../" + bait.data} {
			os.Remove(filepath.Join(c.host, "var/lib/containerd"))
			os.Symlink(target, filepath.Join(c.host, "var/lib/containerd"))
			_, err := Open(c.host, "")
			mustFail(t, "a data root linked to "+target, err, "no such file")
		}
		// A loop of links.
		os.Remove(filepath.Join(c.host, "var/lib/containerd"))
		os.Symlink("/var/lib/containerd", filepath.Join(c.host, "var/lib/containerd"))
		_, err := Open(c.host, "")
		mustFail(t, "a data root that is a loop of links", err)
	})

	t.Run("fs a link out", func(t *testing.T) {
		c := craft(t, craftOpts{})
		fsDir := filepath.Join(c.data, overlayRoot, "snapshots/1/fs")
		os.RemoveAll(fsDir)
		os.Symlink(can.dir, fsDir)
		s, err := Open(c.host, "")
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_, err = s.Container(ctx, "c1")
		if !errors.Is(err, engine.ErrEngineClaim) {
			t.Errorf("Container whose fs directory is a link out: %v, want a claim refused", err)
		}
		// Given a container record that names it anyway: refused.
		_, err = s.UpperDirs(&engine.Container{Driver: "overlayfs", Storage: map[string]string{"UpperDir": filepath.Join(s.realData, overlayRoot, "snapshots/1/fs")}})
		if !errors.Is(err, engine.ErrEngineClaim) {
			t.Errorf("UpperDirs of a link out: %v", err)
		}
		for _, up := range []string{can.dir, filepath.Join(s.realData, overlayRoot, "snapshots/../../../../../"+can.dir+"/fs"), filepath.Join(s.realData, overlayRoot, "snapshots/x/fs")} {
			if _, err := s.UpperDirs(&engine.Container{Driver: "overlayfs", Storage: map[string]string{"UpperDir": up}}); !errors.Is(err, engine.ErrEngineClaim) {
				t.Errorf("UpperDirs of %s: %v", up, err)
			}
		}
	})

	t.Run("snapshots a link out", func(t *testing.T) {
		c := craft(t, craftOpts{})
		snaps := filepath.Join(c.data, overlayRoot, "snapshots")
		os.RemoveAll(snaps)
		os.MkdirAll(filepath.Join(can.dir, "1x"), 0o755)
		os.Symlink(can.dir, snaps)
		s, err := Open(c.host, "")
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Container(ctx, "c1"); !errors.Is(err, engine.ErrEngineClaim) {
			t.Errorf("Container whose snapshots directory is a link out: %v", err)
		}
		os.Remove(filepath.Join(can.dir, "1x"))
	})

	t.Run("snapshot names with ..", func(t *testing.T) {
		c := craft(t, craftOpts{snapName: "../../../../" + can.dir})
		s, err := Open(c.host, "")
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ct, err := s.Container(ctx, "c1")
		if err != nil {
			t.Fatal(err)
		}
		var u *engine.Unavailable
		if _, err := s.UpperDirs(ct); !errors.As(err, &u) {
			t.Errorf("UpperDirs of a snapshot named with ..: %v, want unavailable (no such snapshot)", err)
		}
	})

	t.Run("blobs changed or linked out", func(t *testing.T) {
		c := craft(t, craftOpts{})
		lp := filepath.Join(c.data, blobDir, c.layerHex)
		b := bytes.Clone(c.layer)
		b[600] ^= 1
		os.WriteFile(lp, b, 0o644)
		s, err := Open(c.host, "")
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		rc, err := s.SaveImage(ctx, "x:1")
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		mustFail(t, "a layer changed on disk", err, lp, "changed on disk")

		cp := filepath.Join(c.data, blobDir, c.configHex)
		cb, _ := os.ReadFile(cp)
		cb[3] ^= 1
		os.WriteFile(cp, cb, 0o644)
		_, err = s.Image(ctx, "x:1")
		mustFail(t, "a config changed on disk", err, cp, "changed on disk")

		os.Remove(cp)
		os.Symlink(can.file, cp)
		_, err = s.Image(ctx, "x:1")
		if !errors.Is(err, engine.ErrEngineClaim) {
			t.Errorf("a config linked out of the root: %v", err)
		}
		os.Remove(lp)
		os.Remove(cp)
		os.WriteFile(cp, cb, 0o644)
		cb[3] ^= 1
		os.WriteFile(cp, cb, 0o644)
		_, err = s.SaveImage(ctx, "x:1")
		mustFail(t, "a layer gone from the content store", err, "layer 1 of 1", c.layerHex, "not in the content store")
	})

	t.Run("huge records", func(t *testing.T) {
		big := make([]byte, maxSpec+10)
		copy(big, `{"x":"`)
		for i := 6; i < len(big)-2; i++ {
			big[i] = 'a'
		}
		copy(big[len(big)-2:], `"}`)
		c := craft(t, craftOpts{spec: big, moreCtrs: 2})
		s, err := Open(c.host, "")
		if err != nil {
			t.Fatal(err)
		}
		list, err := s.List(ctx)
		if err != nil || len(list) != 3 {
			t.Errorf("List with a huge spec: %v, %v; want the 3 containers", list, err)
		}
		_, err = s.Container(ctx, "c1")
		mustFail(t, "a 16 MiB spec", err, "c1", "spec has")
		if _, err := s.Container(ctx, "c2"); err != nil {
			t.Errorf("another container: %v", err)
		}
		s.Close()

		c = craft(t, craftOpts{labels: map[string]string{"huge": strings.Repeat("x", maxValue+1)}, moreCtrs: 1})
		s, err = Open(c.host, "")
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		list, err = s.List(ctx)
		if err != nil || len(list) != 2 || !strings.Contains(list[0].State, "unreadable record") || list[1].State != StateOffline {
			t.Errorf("List with a huge label: %+v, %v; want c1 noted unreadable and c2 listed", list, err)
		}
		_, err = s.Container(ctx, "c1")
		mustFail(t, "a huge label", err, "c1", "labels")
	})

	t.Run("logs", func(t *testing.T) {
		pod := map[string]string{engine.LabelPodNamespace: "prod", engine.LabelPodName: "web", engine.LabelContainerName: "app"}
		logDir := "/var/log/pods/prod_web_uid1/app"
		meta := func(p string) map[string][]byte {
			return map[string][]byte{criMetadata: []byte(`{"Version":"v1","Metadata":{"LogPath":"` + p + `"}}`)}
		}
		line := func(ts, text string) string { return "2026-01-02T03:04:0" + ts + ".000000000Z stdout F " + text + "\n" }
		c := craft(t, craftOpts{labels: pod, ext: meta(logDir + "/0.log")})
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write([]byte(line("1", "first")))
		zw.Close()
		writeFile(t, filepath.Join(c.host, logDir, "0.log.20260102-030401.gz"), gz.Bytes())
		writeFile(t, filepath.Join(c.host, logDir, "0.log.20260102-030402"), []byte(line("2", "second")))
		writeFile(t, filepath.Join(c.host, logDir, "0.log"), []byte(line("3", "third")))
		s, err := Open(c.host, "")
		if err != nil {
			t.Fatal(err)
		}
		l, err := s.Logs(ctx, "c1", false)
		if err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		if err := l.Copy(&out, &errb); err != nil {
			t.Fatal(err)
		}
		l.Close()
		s.Close()
		if want := "2026-01-02T03:04:01.000000000Z first\n2026-01-02T03:04:02.000000000Z second\n2026-01-02T03:04:03.000000000Z third\n"; out.String() != want {
			t.Errorf("logs = %q, want %q", out.String(), want)
		}

		// The log path leading out, or the file a link out: refused.
		for _, p := range []string{"/var/log/pods/../../../" + can.file, can.file, "/var/log/pods/x"} {
			c := craft(t, craftOpts{labels: pod, ext: meta(p)})
			s, err := Open(c.host, "")
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Logs(ctx, "c1", false)
			s.Close()
			if !errors.Is(err, engine.ErrEngineClaim) {
				t.Errorf("a log path %s: %v, want refused", p, err)
			}
		}
		c = craft(t, craftOpts{labels: pod, ext: meta(logDir + "/0.log")})
		os.MkdirAll(filepath.Join(c.host, logDir), 0o755)
		os.Symlink(can.file, filepath.Join(c.host, logDir, "0.log"))
		s, err = Open(c.host, "")
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Logs(ctx, "c1", false)
		s.Close()
		if !errors.Is(err, engine.ErrEngineClaim) {
			t.Errorf("a log file linked out: %v, want refused", err)
		}
		// No pod: none.
		c = craft(t, craftOpts{})
		s, _ = Open(c.host, "")
		_, err = s.Logs(ctx, "c1", false)
		s.Close()
		var u *engine.Unavailable
		if !errors.As(err, &u) {
			t.Errorf("the logs of a container that is no pod's: %v", err)
		}
	})
	can.noTouch(t)
}

// TestAmbiguousAndListing: an ID in two namespaces needs its namespace;
// a thousand containers list fast.
func TestListingScale(t *testing.T) {
	c := craft(t, craftOpts{moreCtrs: 999})
	s, err := Open(c.host, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	list, err := s.List(context.Background())
	if err != nil || len(list) != 1000 {
		t.Fatalf("List: %d, %v", len(list), err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("listing 1,000 containers took %v", d)
	}
}

// TestDatabasePastItsEnd: a meta.db whose root page lies past the end of
// the file, inside the mapping bbolt makes (rounded up to a power of
// two): reading it faults (SIGBUS), which must be an error, not a crash.
func TestDatabasePastItsEnd(t *testing.T) {
	c := craft(t, craftOpts{})
	meta := filepath.Join(c.data, metaDB)
	b, err := os.ReadFile(meta)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	if binary.LittleEndian.Uint32(b[24:28]) != page || len(b) < 5*page {
		t.Fatalf("the crafted meta.db has pages of %d bytes and is %d long: the test needs 4 KiB pages and at least 5 of them", binary.LittleEndian.Uint32(b[24:28]), len(b))
	}
	b = b[:5*page] // mapped as 32 KiB: pages 5 to 7 fault
	for _, off := range []int{0, page} {
		m := b[off : off+page]
		binary.LittleEndian.PutUint64(m[32:], 6) // the root bucket's page
		if binary.LittleEndian.Uint64(m[48:]) >= 5 {
			binary.LittleEndian.PutUint64(m[48:], 2) // the freelist's
		}
		binary.LittleEndian.PutUint64(m[56:], 8) // the high-water mark
		h := fnv.New64a()
		h.Write(m[16:72])
		binary.LittleEndian.PutUint64(m[72:], h.Sum64())
	}
	writeFile(t, meta, b)
	s, err := Open(c.host, "")
	if err != nil {
		t.Logf("Open: %v", err)
		return
	}
	defer s.Close()
	_, err = s.List(context.Background())
	mustFail(t, "List of a database whose root is past its end", err, "corrupt database")
}

// TestImagesScaleAndAmbiguity: 5,000 images, each its own manifest, list
// in well under a second; a container ID in two namespaces needs its
// namespace.
func TestImagesScaleAndAmbiguity(t *testing.T) {
	c := craft(t, craftOpts{})
	db, err := bolt.Open(filepath.Join(c.data, metaDB), 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfgSize := 0
	if st, err := os.Stat(filepath.Join(c.data, blobDir, c.configHex)); err == nil {
		cfgSize = int(st.Size())
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for i := 0; i < 5000; i++ {
			mf := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` +
				c.configHex + `","size":` + itoa(cfgSize) + `},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:` + c.layerHex + `","size":` + itoa(len(c.layer)+i) + `}]}`)
			writeFile(t, filepath.Join(c.data, blobDir, sha(mf)), mf)
			name := "docker.io/library/img:" + itoa(i)
			tb := bucket(t, tx, "v1", "ns"+itoa(i%7), "images", name, "target")
			put(t, tb, "digest", []byte("sha256:"+sha(mf)))
			put(t, tb, "mediatype", []byte("application/vnd.oci.image.manifest.v1+json"))
			put(t, tb, "size", binary.AppendVarint(nil, int64(len(mf))))
		}
		cb := bucket(t, tx, "v1", "other", "containers", "c1")
		put(t, cb, "image", []byte("docker.io/library/x:1"))
		nb := bucket(t, tx, "v1", "other", "containers", "n1")
		put(t, nb, "snapshotter", []byte("native"))
		put(t, nb, "snapshotKey", []byte("n1"))
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(c.host, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	ims, err := s.ListImages(context.Background())
	took := time.Since(start)
	if err != nil || len(ims) != 5001 {
		t.Fatalf("ListImages: %d, %v", len(ims), err)
	}
	for _, im := range ims {
		if im.ID != "sha256:"+c.configHex || im.Size < int64(len(c.layer)) {
			t.Fatalf("ListImages: %+v", im)
		}
	}
	t.Logf("listing 5,000 images: %v", took)
	if took > 800*time.Millisecond {
		t.Errorf("listing 5,000 images took %v", took)
	}
	_, err = s.Container(context.Background(), "c1")
	mustFail(t, "an ID in two namespaces", err, "default", "other", "namespace/c1")
	if ct, err := s.Container(context.Background(), "other/c1"); err != nil || ct.ID != "c1" {
		t.Errorf("Container(other/c1) = %v, %v", ct, err)
	}
	// The capture's later calls name the bare ID: the namespace it was
	// inspected in decides (its logs are asked by ID).
	if rec, err := s.findContainer("c1", false); err != nil || rec.Namespace != "other" {
		t.Errorf("c1 after other/c1 was inspected: %+v, %v", rec.Namespace, err)
	}
	// Another snapshotter: recognised, refused by name.
	n1, err := s.Container(context.Background(), "n1")
	if err != nil {
		t.Fatal(err)
	}
	var u *engine.Unavailable
	if _, err := s.UpperDirs(n1); !errors.As(err, &u) || !strings.Contains(err.Error(), "native") {
		t.Errorf("UpperDirs of a native snapshot: %v", err)
	}
}

// TestCompressedLayer: a gzip layer is saved uncompressed, hashing to its
// diff_id; changed on disk, the save fails naming its blob.
func TestCompressedLayer(t *testing.T) {
	c := craft(t, craftOpts{gzipLayer: true})
	s, err := Open(c.host, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	im, err := s.Image(ctx, "x:1")
	if err != nil {
		t.Fatal(err)
	}
	save := func() (map[string][]byte, error) {
		rc, err := s.SaveImage(ctx, "x:1")
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		m := map[string][]byte{}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return m, nil
			}
			if err != nil {
				return m, err
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				return m, err
			}
			m[h.Name] = b
		}
	}
	m, err := save()
	if err != nil {
		t.Fatal(err)
	}
	l := m["blobs/sha256/"+strings.TrimPrefix(im.DiffIDs[0], "sha256:")]
	if "sha256:"+sha(l) != im.DiffIDs[0] {
		t.Errorf("the saved layer hashes to %s, not its diff_id %s", sha(l), im.DiffIDs[0])
	}
	// A byte of the gzip header's mtime changed: it still decompresses
	// to the same layer, but is not the blob its manifest names.
	b := bytes.Clone(c.layer)
	b[5] ^= 1
	lp := filepath.Join(c.data, blobDir, c.layerHex)
	os.WriteFile(lp, b, 0o644)
	_, err = save()
	mustFail(t, "a gzip layer changed on disk", err, lp, "changed on disk")
}
