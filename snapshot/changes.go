package snapshot

import (
	"archive/tar"
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/textsafe"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/view"
)

// A container's changes become one more OCI layer on top of its image's:
// added and changed entries as they are, deletions as .wh.NAME whiteouts,
// replaced directories as opaque (.wh..wh..opq). The layer is written to a
// temporary file first (its size and digest must be known before it goes
// into the archive), then stored like any image layer.

const (
	whPrefix = ".wh."
	whOpaque = ".wh..wh..opq"
)

// layerFile writes a layer tarball to a temporary file, hashing it.
type layerFile struct {
	f     *os.File
	bw    *bufio.Writer
	h     *hashing.Multi
	tw    *tar.Writer
	count int
}

func newLayerFile(dir string) (*layerFile, error) {
	f, err := manifest.TempFile(dir, ".amber-changes-*.tar") // no name: nothing left by kill -9
	if err != nil {
		return nil, fmt.Errorf("creating the changes layer: %w", err)
	}
	lf := &layerFile{f: f, bw: bufio.NewWriterSize(f, 1<<20), h: hashing.NewMulti(false, false)}
	lf.tw = tar.NewWriter(io.MultiWriter(lf.bw, lf.h))
	return lf, nil
}

// header writes h in PAX format, so times keep their nanoseconds.
func (l *layerFile) header(h *tar.Header) error {
	h.Format = tar.FormatPAX
	l.count++
	if err := l.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("writing the changes layer (%s): %w", h.Name, err)
	}
	return nil
}

func (l *layerFile) whiteout(dir, name string) error {
	p := whPrefix + name
	if dir != "" {
		p = dir + "/" + p
	}
	return l.header(&tar.Header{Name: p, Typeflag: tar.TypeReg, Mode: 0o644, ModTime: time.Unix(0, 0)})
}

func (l *layerFile) opaque(dir string) error {
	return l.header(&tar.Header{Name: dir + "/" + whOpaque, Typeflag: tar.TypeReg, Mode: 0o644, ModTime: time.Unix(0, 0)})
}

// finish closes the tarball; the file stays for reading.
func (l *layerFile) finish() (size int64, sum hashing.Digest, err error) {
	if err := l.tw.Close(); err != nil {
		return 0, hashing.Digest{}, fmt.Errorf("writing the changes layer: %w", err)
	}
	if err := l.bw.Flush(); err != nil {
		return 0, hashing.Digest{}, fmt.Errorf("writing the changes layer: %w", err)
	}
	return l.h.Size(), l.h.SHA256(), nil
}

// path opens the layer again (it has no name).
func (l *layerFile) path() string { return manifest.ReopenPath(l.f) }

func (l *layerFile) remove() {
	l.f.Close()
	os.Remove(l.f.Name())
}

// fileStore serves one file as a store, for storing a changes layer
// through the same path as image layers.
type fileStore struct{ path string }

func (s fileStore) open(string) (io.ReadCloser, int64, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}
func (s fileStore) exists(string) bool { return true }
func (s fileStore) key(string) string  { return s.path }

// Change is one line of a change list.
type Change struct {
	Kind byte // 'A', 'C' or 'D'
	Path string
	// What lists what changed, for C.
	What []string
}

// changeList compares a changes layer with the image below it by content
// and metadata: the content-aware answer to "docker diff". A path is C
// only when something about it differs; an entry copied into the layer
// unchanged is not listed.
func changeList(pristine *view.Layered, changes *manifest.Index) ([]Change, error) {
	var out []Change
	var walkDir func(dir uint32, dirPath string) error
	walkDir = func(dir uint32, dirPath string) error {
		first, n := changes.Children(dir)
		opaque := false
		present := map[string]bool{}
		for k := first; k < first+n; k++ {
			rec, err := changes.Record(k)
			if err != nil {
				return err
			}
			name := rec.Name()
			if name == whOpaque {
				opaque = dir != 0 // overlayfs never makes a root opaque
				continue
			}
			present[name] = true
		}
		for k := first; k < first+n; k++ {
			rec, err := changes.Record(k)
			if err != nil {
				return err
			}
			name := rec.Name()
			p := joinPath(dirPath, name)
			switch {
			case name == whOpaque:
				continue
			case strings.HasPrefix(name, whPrefix):
				target := joinPath(dirPath, strings.TrimPrefix(name, whPrefix))
				if _, ok, err := pristine.Lookup(target); err != nil {
					return err
				} else if ok {
					out = append(out, Change{Kind: 'D', Path: "/" + target})
				}
				continue
			}
			old, ok, err := pristine.Lookup(p)
			if err != nil {
				return err
			}
			under := ok && old.Rec.Type == manifest.TypeDir && rec.Type == manifest.TypeDir
			switch {
			case !ok:
				out = append(out, Change{Kind: 'A', Path: "/" + p})
			case rec.Has(manifest.FlagImplicit):
				// Only a parent of something changed: not listed itself.
			default:
				if what := differs(&old.Rec, &rec); len(what) > 0 {
					out = append(out, Change{Kind: 'C', Path: "/" + p, What: what})
				}
			}
			if rec.Type == manifest.TypeDir {
				if err := walkDir(k, p); err != nil {
					return err
				}
			}
			if ok && old.Rec.Type == manifest.TypeDir && !under {
				// A directory replaced by something else: all it held is gone.
				if err := deletedBelow(pristine, p, nil, &out); err != nil {
					return err
				}
			}
		}
		if opaque {
			if err := deletedBelow(pristine, dirPath, present, &out); err != nil {
				return err
			}
		}
		return nil
	}
	if changes.Len() == 0 {
		return nil, nil
	}
	if err := walkDir(0, ""); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// deletedBelow lists what lay under dir in the image and is gone: every
// child not in keep, and all below it.
func deletedBelow(pristine *view.Layered, dir string, keep map[string]bool, out *[]Change) error {
	kids, err := pristine.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, k := range kids {
		name := k.Rec.Name()
		if keep[name] {
			continue
		}
		p := joinPath(dir, name)
		*out = append(*out, Change{Kind: 'D', Path: "/" + p})
		if k.Rec.Type == manifest.TypeDir {
			if err := deletedBelow(pristine, p, nil, out); err != nil {
				return err
			}
		}
	}
	return nil
}

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// differs lists what differs between an image's record and a container's.
func differs(old, cur *manifest.Record) []string {
	var w []string
	if old.Type != cur.Type {
		return []string{"type"}
	}
	if old.Type == manifest.TypeReg && (old.SHA256 != cur.SHA256 || old.Size != cur.Size) {
		if old.Size != cur.Size {
			w = append(w, "size")
		}
		if old.SHA256 != cur.SHA256 {
			w = append(w, "content")
		}
	}
	if old.Mode != cur.Mode {
		w = append(w, "mode")
	}
	if old.UID != cur.UID || old.GID != cur.GID {
		w = append(w, "owner")
	}
	if old.Type == manifest.TypeSymlink && old.Linkname != cur.Linkname {
		w = append(w, "target")
	}
	if (old.Type == manifest.TypeChar || old.Type == manifest.TypeBlock) && (old.DevMajor != cur.DevMajor || old.DevMinor != cur.DevMinor) {
		w = append(w, "device")
	}
	if !manifest.SameMtime(old.ModTime, cur.ModTime) {
		w = append(w, "mtime")
	}
	if !manifest.SameXattrs(old.Xattrs, cur.Xattrs) {
		w = append(w, "xattrs")
	}
	return w
}

// formatChanges renders a change list as docker diff prints it, one path
// per line; non-printable bytes in names are escaped (%q style) so that
// every line is one path.
func formatChanges(cs []Change) []byte {
	var b bytes.Buffer
	for _, c := range cs {
		fmt.Fprintf(&b, "%c %s\n", c.Kind, printablePath(c.Path))
	}
	return b.Bytes()
}

// printablePath shows a path as every text output of amber does: as it is
// when it prints as itself, else Go-quoted (control, bidi and invisible
// characters, bytes that are not UTF-8).
func printablePath(p string) string { return textsafe.Escape(p) }
