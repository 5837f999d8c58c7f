//go:build linux

package layerstore

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
	"strconv"
	"strings"
	"time"

	"github.com/vbatts/tar-split/tar/storage"
	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// A layer is rebuilt from its overlay directory with the tar-split its
// store kept when it was pulled (Docker's layerdb/.../tar-split.json.gz,
// containers/storage's overlay-layers/<id>.tar-split.gz): the tar's
// headers and padding as they came, each file's bytes read from the
// directory. Unchanged, that is byte for byte the tar docker save (podman
// save) exports, its digest the layer's diff_id. Before that stream
// begins every layer is checked: each file's CRC-64 and size against the
// tar-split's record, each header against the file on disk (type, link
// target, mode, owner, extended attributes, a file's mtime), and the
// directory walked for what the tar-split does not list (a file added to
// a lower layer is invisible to tar-split assembly, and so to docker
// save). A layer that differs is streamed as found instead: a fresh,
// deterministic tar of its directory, named by its own digest, and listed
// by the store's LayerFindings.

// Bounds of a tar-split: one JSON line (a header segment: a PAX header
// can be long, not this long) and the whole decompressed stream.
const (
	maxSplitLine = 16 << 20
	maxSplit     = 4 << 30
)

// MaxClaimed bounds the bytes of files a tar-split may claim for a layer
// whose size the layer store does not record: each claimed byte is read
// (or, for a file gone or shorter, padded with zeros) and hashed.
const MaxClaimed = 1 << 40

const (
	whPrefix = ".wh."
	whMeta   = ".wh..wh."
	whOpaque = ".wh..wh..opq"
)

var crcTable = crc64.MakeTable(crc64.ISO)

// Layer is one position of an image, as its store keeps it.
type Layer struct {
	// DiffID is the image config's digest of the layer ("sha256:...").
	DiffID string
	// Dir opens the layer's directory (O_PATH|O_DIRECTORY, beneath the
	// store's root, through no symbolic link: OpenAt); Split its
	// tar-split (gzip-compressed JSON lines), a regular file. Each is
	// called once to check the layer and once to stream it; their
	// errors are returned as they are.
	Dir, Split func() (*os.File, error)
	// Limit is the layer's size as the store records it (Docker's
	// layerdb size: the bytes of its files; containers/storage's
	// diff-size: the bytes of its tar), < 0 where none is: the bytes of
	// files its tar-split may claim (MaxClaimed when none).
	Limit int64
	// Who names the store's record in findings and errors ("the layer
	// store's", "containers/storage's").
	Who string
}

// Checked is one layer as checked: its digest and size as it will be
// streamed, and, when its directory differs from the record, the paths
// that do (it is then streamed as found: a fresh tar of its directory).
type Checked struct {
	spec    Layer
	Changed bool
	Digest  string // hex of the tar streamed
	Size    int64
	Paths   []engine.ChangedPath
}

// Finding is the layer's finding when it was found changed.
func (l *Checked) Finding() (engine.LayerFinding, bool) {
	if !l.Changed {
		return engine.LayerFinding{}, false
	}
	return engine.LayerFinding{DiffID: l.spec.DiffID, Found: "sha256:" + l.Digest, Paths: l.Paths}, true
}

// Blob is the layer's member in a save stream: blobs/sha256/<digest>.
func (l *Checked) Blob() string { return "blobs/sha256/" + l.Digest }

func (l Layer) limit() int64 {
	if l.Limit < 0 {
		return MaxClaimed
	}
	return l.Limit
}

// Check checks one layer: its size and digest as it will be streamed,
// and the paths where its directory differs from the record.
func Check(ctx context.Context, spec Layer) (*Checked, error) {
	dir, err := spec.Dir()
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	l := &Checked{spec: spec}
	ts, err := openSplit(spec)
	if err != nil {
		return nil, err
	}
	defer ts.Close()
	a := &assembler{ctx: ctx, split: ts, dir: dir, who: spec.Who, check: true, changed: map[string]engine.ChangedPath{}, limit: spec.limit()}
	defer a.close()
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
			a.note("", "content", spec.Who+" tar-split does not make a tar: "+err.Error())
			break
		}
		if err := a.compare(hdr, listed, opaque); err != nil {
			return nil, err
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			if a.err != nil {
				return nil, a.err
			}
			a.note("", "content", spec.Who+" tar-split does not make a tar: "+err.Error())
			break
		}
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return nil, err
	}
	if a.err != nil {
		return nil, a.err
	}
	l.Digest, l.Size = hex.EncodeToString(h.Sum(nil)), cnt.n
	if err := walkAdded(ctx, dir, listed, opaque, a); err != nil {
		return nil, fmt.Errorf("walking %s: %w", dir.Name(), err)
	}
	if "sha256:"+l.Digest != spec.DiffID && len(a.changed) == 0 {
		a.note("", "content", fmt.Sprintf("%s tar-split makes a layer of digest sha256:%s", spec.Who, l.Digest))
	}
	if len(a.changed) == 0 {
		return l, nil
	}
	for _, c := range a.changed {
		l.Paths = append(l.Paths, c)
	}
	sort.Slice(l.Paths, func(i, j int) bool { return l.Paths[i].Path < l.Paths[j].Path })
	l.Changed = true
	h.Reset()
	cnt = &counter{w: h}
	if err := freshTar(ctx, dir, cnt); err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir.Name(), err)
	}
	l.Digest, l.Size = hex.EncodeToString(h.Sum(nil)), cnt.n
	return l, nil
}

// openSplit opens a layer's tar-split, decompressed and bounded.
func openSplit(spec Layer) (*splitReader, error) {
	f, err := spec.Split()
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bufio.NewReaderSize(f, 64<<10))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s tar-split %s: not gzip: %w", spec.Who, f.Name(), err)
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
	split   *splitReader
	who     string // the store's record, in findings and errors
	dir     *os.File
	check   bool
	changed map[string]engine.ChangedPath
	err     error
	// limit bounds the bytes of files the tar-split claims (claimed):
	// a hostile record claiming more, padded with zeros, would keep
	// the hash busy without end.
	limit, claimed int64

	looked *looked // see look

	pending []byte
	file    io.Reader
	closer  io.Closer
	done    bool
}

// note records how a path differs, the first difference found but for
// an mtime, which any other replaces (a file whose content changed has
// its mtime changed too: the content is what to report).
func (a *assembler) note(p, what, detail string) {
	if old, ok := a.changed[p]; !ok || old.What == "mtime" && what != "mtime" {
		a.changed[p] = engine.ChangedPath{Path: "/" + p, What: what, Detail: detail}
	}
}

// close closes the file being read, if the tar was not read to its end.
func (a *assembler) close() {
	if a.looked != nil {
		a.looked.f.Close()
		a.looked = nil
	}
	if a.closer != nil {
		a.closer.Close()
		a.file, a.closer = nil, nil
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
		e, err := a.split.next()
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
			if e.Size > a.limit-a.claimed {
				a.err = engine.Claimf("the layer's tar-split claims more than %d bytes of files (%q of %d bytes at the end), more than %s record of the layer: refused", a.limit, trunc(e.GetName()), e.Size, a.who)
				return 0, a.err
			}
			a.claimed += e.Size
			a.err = a.openFile(e)
		default:
			a.err = fmt.Errorf("the tar-split lists an entry of type %d", e.Type)
		}
	}
}

// openFile starts a file's bytes: read from the directory, checked by
// size and CRC-64 as they are read. The path is looked at before it is
// opened: what is no longer a regular file (a device, a FIFO planted in
// its place) is never opened.
func (a *assembler) openFile(e *storage.Entry) error {
	// Docker and containers/storage refuse ".." when they unpack a
	// layer: a record that names one is not theirs.
	for _, part := range strings.Split(e.GetName(), "/") {
		if part == ".." {
			return engine.Claimf("the layer's tar-split record names %q, outside the layer", trunc(e.GetName()))
		}
	}
	name := cleanName(e.GetName())
	if !a.check {
		// The stream of a layer checked unchanged: each file was a
		// regular file of its recorded size a moment ago.
		f, err := OpenAt(int(a.dir.Fd()), a.dir.Name(), name, unix.O_RDONLY)
		if err != nil {
			return fmt.Errorf("layer file %s: %w", name, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != e.Size {
			f.Close()
			return fmt.Errorf("layer file %s is no longer the regular file of %d bytes it was", name, e.Size)
		}
		cr := &crcReader{r: io.LimitReader(f, e.Size), crc: crc64.New(crcTable), want: e.Payload, name: name, a: a}
		a.file, a.closer = engine.ContextReader(a.ctx, cr), f
		return nil
	}
	st, pf, err := a.look(name)
	if err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
		pf.Close()
		err = fmt.Errorf("%s, not a regular file", typeName(st.Mode&unix.S_IFMT))
	} else if err != nil {
		if _, ok := missing(err); !ok {
			return fmt.Errorf("layer file %s: %w", name, err)
		}
	}
	var f *os.File
	if err == nil {
		f, err = reopen(pf)
		pf.Close()
		if err != nil {
			// It was there a moment ago: not the evidence's doing.
			return fmt.Errorf("layer file %s: %w", name, err)
		}
	}
	if err != nil {
		what, ok := missing(err)
		if !ok {
			what = "type"
		}
		a.note(name, what, detailOf(what, err))
		a.file, a.closer = engine.ContextReader(a.ctx, io.LimitReader(zeros{}, e.Size)), io.NopCloser(nil)
		return nil
	}
	if st.Size != e.Size {
		a.note(name, "size", fmt.Sprintf("%d bytes, recorded %d", st.Size, e.Size))
	}
	cr := &crcReader{r: io.LimitReader(io.MultiReader(f, zeros{}), e.Size), crc: crc64.New(crcTable), want: e.Payload, name: name, a: a}
	// The context is checked on every read: a file claimed huge is
	// read (or padded) in one entry.
	a.file, a.closer = engine.ContextReader(a.ctx, cr), f
	return nil
}

// look is the lstat of name and its O_PATH descriptor: the one compare
// kept when it looked at the same path's header just before, else a new
// look.
func (a *assembler) look(name string) (*unix.Stat_t, *os.File, error) {
	if l := a.looked; l != nil {
		a.looked = nil
		if l.name == name {
			return l.st, l.f, nil
		}
		l.f.Close()
	}
	return lstatAt(a.dir, name)
}

// looked is a regular file compare looked at, kept for openFile.
type looked struct {
	name string
	st   *unix.Stat_t
	f    *os.File
}

// reopen opens for reading the file an O_PATH descriptor refers to,
// through its /proc/self/fd link (the file found beneath the layer's
// directory, not a path resolved again), keeping its access time.
func reopen(pf *os.File) (*os.File, error) {
	p := "/proc/self/fd/" + strconv.Itoa(int(pf.Fd()))
	flags := unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOATIME
	fd, err := unix.Open(p, flags, 0)
	if err == unix.EPERM {
		fd, err = unix.Open(p, flags&^unix.O_NOATIME, 0)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: pf.Name(), Err: err}
	}
	return os.NewFile(uintptr(fd), pf.Name()), nil
}

// missing says whether err, met opening a path of a layer's directory,
// is a difference of the directory from the record: the path is gone
// ("removed"), or a parent is no longer a directory or is a symbolic
// link ("type"). Any other error (permission, too many open files, I/O)
// is the examiner's trouble, not a finding.
func missing(err error) (string, bool) {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "removed", true
	case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP), errors.Is(err, engine.ErrEngineClaim):
		return "type", true
	}
	return "", false
}

func detailOf(what string, err error) string {
	if what == "removed" {
		return ""
	}
	return err.Error()
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
			return n, fmt.Errorf("layer file %s differs from %s record", c.name, c.a.who)
		}
		c.a.note(c.name, "content", "CRC-64 differs from "+c.a.who+" record")
	}
	return n, err
}

// lstatAt stats rel beneath dir, through no symbolic link (rel itself not
// followed).
func lstatAt(dir *os.File, rel string) (*unix.Stat_t, *os.File, error) {
	f, err := OpenAt(int(dir.Fd()), dir.Name(), orDot(rel), unix.O_PATH)
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

// fileTypes are the tar entry types Docker and containers/storage extract, with the file type
// each makes on disk. Any other (a PAX global header, a GNU volume
// label) is never extracted: it is nothing to find in the directory.
var fileTypes = map[byte]uint32{tar.TypeReg: unix.S_IFREG, 0 /* TypeRegA, old tars */ : unix.S_IFREG, tar.TypeLink: unix.S_IFREG, tar.TypeDir: unix.S_IFDIR,
	tar.TypeSymlink: unix.S_IFLNK, tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}

// compare checks one header of the tar-split's tar against the directory.
// An error is one of the examiner's (the directory cannot be read), not a
// difference.
func (a *assembler) compare(h *tar.Header, listed, opaque map[string]bool) error {
	wt, ok := fileTypes[h.Typeflag]
	if !ok {
		return nil
	}
	name := cleanName(h.Name)
	if name == "" {
		// The layer's own directory ("./"): Docker's unpacker skips
		// it, containers/storage makes it itself: the directory is the
		// driver's, not the tar's.
		return nil
	}
	for p := path.Dir(name); p != "." && p != "/" && !listed[p]; p = path.Dir(p) {
		listed[p] = true
	}
	dir, base := path.Dir(name), path.Base(name)
	if dir == "." {
		dir = ""
	}
	if strings.HasPrefix(name, whMeta) && name != whOpaque {
		// AUFS's own metadata (.wh..wh.plnk, .wh..wh.aufs): Docker's
		// and containers/storage's unpackers skip it.
		listed[name] = true
		return nil
	}
	switch {
	case base == whOpaque:
		opaque[dir] = true
		v, err := getxattr(a.dir, dir, "trusted.overlay.opaque")
		if err != nil && !errors.Is(err, unix.ENODATA) {
			if _, ok := missing(err); !ok {
				return fmt.Errorf("layer directory /%s: %w", dir, err)
			}
		}
		if v != "y" {
			a.note(name, "removed", "the directory is not opaque")
		}
		return nil
	case strings.HasPrefix(base, whPrefix):
		target := path.Join(dir, strings.TrimPrefix(base, whPrefix))
		listed[target] = true
		st, f, err := lstatAt(a.dir, target)
		if err != nil {
			if _, ok := missing(err); !ok {
				return fmt.Errorf("layer path /%s: %w", target, err)
			}
			a.note(target, "removed", "whiteout "+name)
			return nil
		}
		f.Close()
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			a.note(target, "type", "whiteout "+name+" is not one on disk")
		}
		return nil
	}
	listed[name] = true
	st, f, err := lstatAt(a.dir, name)
	if err != nil {
		what, ok := missing(err)
		if !ok {
			return fmt.Errorf("layer path /%s: %w", name, err)
		}
		a.note(name, what, detailOf(what, err))
		return nil
	}
	kept := false
	defer func() {
		if !kept {
			f.Close()
		}
	}()
	if st.Mode&unix.S_IFMT != wt {
		a.note(name, "type", fmt.Sprintf("%s on disk, recorded %s", typeName(st.Mode&unix.S_IFMT), typeName(wt)))
		return nil
	}
	switch h.Typeflag {
	case tar.TypeSymlink:
		buf := make([]byte, 4096)
		n, err := unix.Readlinkat(int(f.Fd()), "", buf)
		if err != nil || string(buf[:n]) != h.Linkname {
			a.note(name, "link", fmt.Sprintf("links to %q, recorded %q", string(buf[:max(n, 0)]), h.Linkname))
		}
		return nil
	case tar.TypeLink:
		tst, tf, err := lstatAt(a.dir, cleanName(h.Linkname))
		if err != nil || tst.Ino != st.Ino || tst.Dev != st.Dev {
			a.note(name, "link", "no longer a hard link to /"+cleanName(h.Linkname))
		}
		if err == nil {
			tf.Close()
		}
		return nil
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
	found, err := xattrs(f)
	if err != nil {
		return fmt.Errorf("layer path /%s: %w", name, err)
	}
	if d := xattrDiff(found, h.PAXRecords); d != "" {
		a.note(name, "xattr", d)
	}
	// Docker and containers/storage set each file's mtime from its
	// header: one changed with the content left alone is a file
	// touched (or put back) after the pull. Directories are not
	// compared: adding or removing a file changes its directory's
	// mtime, and that path is reported itself.
	if wt == unix.S_IFREG && st.Mtim.Sec != h.ModTime.Unix() {
		a.note(name, "mtime", fmt.Sprintf("%s, recorded %s", time.Unix(st.Mtim.Sec, 0).UTC().Format(time.RFC3339), h.ModTime.UTC().Format(time.RFC3339)))
	}
	if wt == unix.S_IFREG && h.Size > 0 {
		// Its bytes come next: openFile reads the file looked at here.
		if a.looked != nil {
			a.looked.f.Close()
		}
		a.looked, kept = &looked{name: name, st: st, f: f}, true
	}
	return nil
}

// layerXattr says whether an extended attribute is one a layer carries
// (SCHILY.xattr.* in its tar: security.capability, user.*, ACLs...), not
// overlay's own (whiteouts and opaque directories, checked by name), nor
// the ownership a rootless store records in place of chown
// (fuse-overlayfs's, containers/storage's override_stat), nor a label
// this host's security module gives every file it creates.
func layerXattr(name string) bool {
	switch {
	case strings.HasPrefix(name, "trusted.overlay."), strings.HasPrefix(name, "user.overlay."),
		strings.HasPrefix(name, "user.fuseoverlayfs."), strings.HasPrefix(name, "user.containers."),
		name == "security.selinux", name == "security.apparmor", name == "security.ima", name == "security.evm",
		strings.HasPrefix(name, "security.SMACK64"):
		return false
	}
	return true
}

const paxXattr = "SCHILY.xattr."

// xattrDiff compares a path's extended attributes on disk with its
// header's PAX records: "" when the layer's own are the same.
func xattrDiff(found map[string]string, pax map[string]string) string {
	var diffs []string
	for k, v := range pax {
		x, ok := strings.CutPrefix(k, paxXattr)
		if !ok || !layerXattr(x) {
			continue
		}
		switch got, ok := found[x]; {
		case !ok:
			diffs = append(diffs, x+" removed")
		case got != v:
			diffs = append(diffs, x+" changed")
		}
	}
	for x := range found {
		if _, ok := pax[paxXattr+x]; !ok && layerXattr(x) {
			diffs = append(diffs, x+" added")
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, ", ")
}

// xattrs reads the extended attributes of f (opened O_PATH: a file, a
// directory, a device or a FIFO never opened for reading) through its
// /proc/self/fd link.
func xattrs(f *os.File) (map[string]string, error) {
	p := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	list, err := sized(func(b []byte) (int, error) { return unix.Listxattr(p, b) })
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing extended attributes: %w", err)
	}
	var out map[string]string
	for _, x := range strings.Split(string(list), "\x00") {
		if x == "" {
			continue
		}
		v, err := sized(func(b []byte) (int, error) { return unix.Getxattr(p, x, b) })
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("extended attribute %s: %w", x, err)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[x] = string(v)
	}
	return out, nil
}

// sized calls an xattr call with a small buffer, then with one of the
// size the kernel asks (at most its own bound, 64 KiB).
func sized(call func([]byte) (int, error)) ([]byte, error) {
	buf := make([]byte, 256)
	for range 3 {
		n, err := call(buf)
		if err == nil {
			return buf[:n], nil
		}
		if !errors.Is(err, unix.ERANGE) {
			return nil, err
		}
		if n, err = call(nil); err != nil {
			return nil, err
		}
		buf = make([]byte, min(max(n, len(buf)*2), 64<<10))
	}
	return nil, unix.ERANGE
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
	f, err := OpenAt(int(dir.Fd()), dir.Name(), orDot(rel), unix.O_RDONLY|unix.O_DIRECTORY)
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
				a.note(rel, what, "a whiteout "+strings.TrimSuffix(a.who, "'s")+" does not record")
			} else {
				a.note(rel, what, typeName(st.Mode&unix.S_IFMT))
			}
		}
		if d != nil && !opaque[rel] {
			if v, _ := fgetxattr(d, "trusted.overlay.opaque"); v == "y" {
				a.note(path.Join(rel, whOpaque), "added", "an opaque directory "+strings.TrimSuffix(a.who, "'s")+" does not record")
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
	d, err := OpenAt(int(top.Fd()), top.Name(), orDot(rel), unix.O_RDONLY|unix.O_DIRECTORY)
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
		xf := d // the open path whose extended attributes the header carries
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
			f, err := OpenAt(int(dir.Fd()), dir.Name(), rel, unix.O_RDONLY)
			if err != nil {
				return err
			}
			defer f.Close()
			h.Typeflag, h.Size, body, xf = tar.TypeReg, st.Size, f, f
		case unix.S_IFLNK:
			f, err := OpenAt(int(dir.Fd()), dir.Name(), rel, unix.O_PATH)
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
		if xf == nil && (h.Typeflag == tar.TypeChar || h.Typeflag == tar.TypeBlock || h.Typeflag == tar.TypeFifo) {
			// A device or FIFO: looked at (O_PATH), never opened.
			f, err := OpenAt(int(dir.Fd()), dir.Name(), rel, unix.O_PATH)
			if err != nil {
				return err
			}
			defer f.Close()
			xf = f
		}
		if xf != nil && h.Typeflag != tar.TypeLink {
			// The layer's extended attributes as found (ping's
			// security.capability, or one planted), as Docker's
			// tar carries them.
			xs, err := xattrs(xf)
			if err != nil {
				return fmt.Errorf("/%s: %w", rel, err)
			}
			for k, v := range xs {
				if layerXattr(k) {
					if h.PAXRecords == nil {
						h.PAXRecords = map[string]string{}
					}
					h.PAXRecords[paxXattr+k] = v
				}
			}
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

// stream writes a checked layer as it was checked, failing when its
// bytes are not those the check found.
func (l *Checked) stream(ctx context.Context, w io.Writer) error {
	dir, err := l.spec.Dir()
	if err != nil {
		return err
	}
	defer dir.Close()
	h := sha256.New()
	cnt := &counter{w: h}
	mw := io.MultiWriter(w, cnt)
	if l.Changed {
		err = freshTar(ctx, dir, mw)
	} else {
		var ts *splitReader
		if ts, err = openSplit(l.spec); err != nil {
			return err
		}
		defer ts.Close()
		a := &assembler{ctx: ctx, split: ts, dir: dir, who: l.spec.Who, limit: l.spec.limit()}
		defer a.close()
		_, err = io.CopyBuffer(mw, a, make([]byte, 1<<20))
	}
	if err != nil {
		return fmt.Errorf("layer %s: %w", l.spec.DiffID, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != l.Digest || cnt.n != l.Size {
		return fmt.Errorf("layer %s changed while it was read: sha256:%s, %d bytes, checked sha256:%s, %d bytes", l.spec.DiffID, got, cnt.n, l.Digest, l.Size)
	}
	return nil
}

// Member is a member of a save stream held in memory (a config, a
// manifest.json).
type Member struct {
	Name string
	Body []byte
}

// Save streams an image as docker save does: the members of head, each
// layer's blob (blobs/sha256/<digest>, each distinct blob once, in the
// order of layers), then the members of tail. Its Close stops the writer
// and returns once it is done: nothing of the store is read after.
func Save(ctx context.Context, head []Member, layers []*Checked, tail []Member) io.ReadCloser {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tw := tar.NewWriter(pw)
		put := func(name string, size int64, body func(io.Writer) error) error {
			if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: time.Unix(0, 0).UTC()}); err != nil {
				return err
			}
			return body(tw)
		}
		putAll := func(ms []Member) error {
			for _, m := range ms {
				if err := put(m.Name, int64(len(m.Body)), func(w io.Writer) error { _, err := w.Write(m.Body); return err }); err != nil {
					return err
				}
			}
			return nil
		}
		err := putAll(head)
		streamed := map[string]bool{}
		for _, l := range layers {
			if err != nil {
				break
			}
			if streamed[l.Digest] {
				continue
			}
			streamed[l.Digest] = true
			err = put(l.Blob(), l.Size, func(w io.Writer) error { return l.stream(ctx, w) })
		}
		if err == nil {
			err = putAll(tail)
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return &saveStream{pr: pr, done: done}
}

// saveStream is a save being read: Close stops the writer and waits for
// it, so that nothing reads the store once Close has returned (the store
// may be closed next).
type saveStream struct {
	pr   *io.PipeReader
	done chan struct{}
}

func (s *saveStream) Read(p []byte) (int, error) { return s.pr.Read(p) }

func (s *saveStream) Close() error {
	s.pr.Close()
	<-s.done
	return nil
}

// boundedReader ends a decompression past its bound with an error.
type boundedReader struct {
	r    io.Reader
	left int64
	what string
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("%s decompresses to more than %d bytes: refused", b.what, int64(maxSplit))
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// trunc shortens a hostile value for a message.
func trunc(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}
