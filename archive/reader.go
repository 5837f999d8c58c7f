package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/bufpool"
	"github.com/amber-forensics/amber/manifest"
)

// Archive is an opened evidence archive. Opening reads the seek table, the
// trailer and the manifest; indexes and content are read on demand, one
// frame at a time, through a shared cache. Safe for concurrent use.
type Archive struct {
	Path     string
	Size     int64
	Table    *SeekTable
	TarSize  int64
	Trailer  *Trailer
	Manifest *manifest.Manifest
	// ManifestBytes are the manifest exactly as stored.
	ManifestBytes []byte

	// f holds the compressed bytes: the file (Open) or any ReaderAt
	// (OpenReaderAt: a blob in a registry); closer closes it, when it can.
	f      io.ReaderAt
	closer io.Closer
	cache  *bufpool.Cache
	// pagedMin is the index size read in pages (SetPagedIndexMin).
	pagedMin int64
	// prefetch, when set, bounds how many next frames are decoded ahead.
	prefetch chan struct{}
	decoded  atomic.Int64
	// decodedIDs records which frames were decoded, when tracing is on.
	trace  sync.Map
	mu     sync.Mutex
	blobs  map[string]manifest.Entry
	idx    map[hashing.Digest]*fileindex.Index
	layers map[hashing.Digest]*manifest.Layer
	// frameDigests are the sealed SHA-256 of the compressed frames
	// (FrameDigestsName), when the archive has them: read on first use,
	// so that opening stays O(1).
	sealOnce     sync.Once
	frameDigests []hashing.Digest
	sealErr      error
}

// sealed returns the sealed frame digests (nil without them).
func (a *Archive) sealed() ([]hashing.Digest, error) {
	if a.blobs == nil {
		return nil, nil // still opening: the trailer and manifest frames are not sealed ones
	}
	a.sealOnce.Do(func() {
		e, ok := a.blobs[FrameDigestsName]
		if !ok {
			return
		}
		if e.Size > a.Table.NumFrames()*65+65 {
			a.sealErr = fmt.Errorf("%w: %s is %d bytes for %d frames", manifest.ErrCorrupt, FrameDigestsName, e.Size, a.Table.NumFrames())
			return
		}
		// Decoded directly, not through the frame cache (whose loads
		// check these very digests).
		b := make([]byte, 0, e.Size)
		for off := e.Offset; off < e.Offset+e.Size; {
			fr, ok := a.Table.EntryByDecompressedOffset(uint64(off))
			if !ok {
				a.sealErr = fmt.Errorf("%w: no frame holds %s", manifest.ErrCorrupt, FrameDigestsName)
				return
			}
			d, err := DecodeFrame(a.f, fr, nil)
			if err != nil {
				a.sealErr = err
				return
			}
			from := off - int64(fr.DecompressedOffset)
			k := min(int64(len(d))-from, e.Offset+e.Size-off)
			b = append(b, d[from:from+k]...)
			off += k
		}
		if got := hashing.Sum(b); got != e.SHA256 {
			a.sealErr = fmt.Errorf("%w: %s has SHA-256 %s, the manifest says %s", manifest.ErrCorrupt, FrameDigestsName, got.Hex(), e.SHA256.Hex())
			return
		}
		a.frameDigests, a.sealErr = parseFrameDigests(b)
	})
	return a.frameDigests, a.sealErr
}

// WarmOpen asks the kernel to start reading, in the background, the end
// of the archive at path, where Open reads (the seek table, the trailer,
// the manifest): a process about to open it (a background mount's child,
// still starting) then finds those bytes in the page cache.
func WarmOpen(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		const tail = 1 << 20
		bufpool.WillNeed(f, max(0, st.Size()-tail), min(st.Size(), tail))
	}
}

// Open opens an archive for reading.
func Open(path string) (*Archive, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening archive: %w", err)
	}
	a, err := openFile(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	a.closer = f
	return a, nil
}

// ReaderWillNeed is a ReaderAt that can be told, ahead of time, which of
// its bytes are about to be read (a blob fetched over the network): Warm
// asks it for a frame range in one go, as it asks the kernel of a file.
type ReaderWillNeed interface {
	WillNeed(off, n int64)
}

// ReaderForget is a ReaderAt that keeps bytes it has read (an on-disk
// cache of a remote blob): a frame whose bytes fail their check is
// forgotten, so that a later read fetches it afresh instead of failing
// for ever on a damaged copy.
type ReaderForget interface {
	Forget(off, n int64)
}

// OpenReaderAt opens an archive of size bytes read through r (a blob in a
// registry, read lazily): only the end (seek table, trailer, manifest)
// is read now, frames as they are needed, each checked as Open's are.
// name stands for the archive in messages. Close closes r when r is an
// io.Closer.
func OpenReaderAt(r io.ReaderAt, size int64, name string) (*Archive, error) {
	a, err := open(r, size, name)
	if err != nil {
		return nil, err
	}
	if c, ok := r.(io.Closer); ok {
		a.closer = c
	}
	return a, nil
}

func openFile(f *os.File, path string) (*Archive, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("opening archive: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", manifest.ErrNotArchive, path)
	}
	return open(f, st.Size(), path)
}

func open(f io.ReaderAt, size int64, path string) (*Archive, error) {
	var err error
	a := &Archive{Path: path, Size: size, f: f, idx: map[hashing.Digest]*fileindex.Index{}, pagedMin: DefaultPagedIndexMin}
	a.setCache(32)
	a.Table, err = ReadSeekTable(f, a.Size)
	if err != nil {
		return nil, err
	}
	a.TarSize = int64(a.Table.SeekTable.Size())
	if a.TarSize < trailerTail {
		return nil, fmt.Errorf("%w: tar stream of %d bytes is too short to hold a trailer", manifest.ErrCorrupt, a.TarSize)
	}
	a.Trailer, err = a.readTrailer()
	if err != nil {
		return nil, err
	}
	t := a.Trailer
	mb := make([]byte, t.ManifestSize)
	if _, err := a.ReadAt(mb, t.ManifestOffset); err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	if got := hashing.Sum(mb); got != t.ManifestSHA256 {
		// Say "unsupported version" rather than "damaged" when that is what
		// it is: a newer amber's archive is not tampered with.
		if _, perr := manifest.ParseManifest(mb); errors.Is(perr, manifest.ErrUnsupportedVersion) {
			return nil, perr
		}
		return nil, fmt.Errorf("%w: manifest (tar bytes %d-%d) has SHA-256 %s, the trailer says %s", manifest.ErrCorrupt, t.ManifestOffset, t.ManifestOffset+t.ManifestSize-1, got.Hex(), t.ManifestSHA256.Hex())
	}
	a.ManifestBytes = mb
	a.Manifest, err = manifest.ParseManifest(mb)
	if err != nil {
		return nil, err
	}
	a.blobs = make(map[string]manifest.Entry, len(a.Manifest.Entries))
	for _, e := range a.Manifest.Entries {
		if e.Offset+e.Size > t.ManifestOffset {
			return nil, fmt.Errorf("%w: manifest places %s past the manifest", manifest.ErrCorrupt, e.Name)
		}
		a.blobs[e.Name] = e
	}
	a.layers = map[hashing.Digest]*manifest.Layer{}
	for i := range a.Manifest.Artifacts {
		for j := range a.Manifest.Artifacts[i].Layers {
			l := &a.Manifest.Artifacts[i].Layers[j]
			a.layers[l.Digest] = l
		}
	}
	return a, nil
}

func (a *Archive) readTrailer() (*Trailer, error) {
	at := a.TarSize - trailerTail
	buf := make([]byte, trailerTail)
	if _, err := a.ReadAt(buf, at); err != nil {
		return nil, fmt.Errorf("reading trailer: %w", err)
	}
	tr := tar.NewReader(bytes.NewReader(buf))
	h, err := tr.Next()
	if err != nil || h.Name != TrailerName || h.Size != TrailerSize {
		return nil, fmt.Errorf("%w: no amber trailer at tar offset %d (is this an amber archive?)", manifest.ErrNotArchive, at)
	}
	tb := buf[512 : 512+TrailerSize]
	t, err := ParseTrailer(tb)
	if err != nil {
		return nil, err
	}
	if t.TarOffset != at {
		return nil, fmt.Errorf("%w: trailer says it is at tar offset %d, it is at %d", manifest.ErrCorrupt, t.TarOffset, at)
	}
	return t, nil
}

// frame returns frame fr decoded, held until a.cache.release.
func (a *Archive) frame(fr Frame) (*bufpool.Item, error) {
	return a.cache.Acquire(fr.ID, func() ([]byte, error) {
		a.decoded.Add(1)
		a.trace.Store(fr.ID, true)
		src := bufpool.Get(int(min(fr.CompressedSize, MaxFrameSize+1<<20)))
		defer bufpool.Put(src)
		if int64(len(src)) != int64(fr.CompressedSize) {
			return nil, &FrameError{fr, fmt.Errorf("claims %d compressed bytes, more than a frame may hold", fr.CompressedSize)}
		}
		if _, err := a.f.ReadAt(src, int64(fr.CompressedOffset)); err != nil {
			return nil, &FrameError{fr, fmt.Errorf("reading: %w", err)}
		}
		digests, err := a.sealed()
		if err != nil {
			return nil, &FrameError{fr, fmt.Errorf("the sealed frame digests cannot be read: %w", err)}
		}
		if fr.ID < int64(len(digests)) && hashing.Sum(src) != digests[fr.ID] {
			a.forget(fr)
			return nil, &FrameError{fr, fmt.Errorf("its bytes do not match the sealed frame digest (%s)", FrameDigestsName)}
		}
		dst := bufpool.Get(int(min(fr.DecompressedSize, MaxFrameSize)))
		out, err := decodeFrameBytes(src, fr, dst)
		if err != nil {
			a.forget(fr)
			bufpool.Put(dst)
		}
		return out, err
	})
}

// forget tells a reader that keeps what it read that fr's bytes failed
// their check.
func (a *Archive) forget(fr Frame) {
	if r, ok := a.f.(ReaderForget); ok {
		r.Forget(int64(fr.CompressedOffset), int64(fr.CompressedSize))
	}
}

// FramesSealed reports whether every frame holding member content is
// checked against a sealed SHA-256 as it is decoded: then a file's bytes
// are authentic as soon as their frames decode, without hashing the whole
// file first.
func (a *Archive) FramesSealed() bool {
	if d, err := a.sealed(); err != nil || len(d) == 0 {
		return false
	}
	e := a.blobs[FrameDigestsName]
	// Every frame before the digests member is covered.
	last, ok := a.Table.EntryByDecompressedOffset(uint64(e.HeaderOffset) - 1)
	return ok && last.ID < int64(len(a.frameDigests))
}

// parseFrameDigests reads FrameDigestsName: one hex SHA-256 per line.
func parseFrameDigests(b []byte) ([]hashing.Digest, error) {
	var out []hashing.Digest
	for i, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		d, err := hashing.Parse(string(line))
		if err != nil {
			return nil, fmt.Errorf("%w: %s line %d: %v", manifest.ErrCorrupt, FrameDigestsName, i+1, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// prefetchAfter decodes the frame after id in the background, unless it is
// cached, being decoded, or enough prefetches are already running.
func (a *Archive) prefetchAfter(id int64) {
	next, ok := a.Table.EntryByID(id + 1)
	if !ok || a.cache.Has(next.ID) {
		return
	}
	a.decodeAhead(next)
}

// decodeAhead decodes fr in the background if a prefetch slot is free, and
// reports whether one was: the slots bound the memory and cores spent
// decoding what nobody has asked for yet.
func (a *Archive) decodeAhead(fr Frame) bool {
	if a.prefetch == nil {
		return false
	}
	select {
	case a.prefetch <- struct{}{}:
		go func() {
			defer func() { <-a.prefetch }()
			if c, err := a.frame(fr); err == nil {
				a.cache.Release(c)
			}
		}()
		return true
	default:
		return false
	}
}

// Warm decodes, in the background, up to ahead frames holding tar bytes
// [off, off+n) that are not cached yet, so that a reader going through them
// in order finds them ready. It returns at once.
func (a *Archive) Warm(off, n int64, ahead int) {
	first, ok := a.Table.EntryByDecompressedOffset(uint64(off))
	if !ok || n <= 0 {
		return
	}
	// Ask the kernel for all the compressed bytes at once: one large read
	// instead of a frame at a time when the archive is not in the page
	// cache.
	if last, ok := a.Table.EntryByDecompressedOffset(uint64(off + n - 1)); ok {
		end := int64(last.CompressedOffset) + int64(last.CompressedSize)
		switch r := a.f.(type) {
		case *os.File:
			bufpool.WillNeed(r, int64(first.CompressedOffset), end-int64(first.CompressedOffset))
		case ReaderWillNeed:
			r.WillNeed(int64(first.CompressedOffset), end-int64(first.CompressedOffset))
		}
	}
	for id, k := first.ID, 0; k < ahead; id, k = id+1, k+1 {
		fr, ok := a.Table.EntryByID(id)
		if !ok || int64(fr.DecompressedOffset) >= off+n {
			return
		}
		if a.cache.Has(id) {
			continue
		}
		if !a.decodeAhead(fr) {
			return
		}
	}
}

// SetCache sizes the shared cache of decoded frames and turns on prefetch
// of the next frame with up to parallel background decoders (0: off).
// Call it before reading.
func (a *Archive) SetCache(frames, parallel int) {
	a.setCache(frames)
	a.prefetch = nil
	if parallel > 0 {
		a.prefetch = make(chan struct{}, parallel)
	}
}

// setCache makes a cache of n decoded frames whose evicted buffers are
// reused.
func (a *Archive) setCache(n int) {
	if a.cache != nil {
		a.cache.Close()
	}
	a.cache = bufpool.NewCache(n)
	a.cache.Recycle = bufpool.Put
}

// FramesDecoded returns how many frames have been decompressed and which.
func (a *Archive) FramesDecoded() (int64, []int64) {
	var ids []int64
	a.trace.Range(func(k, _ any) bool { ids = append(ids, k.(int64)); return true })
	return a.decoded.Load(), ids
}

// Close releases the file (the reader, when it is an io.Closer).
func (a *Archive) Close() error {
	a.cache.Close()
	if a.closer == nil {
		return nil
	}
	return a.closer.Close()
}

// File is the underlying file, for verification.
func (a *Archive) File() io.ReaderAt { return a.f }

// ReadAt reads the decompressed tar stream.
func (a *Archive) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		if off >= a.TarSize {
			return n, io.EOF
		}
		c, b, err := a.frameAt(off)
		if err != nil {
			return n, err
		}
		k := copy(p[n:], b)
		a.cache.Release(c)
		n += k
		off += int64(k)
	}
	return n, nil
}

// frameAt returns the frame holding tar offset off, held until
// a.cache.release, and its bytes from off on; the next frame is decoded
// ahead when prefetch is on.
func (a *Archive) frameAt(off int64) (*bufpool.Item, []byte, error) {
	fr, ok := a.Table.EntryByDecompressedOffset(uint64(off))
	if !ok {
		return nil, nil, fmt.Errorf("%w: no frame holds tar offset %d", manifest.ErrCorrupt, off)
	}
	c, err := a.frame(fr)
	if err != nil {
		return nil, nil, err
	}
	if a.prefetch != nil {
		a.prefetchAfter(fr.ID)
	}
	start := off - int64(fr.DecompressedOffset)
	if start < 0 || start >= int64(len(c.Bytes())) {
		a.cache.Release(c)
		return nil, nil, fmt.Errorf("%w: frame %d holds nothing at tar offset %d", manifest.ErrCorrupt, fr.ID, off)
	}
	return c, c.Bytes()[start:], nil
}

// Held is a range of the tar stream lying in decoded frames, handed out
// without copying: the frames are not reused until Release.
type Held struct {
	c      *bufpool.Cache
	frames []*bufpool.Item
	// Bufs are the range's bytes, in order.
	Bufs [][]byte
}

// Release lets the frames go; Bufs must not be used afterwards.
func (h *Held) Release() {
	for _, f := range h.frames {
		h.c.Release(f)
	}
	h.frames, h.Bufs = nil, nil
}

// Len is the number of bytes held.
func (h *Held) Len() int {
	n := 0
	for _, b := range h.Bufs {
		n += len(b)
	}
	return n
}

// Hold returns the tar stream's bytes [off, off+n) (fewer at its end) as
// they lie in the decoded frames, for a reply written straight from them.
func (a *Archive) Hold(off, n int64) (*Held, error) {
	h := &Held{c: a.cache}
	for end := min(off+n, a.TarSize); off < end; {
		f, b, err := a.frameAt(off)
		if err != nil {
			h.Release()
			return nil, err
		}
		b = b[:min(int64(len(b)), end-off)]
		h.frames = append(h.frames, f)
		h.Bufs = append(h.Bufs, b)
		off += int64(len(b))
	}
	return h, nil
}

// Section returns a reader of length n at tar offset off.
func (a *Archive) Section(off, n int64) *io.SectionReader { return io.NewSectionReader(a, off, n) }

// Blob returns the manifest entry of a tar member by name.
func (a *Archive) Blob(name string) (manifest.Entry, bool) {
	e, ok := a.blobs[name]
	return e, ok
}

// ReadEntry reads a whole (small) member and checks its SHA-256.
func (a *Archive) ReadEntry(name string, limit int64) ([]byte, error) {
	e, ok := a.blobs[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s is not in the archive", manifest.ErrNotFound, name)
	}
	if e.Size > limit {
		return nil, fmt.Errorf("%w: %s is %d bytes, more than %d", manifest.ErrCorrupt, name, e.Size, limit)
	}
	b := make([]byte, e.Size)
	if _, err := a.ReadAt(b, e.Offset); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if got := hashing.Sum(b); got != e.SHA256 {
		return nil, fmt.Errorf("%w: %s has SHA-256 %s, the manifest says %s", manifest.ErrCorrupt, name, got.Hex(), e.SHA256.Hex())
	}
	return b, nil
}
