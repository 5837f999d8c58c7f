package snapshot

import (
	"archive/tar"
	"bufio"
	"fmt"
	"io"
	"os"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/tmpfile"
	"github.com/amber-forensics/amber/layers"
)

// A container's changes become one more OCI layer on top of its image's:
// added and changed entries as they are, deletions as .wh.NAME whiteouts,
// replaced directories as opaque (.wh..wh..opq). The layer is written to a
// temporary file first (its size and digest must be known before it goes
// into the archive), then stored like any image layer. The markers are
// package layers'.

// layerFile writes a layer tarball to a temporary file, hashing it.
type layerFile struct {
	f     *os.File
	bw    *bufio.Writer
	h     *hashing.Multi
	tw    *tar.Writer
	count int
}

func newLayerFile(dir string) (*layerFile, error) {
	f, err := tmpfile.TempFile(dir, ".amber-changes-*.tar") // no name: nothing left by kill -9
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
	return l.header(layers.WhiteoutHeader(dir, name))
}

func (l *layerFile) opaque(dir string) error { return l.header(layers.OpaqueHeader(dir)) }

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
func (l *layerFile) path() string { return tmpfile.ReopenPath(l.f) }

func (l *layerFile) remove() {
	l.f.Close()
	os.Remove(l.f.Name())
}

// joinPath joins a name to a path inside a tree ("" is the root).
func joinPath(dir, name string) string { return layers.JoinRel(dir, name) }
