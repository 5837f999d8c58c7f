package snapshot

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/layers"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/engine"
)

// readExport builds a container's changes layer from the engine's export
// stream (the container's whole filesystem as a tarball; works with a
// remote engine) by comparing every entry with the image by content, not
// by size and time alone. What the engine's export cannot carry is not
// compared: it stores times at whole seconds and, of xattrs, only
// security.capability.
//
// A file whose metadata matches the image is only hashed; when its hash
// differs (a content-only change), it is fetched again by path once the
// stream ends, and checked against the hash seen in the stream.
func readExport(ctx context.Context, rt engine.Runtime, id string, pristine *layers.Stack, lf *layerFile, anomalies *[]manifest.Anomaly) error {
	rc, err := rt.Export(ctx, id)
	if err != nil {
		return engine.Wrap(err, "exporting container "+id)
	}
	defer rc.Close()
	x := &exportReader{ctx: ctx, rt: rt, id: id, pristine: pristine, lf: lf, anomalies: anomalies, tr: tar.NewReader(engine.ContextReader(ctx, rc)),
		seen: map[string]byte{}, written: map[string]bool{}, buf: make([]byte, 1<<20)}
	for {
		h, err := x.tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: reading the export stream of %s: %v", ErrEngine, id, err)
		}
		if err := x.entry(h); err != nil {
			return err
		}
	}
	return x.finish()
}

// exportReader is one reading of an export stream.
type exportReader struct {
	ctx       context.Context
	rt        engine.Runtime
	id        string
	pristine  *layers.Stack
	lf        *layerFile
	anomalies *[]manifest.Anomaly
	tr        *tar.Reader
	seen      map[string]byte // path -> type in the export
	written   map[string]bool
	again     []refetch
	links     []*tar.Header // hard links whose target was not written
	buf       []byte
}

// entry compares one entry of the stream with the image and writes it
// when it differs.
func (x *exportReader) entry(h *tar.Header) error {
	name, unsafe := fileindex.CleanName(h.Name)
	if unsafe || name == "" {
		if name != "" {
			*x.anomalies = append(*x.anomalies, manifest.Anomaly{Path: h.Name, Kind: "unsafe-name", Detail: "in the engine's export stream; not stored"})
		}
		return nil
	}
	h.Name = name
	if h.Typeflag == tar.TypeDir {
		h.Name += "/"
	}
	x.seen[name] = h.Typeflag
	old, ok, err := x.pristine.Lookup(name)
	if err != nil {
		return err
	}
	switch h.Typeflag {
	case tar.TypeReg:
		return x.regular(h, name, old, ok)
	case tar.TypeLink:
		return x.link(h, name, old, ok)
	}
	if ok && len(layers.Differs(&old.Rec, exportRecord(h, hashing.Digest{}))) == 0 {
		return nil
	}
	if err := x.lf.header(h); err != nil {
		return err
	}
	x.written[name] = true
	return nil
}

// regular writes a regular file that differs from the image's; one whose
// metadata matches is only hashed, and fetched again once the stream ends
// when its content differs.
func (x *exportReader) regular(h *tar.Header, name string, old layers.Node, ok bool) error {
	if ok && len(layers.Differs(&old.Rec, exportRecord(h, old.Rec.SHA256))) == 0 {
		hm := hashing.NewMulti(false, false)
		if _, err := io.CopyBuffer(hm, x.tr, x.buf); err != nil {
			return fmt.Errorf("%w: reading the export stream of %s: %v", ErrEngine, x.id, err)
		}
		if hm.SHA256() != old.Rec.SHA256 {
			x.again = append(x.again, refetch{h, hm.SHA256()})
			x.written[name] = true
		}
		return nil
	}
	if err := x.lf.header(h); err != nil {
		return err
	}
	if _, err := io.CopyBuffer(x.lf.tw, x.tr, x.buf); err != nil {
		return fmt.Errorf("%w: reading the export stream of %s: %v", ErrEngine, x.id, err)
	}
	x.written[name] = true
	return nil
}

// link writes a hard link whose target is already written; one the image
// has alike is left out; the others wait for the end of the stream.
func (x *exportReader) link(h *tar.Header, name string, old layers.Node, ok bool) error {
	target, _ := fileindex.CleanName(h.Linkname)
	h.Linkname = target
	if x.written[target] && !pending(x.again, target) {
		if err := x.lf.header(h); err != nil {
			return err
		}
		x.written[name] = true
		return nil
	}
	if ok {
		if t, tok, err := x.pristine.Lookup(target); err == nil && tok && t.Layer == old.Layer && t.Rec.Ino == old.Rec.Ino {
			return nil // the same link as in the image
		}
	}
	x.links = append(x.links, h)
	return nil
}

// finish fetches the content-only changes and the targets of new hard
// links by path, writes the links, and whiteouts for whatever the image
// had and the container no longer has.
func (x *exportReader) finish() error {
	for _, l := range x.links {
		t := l.Linkname
		if x.written[t] {
			continue
		}
		x.again = append(x.again, refetch{h: &tar.Header{Name: t}})
		x.written[t] = true
	}
	for _, r := range x.again {
		if err := fetchFile(x.ctx, x.rt, x.id, r.h, r.sum, x.lf, x.anomalies); err != nil {
			return err
		}
	}
	for _, l := range x.links {
		if err := x.lf.header(l); err != nil {
			return err
		}
	}
	return whiteouts(x.pristine, "", x.seen, x.lf)
}

type refetch struct {
	h   *tar.Header
	sum hashing.Digest
}

// exportRecord is a tar header as an index record, for comparison with
// the image: only what the export stream carries.
func exportRecord(h *tar.Header, sum hashing.Digest) *fileindex.Record {
	r := &fileindex.Record{Type: h.Typeflag, Mode: uint32(h.Mode) & 0o7777, UID: uint32(h.Uid), GID: uint32(h.Gid),
		Size: h.Size, ModTime: h.ModTime, Linkname: h.Linkname, DevMajor: uint32(h.Devmajor), DevMinor: uint32(h.Devminor), SHA256: sum}
	if r.Type != fileindex.TypeReg {
		r.Size = 0
	}
	for k, v := range h.PAXRecords {
		if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if r.Xattrs == nil {
				r.Xattrs = map[string]string{}
			}
			r.Xattrs[x] = v
		}
	}
	return r
}

// fetchFile reads one file of the container by path through the engine
// and stores it under the header seen in the export stream.
func fetchFile(ctx context.Context, rt engine.Runtime, id string, h *tar.Header, want hashing.Digest, lf *layerFile, anomalies *[]manifest.Anomaly) error {
	rc, err := rt.CopyFrom(ctx, id, "/"+h.Name)
	if err != nil {
		return engine.Wrap(err, "reading /"+h.Name+" of container "+id)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	fh, err := tr.Next()
	if err != nil {
		return fmt.Errorf("%w: reading /%s of container %s: %v", ErrEngine, h.Name, id, err)
	}
	if fh.Typeflag != tar.TypeReg {
		return fmt.Errorf("%w: /%s of container %s changed type during the capture", ErrContainerGone, h.Name, id)
	}
	if h.Size == 0 && h.ModTime.IsZero() {
		// A hard link's target, not seen in the stream as a file of its
		// own: take the metadata the engine gives now.
		fh.Name = h.Name
		h = fh
	}
	h.Typeflag = tar.TypeReg
	h.Size = fh.Size
	hm := hashing.NewMulti(false, false)
	if err := lf.header(h); err != nil {
		return err
	}
	if _, err := io.Copy(io.MultiWriter(lf.tw, hm), tr); err != nil {
		return fmt.Errorf("%w: reading /%s of container %s: %v", ErrEngine, h.Name, id, err)
	}
	if !want.IsZero() && hm.SHA256() != want {
		*anomalies = append(*anomalies, manifest.Anomaly{Path: h.Name, Kind: "changed-during-capture",
			Detail: fmt.Sprintf("content was %s in the export stream and %s when read again; the latter is stored", want, hm.SHA256())})
	}
	return nil
}

// whiteouts writes a .wh. marker for every path of the image under dir
// that the container no longer has (not descending into deleted
// directories).
func whiteouts(pristine *layers.Stack, dir string, seen map[string]byte, lf *layerFile) error {
	kids, err := pristine.ReadDir(dir)
	if err != nil {
		return err
	}
	sort.Slice(kids, func(i, j int) bool { return kids[i].Rec.Name() < kids[j].Rec.Name() })
	for _, k := range kids {
		p := path.Join(dir, k.Rec.Name())
		t, ok := seen[p]
		if !ok {
			if err := lf.whiteout(dir, k.Rec.Name()); err != nil {
				return err
			}
			continue
		}
		if k.Rec.Type == fileindex.TypeDir && t == tar.TypeDir {
			if err := whiteouts(pristine, p, seen, lf); err != nil {
				return err
			}
		}
	}
	return nil
}

func pending(again []refetch, name string) bool {
	for _, r := range again {
		if r.h.Name == name {
			return true
		}
	}
	return false
}
