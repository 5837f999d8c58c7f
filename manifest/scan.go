package manifest

import (
	"archive/tar"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/amber-forensics/amber/hashing"
)

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// ScanLayer reads a layer tar from r to its very end, adding every entry to
// b. hint, when set, is called with the offset of each entry's first header
// block before the entry is read: a place where a frame may end.
//
// A layer whose tar structure breaks off is not an error here: what was read
// is indexed and the break is returned as an anomaly, because the layer's
// bytes are evidence whether or not they parse. Read errors of r are errors.
func ScanLayer(r io.Reader, b *IndexBuilder, hint func(off int64)) (size int64, err error) {
	cr := &countingReader{r: r}
	tr := tar.NewReader(cr)
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	buf := *bufp
	h := sha256.New()
	var srcErr error
	for {
		hdrOff := (cr.n + 511) &^ 511
		if hint != nil {
			hint(hdrOff)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			srcErr = err
			break
		}
		dataOff := cr.n
		sparse := hdr.Typeflag == tar.TypeGNUSparse
		for k := range hdr.PAXRecords {
			if strings.HasPrefix(k, "GNU.sparse.") {
				sparse = true
			}
		}
		h.Reset()
		if _, err := io.CopyBuffer(h, tr, buf); err != nil {
			srcErr = fmt.Errorf("reading content of %q: %w", hdr.Name, err)
			break
		}
		if sparse {
			dataOff = -1
		}
		b.Add(hdr, hdrOff, dataOff, hashing.FromHash(h), sparse)
	}
	// The blob is everything the source holds, trailing blocks included.
	if _, err := io.CopyBuffer(io.Discard, cr, buf); err != nil {
		return cr.n, fmt.Errorf("reading layer: %w", err)
	}
	if srcErr != nil {
		var re readError
		if errors.As(srcErr, &re) {
			return cr.n, re.err
		}
		b.Anomalies = append(b.Anomalies, Anomaly{Kind: "tar-broken", Detail: fmt.Sprintf("layer tar unreadable after %d entries at offset %d: %v", b.entries, cr.n, srcErr)})
	}
	return cr.n, nil
}

// readError marks an error of the underlying reader (as opposed to a tar
// format error) so ScanLayer reports it instead of indexing around it.
type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }
func (e readError) Unwrap() error { return e.err }

// SourceReader wraps r so that its errors are told apart from tar format
// errors by ScanLayer.
func SourceReader(r io.Reader) io.Reader { return srcReader{r} }

type srcReader struct{ r io.Reader }

func (s srcReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = readError{err}
	}
	return n, err
}
