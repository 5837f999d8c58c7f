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
)

// exportRoute builds a container's changes layer from the engine's export
// stream (the container's whole filesystem as a tarball; works with a
// remote engine) by comparing every entry with the image by content, not
// by size and time alone. What the engine's export cannot carry is not
// compared: it stores times at whole seconds and, of xattrs, only
// security.capability.
//
// A file whose metadata matches the image is only hashed; when its hash
// differs (a content-only change), it is fetched again by path once the
// stream ends, and checked against the hash seen in the stream.
func exportRoute(ctx context.Context, e *Engine, id string, pristine *layers.Stack, lf *layerFile, anomalies *[]manifest.Anomaly) error {
	rc, err := e.c.ContainerExport(ctx, id)
	if err != nil {
		return e.wrap(err, "exporting container "+id)
	}
	defer rc.Close()
	tr := tar.NewReader(ctxReader{ctx, rc})
	seen := map[string]byte{} // path -> type in the export
	written := map[string]bool{}
	var again []refetch
	var links []*tar.Header // hard links whose target was not written
	buf := make([]byte, 1<<20)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: reading the export stream of %s: %v", ErrEngine, id, err)
		}
		name, unsafe := fileindex.CleanName(h.Name)
		if unsafe || name == "" {
			if name != "" {
				*anomalies = append(*anomalies, manifest.Anomaly{Path: h.Name, Kind: "unsafe-name", Detail: "in the engine's export stream; not stored"})
			}
			continue
		}
		h.Name = name
		if h.Typeflag == tar.TypeDir {
			h.Name += "/"
		}
		seen[name] = h.Typeflag
		old, ok, err := pristine.Lookup(name)
		if err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeReg:
			if ok && len(layers.Differs(&old.Rec, exportRecord(h, old.Rec.SHA256))) == 0 {
				hm := hashing.NewMulti(false, false)
				if _, err := io.CopyBuffer(hm, tr, buf); err != nil {
					return fmt.Errorf("%w: reading the export stream of %s: %v", ErrEngine, id, err)
				}
				if hm.SHA256() != old.Rec.SHA256 {
					again = append(again, refetch{h, hm.SHA256()})
					written[name] = true
				}
				continue
			}
			if err := lf.header(h); err != nil {
				return err
			}
			if _, err := io.CopyBuffer(lf.tw, tr, buf); err != nil {
				return fmt.Errorf("%w: reading the export stream of %s: %v", ErrEngine, id, err)
			}
			written[name] = true
			continue
		case tar.TypeLink:
			target, _ := fileindex.CleanName(h.Linkname)
			h.Linkname = target
			if written[target] && !pending(again, target) {
				if err := lf.header(h); err != nil {
					return err
				}
				written[name] = true
				continue
			}
			if ok {
				if t, tok, err := pristine.Lookup(target); err == nil && tok && t.Layer == old.Layer && t.Rec.Ino == old.Rec.Ino {
					continue // the same link as in the image
				}
			}
			links = append(links, h)
			continue
		}
		if ok && len(layers.Differs(&old.Rec, exportRecord(h, hashing.Digest{}))) == 0 {
			continue
		}
		if err := lf.header(h); err != nil {
			return err
		}
		written[name] = true
	}
	// Content-only changes, and targets of new hard links, fetched by path.
	for _, l := range links {
		t := l.Linkname
		if written[t] {
			continue
		}
		again = append(again, refetch{h: &tar.Header{Name: t}})
		written[t] = true
	}
	for _, r := range again {
		if err := fetchFile(ctx, e, id, r.h, r.sum, lf, anomalies); err != nil {
			return err
		}
	}
	for _, l := range links {
		if err := lf.header(l); err != nil {
			return err
		}
	}
	// Whatever the image had and the container no longer has.
	return whiteouts(pristine, "", seen, lf)
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
func fetchFile(ctx context.Context, e *Engine, id string, h *tar.Header, want hashing.Digest, lf *layerFile, anomalies *[]manifest.Anomaly) error {
	rc, _, err := e.c.CopyFromContainer(ctx, id, "/"+h.Name)
	if err != nil {
		return e.wrap(err, "reading /"+h.Name+" of container "+id)
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
