//go:build linux

package dockerroot

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc64"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/vbatts/tar-split/tar/storage"
	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// A layer is rebuilt from its overlay2 directory with the tar-split the
// layer store kept when it was pulled: the tar's headers and padding as
// they came, each file's bytes read from the directory. Unchanged, that
// is byte for byte the tar docker save exports, its digest the layer's
// diff_id. Before that stream begins every layer is checked: each file's
// CRC-64 and size against the tar-split's record, each header against the
// file on disk (type, link target, mode, owner), and the directory walked
// for what the tar-split does not list (a file added to a lower layer is
// invisible to tar-split assembly, and so to docker save). A layer that
// differs is streamed as found instead: a fresh, deterministic tar of its
// directory, named by its own digest, and listed by LayerFindings.

// Bounds of a tar-split: one JSON line (a header segment: a PAX header
// can be long, not this long) and the whole decompressed stream.
const (
	maxSplitLine = 16 << 20
	maxSplit     = 4 << 30
)

const (
	whPrefix = ".wh."
	whOpaque = ".wh..wh..opq"
)

var crcTable = crc64.MakeTable(crc64.ISO)

// layer is one layer of an image as checked.
type layer struct {
	diffID  string // sha256:<hex>
	chain   string
	diff    string // overlay2/<cache-id>/diff, relative to the data root
	changed bool
	digest  string // hex of the tar streamed
	size    int64
	paths   []engine.ChangedPath
}

// diffDir opens a layer's diff directory beneath the data root.
func (s *Store) diffDir(chain string) (string, *os.File, error) {
	cache, err := s.readID(path.Join("image", s.driver, "layerdb/sha256", chain, "cache-id"), false)
	if err != nil {
		return "", nil, err
	}
	rel := path.Join("overlay2", cache, "diff")
	f, err := openAt(s.dfd, s.real, rel, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return "", nil, err
	}
	return rel, f, nil
}

// checkLayer checks one layer: its size and digest as it will be
// streamed, and the paths where its directory differs from the record.
func (s *Store) checkLayer(ctx context.Context, diffID, chain string) (*layer, error) {
	rel, dir, err := s.diffDir(chain)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	l := &layer{diffID: diffID, chain: chain, diff: rel}
	ts, err := s.openSplit(chain)
	if err != nil {
		return nil, err
	}
	defer ts.Close()
	a := &assembler{ctx: ctx, split: ts, dir: dir, check: true, changed: map[string]engine.ChangedPath{}}
	h := sha256.New()
	cnt := &counter{w: h}
	tee := io.TeeReader(a, cnt)
	listed := map[string]bool{"": true}
	opaque := map[string]bool{}
	tr := tar.NewReader(tee)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if a.err != nil {
				return nil, a.err
			}
			// The tar-split makes no tar: its record cannot be trusted.
			a.note("", "content", "the layer store's tar-split does not make a tar: "+err.Error())
			break
		}
		a.compare(hdr, listed, opaque)
		if _, err := io.Copy(io.Discard, tr); err != nil {
			if a.err != nil {
				return nil, a.err
			}
			a.note("", "content", "the layer store's tar-split does not make a tar: "+err.Error())
			break
		}
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return nil, err
	}
	if a.err != nil {
		return nil, a.err
	}
	l.digest, l.size = hex.EncodeToString(h.Sum(nil)), cnt.n
	if err := walkAdded(ctx, dir, listed, opaque, a); err != nil {
		return nil, fmt.Errorf("walking %s/%s: %w", s.real, rel, err)
	}
	if "sha256:"+l.digest != diffID && len(a.changed) == 0 {
		a.note("", "content", fmt.Sprintf("the layer store's tar-split makes a layer of digest sha256:%s", l.digest))
	}
	if len(a.changed) == 0 {
		return l, nil
	}
	for _, c := range a.changed {
		l.paths = append(l.paths, c)
	}
	sort.Slice(l.paths, func(i, j int) bool { return l.paths[i].Path < l.paths[j].Path })
	l.changed = true
	h.Reset()
	cnt = &counter{w: h}
	if err := freshTar(ctx, dir, cnt); err != nil {
		return nil, fmt.Errorf("reading %s/%s: %w", s.real, rel, err)
	}
	l.digest, l.size = hex.EncodeToString(h.Sum(nil)), cnt.n
	return l, nil
}

// openSplit opens a layer's tar-split, decompressed and bounded.
func (s *Store) openSplit(chain string) (io.ReadCloser, error) {
	f, err := s.open(path.Join("image", s.driver, "layerdb/sha256", chain, "tar-split.json.gz"))
	if err != nil {
		return nil, fmt.Errorf("the layer store's tar-split of layer %s: %w", chain, err)
	}
	zr, err := gzip.NewReader(bufio.NewReaderSize(f, 64<<10))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("the layer store's tar-split %s: not gzip: %w", f.Name(), err)
	}
	return &splitReader{Reader: bufio.NewReaderSize(&boundedReader{r: zr, left: maxSplit, what: f.Name()}, 64<<10), f: f, name: f.Name()}, nil
}

type splitReader struct {
	*bufio.Reader
	f    *os.File
	name string
}

func (r *splitReader) Close() error { return r.f.Close() }

// next reads one entry of the tar-split (a JSON line, bounded).
func (r *splitReader) next() (*storage.Entry, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > maxSplitLine {
			return nil, fmt.Errorf("the tar-split %s has a line of more than %d bytes: refused", r.name, maxSplitLine)
		}
		line = append(line, chunk...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF && len(bytes.TrimSpace(line)) > 0 {
			break
		}
		if err != nil {
			if err == io.EOF {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("reading the tar-split %s: %w", r.name, err)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			line = line[:0]
			continue
		}
		break
	}
	var e storage.Entry
	if err := json.Unmarshal(line, &e); err != nil {
		return nil, fmt.Errorf("the tar-split %s: %w", r.name, err)
	}
	if e.Size < 0 {
		return nil, fmt.Errorf("the tar-split %s lists %q of size %d", r.name, trunc(e.GetName()), e.Size)
	}
	return &e, nil
}

type counter struct {
	w hash.Hash
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.w.Write(p)
}

// cleanName is a tar name as a path of the layer ("" for its top).
func cleanName(n string) string {
	n = path.Clean("/" + n)
	return strings.TrimPrefix(n, "/")
}

// assembler makes the layer's tar from the tar-split: its segments as
// they are, its files' bytes from the directory. check notes the files
// whose size or CRC-64 differs (their bytes are then cut or padded to the
// recorded size, so that the tar's frame stays whole for the check);
// without check any difference is an error (the stream of a layer found
// unchanged).
type assembler struct {
	ctx     context.Context
	split   io.ReadCloser
	dir     *os.File
	check   bool
	changed map[string]engine.ChangedPath
	err     error

	pending []byte
	file    io.Reader
	closer  io.Closer
	done    bool
}

func (a *assembler) note(p, what, detail string) {
	if _, ok := a.changed[p]; !ok {
		a.changed[p] = engine.ChangedPath{Path: "/" + p, What: what, Detail: detail}
	}
}

func (a *assembler) Read(p []byte) (int, error) {
	for {
		if a.err != nil {
			return 0, a.err
		}
		if len(a.pending) > 0 {
			n := copy(p, a.pending)
			a.pending = a.pending[n:]
			return n, nil
		}
		if a.file != nil {
			n, err := a.file.Read(p)
			if err == io.EOF {
				a.closer.Close()
				a.file, a.closer = nil, nil
				err = nil
			}
			if err != nil {
				a.err = err
			}
			if n > 0 {
				return n, nil
			}
			continue
		}
		if a.done {
			return 0, io.EOF
		}
		if err := a.ctx.Err(); err != nil {
			a.err = err
			return 0, err
		}
		e, err := a.split.(*splitReader).next()
		if err == io.EOF {
			a.done = true
			continue
		}
		if err != nil {
			a.err = err
			return 0, err
		}
		switch e.Type {
		case storage.SegmentType:
			a.pending = e.Payload
		case storage.FileType:
			if e.Size == 0 {
				continue
			}
			a.err = a.openFile(e)
		default:
			a.err = fmt.Errorf("the tar-split lists an entry of type %d", e.Type)
		}
	}
}

// openFile starts a file's bytes: read from the directory, checked by
// size and CRC-64 as they are read.
func (a *assembler) openFile(e *storage.Entry) error {
	name := cleanName(e.GetName())
	f, err := openAt(int(a.dir.Fd()), a.dir.Name(), orDot(name), unix.O_RDONLY)
	var size int64 = -1
	if err == nil {
		if fi, serr := f.Stat(); serr != nil || !fi.Mode().IsRegular() {
			f.Close()
			f, err = nil, fmt.Errorf("not a regular file")
		} else {
			size = fi.Size()
		}
	}
	if err != nil {
		if !a.check {
			return fmt.Errorf("layer file %s: %w", name, err)
		}
		if errors.Is(err, os.ErrNotExist) {
			a.note(name, "removed", "")
		} else {
			a.note(name, "type", err.Error())
		}
		a.file, a.closer = io.LimitReader(zeros{}, e.Size), io.NopCloser(nil)
		return nil
	}
	if size != e.Size {
		if !a.check {
			f.Close()
			return fmt.Errorf("layer file %s is %d bytes, not %d", name, size, e.Size)
		}
		a.note(name, "size", fmt.Sprintf("%d bytes, recorded %d", size, e.Size))
	}
	cr := &crcReader{r: io.LimitReader(io.MultiReader(f, zeros{}), e.Size), crc: crc64.New(crcTable), want: e.Payload, name: name, a: a}
	a.file, a.closer = cr, f
	return nil
}

func orDot(p string) string {
	if p == "" {
		return "."
	}
	return p
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// crcReader checks a file's CRC-64 against the tar-split's at its end.
type crcReader struct {
	r    io.Reader
	crc  hash.Hash64
	want []byte
	name string
	a    *assembler
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc.Write(p[:n])
	if err == io.EOF && !bytes.Equal(c.crc.Sum(nil), c.want) {
		if !c.a.check {
			return n, fmt.Errorf("layer file %s differs from the layer store's record", c.name)
		}
		c.a.note(c.name, "content", "CRC-64 differs from the layer store's record")
	}
	return n, err
}

// lstatAt stats rel beneath dir, through no symbolic link (rel itself not
// followed).
func lstatAt(dir *os.File, rel string) (*unix.Stat_t, *os.File, error) {
	f, err := openAt(int(dir.Fd()), dir.Name(), orDot(rel), unix.O_PATH)
	if err != nil {
		return nil, nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, nil, err
	}
	return &st, f, nil
}

// compare checks one header of the tar-split's tar against the directory.
func (a *assembler) compare(h *tar.Header, listed, opaque map[string]bool) {
	name := cleanName(h.Name)
	for p := path.Dir(name); p != "." && p != "/" && !listed[p]; p = path.Dir(p) {
		listed[p] = true
	}
	dir, base := path.Dir(name), path.Base(name)
	if dir == "." {
		dir = ""
	}
	switch {
	case base == whOpaque:
		opaque[dir] = true
		if v, _ := getxattr(a.dir, dir, "trusted.overlay.opaque"); v != "y" {
			a.note(name, "removed", "the directory is not opaque")
		}
		return
	case strings.HasPrefix(base, whPrefix):
		target := path.Join(dir, strings.TrimPrefix(base, whPrefix))
		listed[target] = true
		st, f, err := lstatAt(a.dir, target)
		if err != nil {
			a.note(target, "removed", "whiteout "+name)
			return
		}
		f.Close()
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			a.note(target, "type", "whiteout "+name+" is not one on disk")
		}
		return
	}
	listed[name] = true
	st, f, err := lstatAt(a.dir, name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			a.note(name, "removed", "")
		} else {
			a.note(name, "type", err.Error())
		}
		return
	}
	defer f.Close()
	want := map[byte]uint32{tar.TypeReg: unix.S_IFREG, 0 /* TypeRegA, old tars */ : unix.S_IFREG, tar.TypeLink: unix.S_IFREG, tar.TypeDir: unix.S_IFDIR,
		tar.TypeSymlink: unix.S_IFLNK, tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}
	wt, ok := want[h.Typeflag]
	if !ok {
		return
	}
	if st.Mode&unix.S_IFMT != wt {
		a.note(name, "type", fmt.Sprintf("%s on disk, recorded %s", typeName(st.Mode&unix.S_IFMT), typeName(wt)))
		return
	}
	switch h.Typeflag {
	case tar.TypeSymlink:
		buf := make([]byte, 4096)
		n, err := unix.Readlinkat(int(f.Fd()), "", buf)
		if err != nil || string(buf[:n]) != h.Linkname {
			a.note(name, "link", fmt.Sprintf("links to %q, recorded %q", string(buf[:max(n, 0)]), h.Linkname))
		}
		return
	case tar.TypeLink:
		tst, tf, err := lstatAt(a.dir, cleanName(h.Linkname))
		if err != nil || tst.Ino != st.Ino || tst.Dev != st.Dev {
			a.note(name, "link", "no longer a hard link to /"+cleanName(h.Linkname))
		}
		if err == nil {
			tf.Close()
		}
		return
	case tar.TypeChar, tar.TypeBlock:
		if unix.Major(st.Rdev) != uint32(h.Devmajor) || unix.Minor(st.Rdev) != uint32(h.Devminor) {
			a.note(name, "type", fmt.Sprintf("device %d:%d, recorded %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev), h.Devmajor, h.Devminor))
		}
	}
	if int64(st.Mode&07777) != h.Mode&07777 {
		a.note(name, "mode", fmt.Sprintf("%04o, recorded %04o", st.Mode&07777, h.Mode&07777))
	} else if int(st.Uid) != h.Uid || int(st.Gid) != h.Gid {
		a.note(name, "owner", fmt.Sprintf("%d:%d, recorded %d:%d", st.Uid, st.Gid, h.Uid, h.Gid))
	}
}

func typeName(t uint32) string {
	switch t {
	case unix.S_IFREG:
		return "a file"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symbolic link"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	}
	return "unknown"
}

// getxattr reads an extended attribute of the directory rel beneath dir.
func getxattr(dir *os.File, rel, attr string) (string, error) {
	f, err := openAt(int(dir.Fd()), dir.Name(), orDot(rel), unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return fgetxattr(f, attr)
}

func fgetxattr(f *os.File, attr string) (string, error) {
	buf := make([]byte, 256)
	n, err := unix.Fgetxattr(int(f.Fd()), attr, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// walkAdded walks the directory for what the tar-split does not list.
func walkAdded(ctx context.Context, dir *os.File, listed, opaque map[string]bool, a *assembler) error {
	return walk(ctx, dir, "", func(rel string, st *unix.Stat_t, d *os.File) error {
		if rel != "" && !listed[rel] {
			what := "added"
			if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
				a.note(rel, what, "a whiteout the layer store does not record")
			} else {
				a.note(rel, what, typeName(st.Mode&unix.S_IFMT))
			}
		}
		if d != nil && !opaque[rel] {
			if v, _ := fgetxattr(d, "trusted.overlay.opaque"); v == "y" {
				a.note(path.Join(rel, whOpaque), "added", "an opaque directory the layer store does not record")
			}
		}
		return nil
	})
}

// walk visits rel (a directory beneath top) and everything under it in
// name order; fn gets each path's lstat and, for a directory, the open
// directory.
func walk(ctx context.Context, top *os.File, rel string, fn func(rel string, st *unix.Stat_t, d *os.File) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d, err := openAt(int(top.Fd()), top.Name(), orDot(rel), unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer d.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(d.Fd()), &st); err != nil {
		return err
	}
	if err := fn(rel, &st, d); err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("listing /%s: %w", rel, err)
	}
	sort.Strings(names)
	for _, n := range names {
		p := path.Join(rel, n)
		var cst unix.Stat_t
		// One name beneath an open real directory, not followed.
		if err := unix.Fstatat(int(d.Fd()), n, &cst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("/%s: %w", p, err)
		}
		if cst.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := walk(ctx, top, p, fn); err != nil {
				return err
			}
			continue
		}
		if err := fn(p, &cst, nil); err != nil {
			return err
		}
	}
	return nil
}

// freshTar writes the directory as a tar, deterministically: names in
// order, headers from lstat (mode, owner, mtime in seconds, link
// targets), hard links within the layer as links to their first name,
// overlay whiteouts as Docker exports them (a 0/0 character device as
// .wh.<name>, an opaque directory's .wh..wh..opq).
func freshTar(ctx context.Context, dir *os.File, w io.Writer) error {
	tw := tar.NewWriter(w)
	links := map[[2]uint64]string{}
	err := walk(ctx, dir, "", func(rel string, st *unix.Stat_t, d *os.File) error {
		if rel == "" {
			return nil
		}
		h := &tar.Header{Name: rel, Mode: int64(st.Mode & 07777), Uid: int(st.Uid), Gid: int(st.Gid),
			ModTime: time.Unix(st.Mtim.Sec, 0).UTC(), Format: tar.FormatPAX}
		var body *os.File
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			h.Typeflag, h.Name = tar.TypeDir, rel+"/"
		case unix.S_IFREG:
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := links[key]; ok && st.Nlink > 1 {
				h.Typeflag, h.Linkname = tar.TypeLink, first
				break
			}
			if st.Nlink > 1 {
				links[key] = rel
			}
			f, err := openAt(int(dir.Fd()), dir.Name(), rel, unix.O_RDONLY)
			if err != nil {
				return err
			}
			defer f.Close()
			h.Typeflag, h.Size, body = tar.TypeReg, st.Size, f
		case unix.S_IFLNK:
			f, err := openAt(int(dir.Fd()), dir.Name(), rel, unix.O_PATH)
			if err != nil {
				return err
			}
			buf := make([]byte, 4096)
			n, err := unix.Readlinkat(int(f.Fd()), "", buf)
			f.Close()
			if err != nil {
				return fmt.Errorf("/%s: %w", rel, err)
			}
			h.Typeflag, h.Linkname = tar.TypeSymlink, string(buf[:n])
		case unix.S_IFCHR:
			if st.Rdev == 0 {
				h.Name = path.Join(path.Dir(rel), whPrefix+path.Base(rel))
				h.Typeflag, h.Mode = tar.TypeReg, 0o600
				break
			}
			h.Typeflag = tar.TypeChar
			h.Devmajor, h.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		case unix.S_IFBLK:
			h.Typeflag = tar.TypeBlock
			h.Devmajor, h.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		case unix.S_IFIFO:
			h.Typeflag = tar.TypeFifo
		default:
			return nil // a socket is no part of a layer
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if body != nil {
			if n, err := io.Copy(tw, io.LimitReader(body, h.Size)); err != nil {
				return fmt.Errorf("/%s: %w", rel, err)
			} else if n != h.Size {
				return fmt.Errorf("/%s: %d bytes read, %d expected", rel, n, h.Size)
			}
		}
		if d != nil {
			if v, _ := fgetxattr(d, "trusted.overlay.opaque"); v == "y" {
				return tw.WriteHeader(&tar.Header{Name: path.Join(rel, whOpaque), Typeflag: tar.TypeReg, Mode: 0o600,
					ModTime: h.ModTime, Uid: h.Uid, Gid: h.Gid, Format: tar.FormatPAX})
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// streamLayer writes a checked layer as it was checked, failing when its
// bytes are not those the check found.
func (s *Store) streamLayer(ctx context.Context, l *layer, w io.Writer) error {
	dir, err := openAt(s.dfd, s.real, l.diff, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer dir.Close()
	h := sha256.New()
	cnt := &counter{w: h}
	mw := io.MultiWriter(w, cnt)
	if l.changed {
		err = freshTar(ctx, dir, mw)
	} else {
		var ts io.ReadCloser
		if ts, err = s.openSplit(l.chain); err != nil {
			return err
		}
		defer ts.Close()
		_, err = io.CopyBuffer(mw, &assembler{ctx: ctx, split: ts, dir: dir}, make([]byte, 1<<20))
	}
	if err != nil {
		return fmt.Errorf("layer %s: %w", l.diffID, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != l.digest || cnt.n != l.size {
		return fmt.Errorf("layer %s changed while it was read: sha256:%s, %d bytes, checked sha256:%s, %d bytes", l.diffID, got, cnt.n, l.digest, l.size)
	}
	return nil
}

// SaveImage checks every layer of the image, then streams it as docker
// save would (manifest.json, its config, its layers as
// blobs/sha256/<digest>). A layer found changed on disk is streamed as
// found, under its own digest, and listed by LayerFindings.
func (s *Store) SaveImage(ctx context.Context, ref string) (io.ReadCloser, error) {
	if err := s.needOverlay2(); err != nil {
		return nil, err
	}
	id, err := s.findImage(ref)
	if err != nil {
		return nil, err
	}
	cfg, raw, err := s.readConfig(id)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	if err := s.checkChain(cfg.RootFS.DiffIDs); err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	byID, _, err := s.repositories()
	if err != nil {
		return nil, err
	}
	chains := chainIDs(cfg.RootFS.DiffIDs)
	var layers []*layer
	byDiff := map[string]*layer{}
	var findings []engine.LayerFinding
	names := make([]string, len(chains))
	for i, c := range chains {
		d := cfg.RootFS.DiffIDs[i]
		l, ok := byDiff[d]
		if !ok {
			if l, err = s.checkLayer(ctx, d, c); err != nil {
				return nil, fmt.Errorf("image %s, layer %d (%s): %w", ref, i, d, err)
			}
			byDiff[d] = l
			layers = append(layers, l)
			if l.changed {
				findings = append(findings, engine.LayerFinding{DiffID: d, Found: "sha256:" + l.digest, Paths: l.paths})
			}
		}
		names[i] = "blobs/sha256/" + l.digest
	}
	s.mu.Lock()
	s.findings[id] = findings
	s.mu.Unlock()
	var tags []string
	for _, r := range byID[id] {
		if !strings.Contains(r, "@") {
			tags = append(tags, r)
		}
	}
	man, err := json.Marshal([]struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{{"blobs/sha256/" + id, tags, names}})
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		put := func(name string, size int64, body func(io.Writer) error) error {
			if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: time.Unix(0, 0).UTC()}); err != nil {
				return err
			}
			return body(tw)
		}
		bytesOf := func(b []byte) func(io.Writer) error {
			return func(w io.Writer) error { _, err := w.Write(b); return err }
		}
		err := put("blobs/sha256/"+id, int64(len(raw)), bytesOf(raw))
		for _, l := range layers {
			if err != nil {
				break
			}
			err = put("blobs/sha256/"+l.digest, l.size, func(w io.Writer) error { return s.streamLayer(ctx, l, w) })
		}
		if err == nil {
			err = put("manifest.json", int64(len(man)), bytesOf(man))
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// LayerFindings lists the layers of ref that SaveImage found changed on
// disk (none before SaveImage was asked).
func (s *Store) LayerFindings(ref string) []engine.LayerFinding {
	id, err := s.findImage(ref)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.findings[id]
}
