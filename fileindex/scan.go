package fileindex

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
)

// Skipper is a reader that can pass over n bytes without copying them,
// showing each piece to fn. ScanLayerWith uses it to hash file content in
// place, where the source's buffers are, instead of copying it out first.
type Skipper interface {
	io.Reader
	Skip(n int64, fn func(p []byte)) (int64, error)
}

// countingReader tracks the offset in the layer and feeds bytes that fall
// in [hashFrom, hashTo) to h, whether they are read or skipped.
type countingReader struct {
	r                io.Reader
	sk               Skipper
	n                int64
	h                hash.Hash
	hashFrom, hashTo int64
}

func (c *countingReader) feed(p []byte, at int64) {
	if c.h == nil || at >= c.hashTo || at+int64(len(p)) <= c.hashFrom {
		return
	}
	lo := max(c.hashFrom-at, 0)
	hi := min(c.hashTo-at, int64(len(p)))
	c.h.Write(p[lo:hi])
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.feed(p[:n], c.n)
	c.n += int64(n)
	return n, err
}

// seekingReader lets archive/tar skip content by "seeking" forward, which
// the Skipper turns into hashing in place.
type seekingReader struct{ *countingReader }

func (s seekingReader) Seek(off int64, whence int) (int64, error) {
	if whence != io.SeekCurrent || off < 0 {
		return s.n, errors.New("layer scanner: only forward seeks")
	}
	k, err := s.sk.Skip(off, func(p []byte) {
		s.feed(p, s.n)
		s.n += int64(len(p))
	})
	if k < off && (err == nil || err == io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		err = readError{err}
	}
	return s.n, err
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// headerOnly types have no content in a tar stream, whatever their size says.
func headerOnly(t byte) bool {
	switch t {
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
		return true
	}
	return false
}

// ScanOptions bound what a scan does beyond reading the source: a sparse
// entry's holes expand to zeros that no source byte stands for, and are
// hashed all the same.
type ScanOptions struct {
	// Ctx, when set, stops the scan inside a sparse entry once done
	// (expanding holes reads nothing from the source, so no source read
	// would notice a cancellation).
	Ctx context.Context
	// MaxExpanded bounds the logical bytes of the layer's sparse entries
	// (0: no bound): eight entries of 1 TiB fit in a layer of 30 KB.
	MaxExpanded int64
}

// ErrTooSparse reports a layer whose sparse files declare more bytes than
// the scan may expand.
var ErrTooSparse = errors.New("manifest: sparse files expand too much")

// ScanLayerWith reads a layer tar from r to its very end, adding every
// entry to b, within o's bounds. hint, when set, is called with the offset
// of each entry's first header block before the entry is read: a place
// where a frame may end.
//
// A layer whose tar structure breaks off is not an error here: what was read
// is indexed and the break is returned as an anomaly, because the layer's
// bytes are evidence whether or not they parse. Errors of the source (see
// SourceReader and Skipper) are errors.
func ScanLayerWith(r io.Reader, b *IndexBuilder, hint func(off int64), o ScanOptions) (size int64, err error) {
	var expanded int64
	cr := &countingReader{r: r}
	var tr *tar.Reader
	if sk, ok := r.(Skipper); ok {
		cr.sk = sk
		tr = tar.NewReader(seekingReader{cr})
	} else {
		tr = tar.NewReader(cr)
	}
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	buf := *bufp
	h := sha256.New()
	// A regular file's content is hashed while archive/tar skips it on the
	// way to the next header, so its record is completed one step later.
	type pendingEntry struct {
		hdr             *tar.Header
		hdrOff, dataOff int64
	}
	var pending *pendingEntry
	finish := func() {
		if pending == nil {
			return
		}
		got := min(cr.n, pending.dataOff+pending.hdr.Size) - pending.dataOff
		sum := hashing.FromHash(h)
		dataOff := pending.dataOff
		if got != pending.hdr.Size {
			sum, dataOff = hashing.Digest{}, -1
			b.Anomalies = append(b.Anomalies, manifest.Anomaly{Path: pending.hdr.Name, Kind: "content-truncated", Detail: fmt.Sprintf("the layer ends %d bytes into its %d bytes of content", got, pending.hdr.Size)})
		}
		b.Add(pending.hdr, pending.hdrOff, dataOff, sum, false)
		pending = nil
		cr.h = nil
	}
	var srcErr error
	var end int64
	for {
		hdrOff := (end + 511) &^ 511
		if hint != nil {
			hint(hdrOff)
		}
		hdr, err := tr.Next()
		finish()
		if b.err != nil {
			return cr.n, b.err
		}
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
		if cr.sk != nil && !sparse && !headerOnly(hdr.Typeflag) {
			h.Reset()
			cr.h, cr.hashFrom, cr.hashTo = h, dataOff, dataOff+hdr.Size
			pending = &pendingEntry{hdr, hdrOff, dataOff}
			end = dataOff + hdr.Size
			continue
		}
		h.Reset()
		var content io.Reader = tr
		if sparse {
			expanded += hdr.Size
			if o.MaxExpanded > 0 && expanded > o.MaxExpanded {
				return cr.n, fmt.Errorf("%w: %q makes the layer's sparse files %d bytes, past the limit of %d", ErrTooSparse, hdr.Name, expanded, o.MaxExpanded)
			}
			content = ctxRead{o.Ctx, tr}
		}
		if n, err := io.CopyBuffer(h, content, buf); err != nil {
			if o.Ctx != nil && o.Ctx.Err() != nil {
				return cr.n, o.Ctx.Err()
			}
			srcErr = fmt.Errorf("reading content of %q: %w", hdr.Name, err)
			var re readError
			if !errors.As(err, &re) && !sparse {
				// Indexed as the lazy path does: the header is evidence.
				b.Anomalies = append(b.Anomalies, manifest.Anomaly{Path: hdr.Name, Kind: "content-truncated", Detail: fmt.Sprintf("the layer ends %d bytes into its %d bytes of content", n, hdr.Size)})
				b.Add(hdr, hdrOff, -1, hashing.Digest{}, false)
			}
			break
		}
		if sparse {
			dataOff = -1
		}
		b.Add(hdr, hdrOff, dataOff, hashing.FromHash(h), sparse)
		if b.err != nil {
			return cr.n, b.err
		}
		end = cr.n
	}
	// The blob is everything the source holds, trailing blocks included.
	if srcErr != nil {
		if _, err := io.CopyBuffer(io.Discard, cr, buf); err != nil {
			return cr.n, fmt.Errorf("reading layer: %w", sourceErr(err))
		}
	} else {
		t, err := scanTrailing(cr, buf)
		if err != nil {
			return cr.n, fmt.Errorf("reading layer: %w", sourceErr(err))
		}
		if t != nil {
			b.Trailing = t
			b.Anomalies = append(b.Anomalies, manifest.Anomaly{Kind: "trailing-data", Detail: fmt.Sprintf("%d bytes of %s data after the tar's end-of-archive marker, at offset %d of the layer blob (the layer's .trailing file)", t.Size, t.Type, t.Offset)})
		}
	}
	if srcErr != nil {
		var re readError
		if errors.As(srcErr, &re) {
			return cr.n, re.err
		}
		b.Anomalies = append(b.Anomalies, manifest.Anomaly{Kind: "tar-broken", Detail: fmt.Sprintf("layer tar unreadable after %d entries at offset %d: %v", b.n, cr.n, srcErr)})
	}
	return cr.n, nil
}

// scanTrailing reads the rest of the layer after its end-of-archive
// marker (cr is just past it) and returns the data there, if there is
// more than zero padding: hashed as it streams, whatever its size, with
// only its first bytes kept to tell what it is. The data starts at the
// first 512-byte block holding a non-zero byte (see Trailing).
func scanTrailing(cr *countingReader, buf []byte) (*manifest.Trailing, error) {
	end := cr.n
	var (
		t    *manifest.Trailing
		h    hash.Hash
		head []byte
	)
	for {
		k, err := cr.Read(buf)
		p := buf[:k]
		if t == nil {
			if i := firstNonZero(p); i >= 0 {
				at := cr.n - int64(k) + int64(i)
				t = &manifest.Trailing{Offset: end + (at-end)&^511}
				h = sha256.New()
				// The zeros of its first block before its first non-zero
				// byte, perhaps read with an earlier piece.
				lead := zeroBlock[:at-t.Offset]
				h.Write(lead)
				head = append(make([]byte, 0, sniffSize), lead...)
				p = p[i:]
			}
		}
		if t != nil {
			h.Write(p)
			head = append(head, p[:min(len(p), sniffSize-len(head))]...)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if t == nil {
		return nil, nil
	}
	t.Size = cr.n - t.Offset
	t.SHA256 = hashing.FromHash(h)
	t.Type = sniff(head)
	return t, nil
}

var zeroBlock [512]byte

func firstNonZero(p []byte) int {
	for i, c := range p {
		if c != 0 {
			return i
		}
	}
	return -1
}

// sniffSize is how much of trailing data sniff looks at: a tar header.
const sniffSize = 512

// sniff names what b, the first bytes of some data, looks like: a few
// formats told by their magic, else JSON, text or binary.
func sniff(b []byte) string {
	for _, m := range []struct{ magic, name string }{
		{"\x1f\x8b", "gzip"}, {"\x28\xb5\x2f\xfd", "zstd"}, {"\xfd7zXZ\x00", "xz"}, {"BZh", "bzip2"},
		{"PK\x03\x04", "zip"}, {"\x7fELF", "elf"},
	} {
		if strings.HasPrefix(string(b), m.magic) {
			return m.name
		}
	}
	if len(b) >= 262 && string(b[257:262]) == "ustar" {
		return "tar"
	}
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			if len(b) == sniffSize && !utf8.FullRune(b[i:]) {
				break // a rune cut by the window's end
			}
			return "binary"
		}
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0x7f {
			return "binary"
		}
		i += n
	}
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		return "json"
	}
	return "text"
}

func sourceErr(err error) error {
	var re readError
	if errors.As(err, &re) {
		return re.err
	}
	return err
}

// readError marks an error of the underlying reader (as opposed to a tar
// format error) so ScanLayerWith reports it instead of indexing around it.
type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }
func (e readError) Unwrap() error { return e.err }

// SourceError marks err as the source's, not the layer's: ScanLayerWith then
// fails with it instead of recording a broken layer.
func SourceError(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return readError{err}
}

// SourceReader wraps r so that its errors are told apart from tar format
// errors by ScanLayerWith.
func SourceReader(r io.Reader) io.Reader { return srcReader{r} }

type srcReader struct{ r io.Reader }

func (s srcReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = readError{err}
	}
	return n, err
}

// ctxRead stops a read once ctx is done.
type ctxRead struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxRead) Read(p []byte) (int, error) {
	if c.ctx != nil {
		if err := c.ctx.Err(); err != nil {
			return 0, err
		}
	}
	return c.r.Read(p)
}
