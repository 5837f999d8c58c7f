package archive

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"sync"

	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
)

// Layer returns the manifest's record of a layer.
func (a *Archive) Layer(d hashing.Digest) (*manifest.Layer, bool) {
	l, ok := a.layers[d]
	return l, ok
}

// Index returns the file index of a layer, read once and checked against
// the manifest's digest.
func (a *Archive) Index(layer hashing.Digest) (*fileindex.Index, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ix, ok := a.idx[layer]; ok {
		return ix, nil
	}
	l, ok := a.layers[layer]
	if !ok {
		return nil, fmt.Errorf("%w: layer %s", manifest.ErrNotFound, layer)
	}
	if l.Missing {
		// Not in the archive (an anomaly says so): its views are empty.
		ix, err := EmptyIndex()
		if err == nil {
			a.idx[layer] = ix
		}
		return ix, err
	}
	e, ok := a.Blob(manifest.IndexName(layer))
	if !ok {
		return nil, fmt.Errorf("%w: index of layer %s is not in the archive", manifest.ErrNotFound, layer)
	}
	if e.SHA256 != l.Index.Digest {
		return nil, fmt.Errorf("%w: index of layer %s does not match the manifest", manifest.ErrCorrupt, layer)
	}
	var ix *fileindex.Index
	var err error
	if a.pagedIndex(e) {
		// A large index is read in pages as it is used: each frame is
		// checked against its sealed digest when decoded, so the bytes
		// are the sealed ones without hashing the whole index first.
		ix, err = fileindex.OpenPaged(a, e.Offset, e.Size)
	} else if a.FramesSealed() && e.Size <= fileindex.MaxIndexSize {
		// Sealed frames: the bytes are the sealed ones as they decode
		// (as for a paged index), and they decode on both cores; no
		// second pass to hash the whole index. This is the first
		// lookup's wait in a fresh mount.
		a.Warm(e.Offset, e.Size, cap(a.prefetch))
		b := make([]byte, e.Size)
		if _, err = a.ReadAt(b, e.Offset); err != nil {
			return nil, fmt.Errorf("reading %s: %w", manifest.IndexName(layer), err)
		}
		ix, err = fileindex.ParseIndex(b)
	} else {
		// ReadEntry hashes the bytes against the entry's digest, which
		// the layer record names (checked above).
		var b []byte
		if b, err = a.ReadEntry(manifest.IndexName(layer), fileindex.MaxIndexSize); err != nil {
			return nil, err
		}
		ix, err = fileindex.ParseIndex(b)
	}
	if err != nil {
		return nil, fmt.Errorf("index of layer %s: %w", layer, err)
	}
	if ix.LayerSize != l.Size {
		return nil, fmt.Errorf("%w: index of layer %s is for %d bytes, layer is %d", manifest.ErrCorrupt, layer, ix.LayerSize, l.Size)
	}
	a.idx[layer] = ix
	return ix, nil
}

// pagedIndex says whether the index member e is read in pages.
func (a *Archive) pagedIndex(e manifest.Entry) bool { return e.Size >= a.pagedMin && a.FramesSealed() }

// DefaultPagedIndexMin is the index size from which an archive's file
// index is read in pages, through the frames (each checked against its
// sealed digest as it is decoded), instead of whole into memory: a layer
// of a million files has an index of about 200 MB.
const DefaultPagedIndexMin = 32 << 20

// SetPagedIndexMin sets the index size from which the indexes read from
// now on are read in pages (DefaultPagedIndexMin when the archive is
// opened; 0 pages every index).
func (a *Archive) SetPagedIndexMin(n int64) { a.pagedMin = n }

// Preload reads the file indexes of the archive's layers, in manifest
// order, until their sizes would pass budget bytes; paged indexes cost
// only their header. Run in the background once a mount is ready, it
// spares the first lookup in each view the index's read (~25 ms for the
// index of a Go toolchain's 16,000 files). Errors are left for that
// lookup to report.
func (a *Archive) Preload(budget int64) {
	for i := range a.Manifest.Artifacts {
		for j := range a.Manifest.Artifacts[i].Layers {
			l := &a.Manifest.Artifacts[i].Layers[j]
			e, ok := a.Blob(manifest.IndexName(l.Digest))
			if !ok {
				continue
			}
			if !a.pagedIndex(e) {
				if budget -= e.Size; budget < 0 {
					return
				}
			}
			_, _ = a.Index(l.Digest)
		}
	}
}

// Content returns a reader of a file's content within its layer. Sparse
// entries are read by parsing their tar header again.
func (a *Archive) Content(layer hashing.Digest, rec *fileindex.Record) (io.Reader, error) {
	e, ok := a.blobs[manifest.BlobName(layer)]
	if !ok {
		return nil, fmt.Errorf("%w: layer %s", manifest.ErrNotFound, layer)
	}
	if rec.Type != fileindex.TypeReg {
		return bytes.NewReader(nil), nil
	}
	if rec.Has(fileindex.FlagSparse) {
		hdr := rec
		if rec.Ino != rec.Index {
			ix, err := a.Index(layer)
			if err != nil {
				return nil, err
			}
			t, err := ix.Record(rec.Ino)
			if err != nil {
				return nil, err
			}
			hdr = &t
		}
		tr := tar.NewReader(a.Section(e.Offset+hdr.HdrOffset, e.Size-hdr.HdrOffset))
		if _, err := tr.Next(); err != nil {
			return nil, fmt.Errorf("%w: re-reading sparse entry %s: %v", manifest.ErrCorrupt, rec.Path, err)
		}
		return io.LimitReader(tr, rec.Size), nil
	}
	if rec.DataOffset < 0 || rec.DataOffset+rec.Size > e.Size {
		return nil, fmt.Errorf("%w: %s lies outside its layer", manifest.ErrCorrupt, rec.Path)
	}
	return a.Section(e.Offset+rec.DataOffset, rec.Size), nil
}

// EmptyIndex is the index of a layer with no entries: a root directory.
var EmptyIndex = sync.OnceValues(func() (*fileindex.Index, error) {
	var b fileindex.IndexBuilder
	defer b.Close()
	ib, err := b.Build(0)
	if err != nil {
		return nil, fmt.Errorf("empty index: %w", err)
	}
	return fileindex.ParseIndex(ib)
})
