package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	seekable "github.com/SaveTheRbtz/zstd-seekable-format-go/pkg"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/tmpfile"
	"github.com/amber-forensics/amber/manifest"
)

// Frame sizes: a frame is cut at the first entry boundary after
// FrameTarget bytes, and never grows past FrameMax.
const (
	FrameTarget = 512 << 10
	FrameMax    = 1 << 20
)

// writeVersion is the format version written; tests change it to prove
// that other versions are refused.
var writeVersion = manifest.FormatVersion

// WriterOptions configure a Writer.
type WriterOptions struct {
	// MD5 and SHA1 also compute those digests of the whole archive.
	MD5, SHA1 bool
	// Progress, when set, is called now and then with the tar bytes written.
	Progress func(written int64)
	// Concurrency is the number of compressing goroutines (default: all CPUs).
	Concurrency int
	// Level is the zstd compression level, 1 to 19 (0: DefaultLevel).
	Level int
	// Perm is asked for the archive when it is created (the umask
	// applies); 0 means 0600: evidence holds memory, environments and
	// logs, for the capturing user alone. 0666 leaves it to the umask.
	Perm os.FileMode
	// Now dates the members' tar headers (nil: time.Now). A fixed clock
	// makes the same capture write the same bytes (the golden archive
	// digests of testdata/golden/archive-digests.txt).
	Now func() time.Time
	// Encoder compresses the frames (nil: Klauspost, pure Go). The
	// command line passes cgozstd.Encoder(), libzstd, where it is built in.
	Encoder *Encoder
}

// Writer writes a sealed archive: to a file with no name (O_TMPFILE),
// linked as NAME only once the seek table is written and the file synced,
// so that nothing is left at any name whatever ends the capture (kill -9
// included). Where the file system has no unnamed files, to NAME.partial,
// renamed to NAME once sealed, and locked while written: a partial whose
// lock is free was left by a capture that died, and the next capture to
// that name removes it.
type Writer struct {
	final, partial string
	unnamed        bool
	// streaming: the archive goes to a stream (CreateStream), not a
	// file; cleared once sealed or aborted.
	streaming     bool
	perm          os.FileMode
	f             *os.File
	sum           *hashing.Multi
	sink          *sink
	tw            *tar.Writer
	entries       []manifest.Entry
	cur           *manifest.Entry
	curHash       hash.Hash
	curLeft       int64
	modTime       time.Time
	cancel        context.CancelFunc
	wmErr         chan error
	closed        bool
	level         int
	encoder       string
	compressedOut int64
	mu            sync.Mutex
}

// Create starts an archive at path. Nothing appears at path until Seal.
func Create(path string, opts WriterOptions) (*Writer, error) {
	partial := path + ".partial"
	perm := opts.Perm
	if perm == 0 {
		perm = 0o600
	}
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("%s already exists; amber never overwrites evidence", path)
	}
	// Created with its mode, not chmod'ed later: no moment when another
	// user could open it.
	f, err := tmpfile.OpenUnnamed(filepath.Dir(path), perm)
	if err != nil {
		return nil, fmt.Errorf("creating archive: %w", err)
	}
	unnamed := f != nil
	if !unnamed {
		if f, err = createPartial(partial, perm); err != nil {
			return nil, err
		}
		if _, err := os.Lstat(path); err == nil {
			f.Close()
			os.Remove(partial)
			return nil, fmt.Errorf("%s already exists; amber never overwrites evidence", path)
		}
	}
	return start(&Writer{final: path, partial: partial, unnamed: unnamed, perm: perm, f: f}, f, opts)
}

// CreateStream starts an archive written to out as it is made (a
// registry's upload session): the bytes are only ever appended, none
// read back or rewritten, so out need not be a file. name is the
// archive's file name (Sealed.Path; its directory is TempDir, where index
// spills go). Seal ends the stream and reports its SHA-256 and size,
// hashed as the bytes went out; Abort stops writing (out's owner abandons
// what it received).
func CreateStream(name string, out io.Writer, opts WriterOptions) (*Writer, error) {
	perm := opts.Perm
	if perm == 0 {
		perm = 0o600
	}
	return start(&Writer{final: name, perm: perm, streaming: true}, out, opts)
}

// start sets up the compression of a Writer whose output is out (its file
// f, when it is one).
func start(w *Writer, out io.Writer, opts WriterOptions) (*Writer, error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	w.sum = hashing.NewMulti(opts.MD5, opts.SHA1)
	w.modTime = now().UTC().Truncate(time.Second)
	level := opts.Level
	if level == 0 {
		level = DefaultLevel
	}
	if level < 1 || level > 19 {
		return nil, fmt.Errorf("zstd level %d: use 1 to 19", level)
	}
	w.level = level
	encoder := opts.Encoder
	if encoder == nil {
		encoder = Klauspost()
	}
	w.encoder = encoder.Name
	enc, err := encoder.New(level)
	if err != nil {
		w.abort()
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	fs := &frameSink{w: out, f: w.f, h: w.sum, n: &w.compressedOut}
	fs.cond = sync.NewCond(&fs.mu)
	sw, err := seekable.NewWriter(nil, &dstEncoder{enc}, seekable.WithWriterEnvironment(fs))
	if err != nil {
		w.abort()
		return nil, fmt.Errorf("seekable writer: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	frames := make(chan []byte, 4)
	done := make(chan struct{})
	w.wmErr = make(chan error, 1)
	var wmErr error
	conc := opts.Concurrency
	if conc <= 0 {
		conc = 0
	}
	go func() {
		src := func() ([]byte, error) {
			b, ok := <-frames
			if !ok {
				return nil, nil
			}
			return b, nil
		}
		var mopts []seekable.WriteManyOption
		if conc > 0 {
			mopts = append(mopts, seekable.WithConcurrency(conc))
		}
		err := sw.WriteMany(ctx, src, mopts...)
		if err == nil {
			err = sw.Close()
		}
		wmErr = err
		fs.mu.Lock()
		fs.stopped = true
		fs.cond.Broadcast()
		fs.mu.Unlock()
		close(done)
		// Drain so a producer blocked on a full channel is released.
		for range frames {
		}
		w.wmErr <- err
	}()
	w.sink = &sink{
		fr:        &framer{out: frames, done: done, pending: -1, err: func() error { return wmErr }, sink: fs},
		structure: sha256.New(),
		progress:  opts.Progress,
	}
	w.tw = tar.NewWriter(w.sink)
	return w, nil
}

// TempDir is the directory the archive is written in: where a build of
// its indexes spills what does not fit in memory.
func (w *Writer) TempDir() string { return filepath.Dir(w.final) }

// Pos is the current offset in the tar stream.
func (w *Writer) Pos() int64 { return w.sink.pos }

// Hint says a frame may end at offset off of the current entry's content.
func (w *Writer) Hint(off int64) error {
	if w.cur == nil {
		return nil
	}
	return w.sink.fr.hint(w.cur.Offset + off)
}

// Begin starts a member of exactly size bytes.
func (w *Writer) Begin(name string, size int64) error {
	if w.cur != nil {
		return fmt.Errorf("archive writer: %s still open", w.cur.Name)
	}
	if err := w.sink.fr.hint(w.sink.pos); err != nil {
		return err
	}
	hdrOff := w.sink.pos
	w.sink.content = false
	err := w.tw.WriteHeader(&tar.Header{Name: name, Mode: 0o444, Size: size, ModTime: w.modTime, Typeflag: tar.TypeReg})
	if err != nil {
		return fmt.Errorf("writing header of %s: %w", name, err)
	}
	w.cur = &manifest.Entry{Name: name, HeaderOffset: hdrOff, Offset: w.sink.pos, Size: size}
	w.curHash = sha256.New()
	w.curLeft = size
	return nil
}

// Write writes content of the current member.
func (w *Writer) Write(p []byte) (int, error) {
	if w.cur == nil {
		return 0, errors.New("archive writer: no member open")
	}
	if int64(len(p)) > w.curLeft {
		return 0, fmt.Errorf("archive writer: %s: more than its %d bytes", w.cur.Name, w.cur.Size)
	}
	w.sink.content = true
	n, err := w.tw.Write(p)
	w.sink.content = false
	w.curHash.Write(p[:n])
	w.curLeft -= int64(n)
	return n, err
}

// End closes the current member and returns its record.
func (w *Writer) End() (manifest.Entry, error) {
	if w.cur == nil {
		return manifest.Entry{}, errors.New("archive writer: no member open")
	}
	if w.curLeft != 0 {
		return manifest.Entry{}, fmt.Errorf("archive writer: %s is %d bytes short", w.cur.Name, w.curLeft)
	}
	if err := w.tw.Flush(); err != nil {
		return manifest.Entry{}, fmt.Errorf("padding %s: %w", w.cur.Name, err)
	}
	e := *w.cur
	e.SHA256 = hashing.FromHash(w.curHash)
	w.entries = append(w.entries, e)
	w.cur = nil
	return e, nil
}

// Add writes a whole member from memory.
func (w *Writer) Add(name string, data []byte) (manifest.Entry, error) {
	if err := w.Begin(name, int64(len(data))); err != nil {
		return manifest.Entry{}, err
	}
	if _, err := w.Write(data); err != nil {
		return manifest.Entry{}, err
	}
	return w.End()
}

// Entries are the members written so far.
func (w *Writer) Entries() []manifest.Entry { return append([]manifest.Entry(nil), w.entries...) }

// Has reports whether a member of that name was written.
func (w *Writer) Has(name string) bool {
	for _, e := range w.entries {
		if e.Name == name {
			return true
		}
	}
	return false
}

// Sealed is what Seal reports about the finished archive.
type Sealed struct {
	Path string
	// Perm is what the archive was created with (WriterOptions.Perm):
	// its sidecars are created with the same.
	Perm           os.FileMode
	Size           int64
	SHA256         hashing.Digest
	MD5, SHA1      string
	ManifestSHA256 hashing.Digest
	Trailer        Trailer
}

// FrameDigestsName is the member listing the SHA-256 of each compressed
// frame before it, one hex digest per line, frame 0 first.
const FrameDigestsName = "amber/frames.sha256"

// TrailerHeader is the canonical tar header of the trailer; verify checks
// the archive's bytes against it.
func TrailerHeader(sealed time.Time) *tar.Header {
	return &tar.Header{Name: TrailerName, Mode: 0o444, Size: TrailerSize, ModTime: sealed.UTC().Truncate(time.Second), Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
}

// Seal writes the custody log, the manifest and the trailer, finishes the
// zstd stream, syncs, and renames NAME.partial to NAME.
func (w *Writer) Seal(m *manifest.Manifest, custody *manifest.Chain) (*Sealed, error) {
	if w.closed {
		return nil, errors.New("archive writer: already closed")
	}
	ce, err := w.Add("amber/custody.jsonl", custody.Bytes())
	if err != nil {
		return nil, w.fail(err)
	}
	// Seal every frame so far by the SHA-256 of its compressed bytes: a
	// reader then checks each frame it decodes, and serves a file's bytes
	// without hashing the whole file first.
	fr := w.sink.fr
	if err := fr.emit(len(fr.buf)); err != nil {
		return nil, w.fail(err)
	}
	digests, err := w.sink.fr.sink.waitFrames(fr.emitted)
	if err != nil {
		return nil, w.fail(fmt.Errorf("compressing archive: %w", err))
	}
	var fb bytes.Buffer
	for _, d := range digests {
		fb.WriteString(d.Hex() + "\n")
	}
	if _, err := w.Add(FrameDigestsName, fb.Bytes()); err != nil {
		return nil, w.fail(err)
	}
	m.Custody = manifest.Custody{Entry: ce.Name, Events: custody.Len(), Head: custody.Head()}
	m.Format, m.FormatVersion = manifest.FormatName, writeVersion
	m.Tool.Compression = fmt.Sprintf("%s level %d", w.encoder, w.level)
	m.Entries = w.Entries()
	mb, err := m.Marshal()
	if err != nil {
		return nil, w.fail(err)
	}
	me, err := w.Add("amber/manifest.json", mb)
	if err != nil {
		return nil, w.fail(err)
	}
	t := Trailer{Version: writeVersion, Sealed: m.Acquisition.Finished, ManifestOffset: me.Offset, ManifestSize: me.Size,
		ManifestSHA256: me.SHA256, StructureSHA256: hashing.FromHash(w.sink.structure), TarOffset: w.sink.pos}
	tb, err := t.Marshal()
	if err != nil {
		return nil, w.fail(err)
	}
	if err := w.sink.fr.hint(w.sink.pos); err != nil {
		return nil, w.fail(err)
	}
	if err := w.tw.WriteHeader(TrailerHeader(t.Sealed)); err != nil {
		return nil, w.fail(fmt.Errorf("writing trailer: %w", err))
	}
	if _, err := w.tw.Write(tb); err != nil {
		return nil, w.fail(fmt.Errorf("writing trailer: %w", err))
	}
	if err := w.tw.Close(); err != nil {
		return nil, w.fail(fmt.Errorf("closing tar stream: %w", err))
	}
	if err := fr.emit(len(fr.buf)); err != nil {
		return nil, w.fail(err)
	}
	close(fr.out)
	w.closed = true
	if err := <-w.wmErr; err != nil {
		w.abort()
		return nil, fmt.Errorf("compressing archive: %w", err)
	}
	if w.streaming {
		w.streaming = false
		return w.sealed(me.SHA256, t), nil
	}
	if err := w.f.Sync(); err != nil {
		w.abort()
		return nil, fmt.Errorf("syncing archive: %w", err)
	}
	if w.unnamed {
		// Linked while still open (an unnamed file's only handle).
		err := tmpfile.LinkUnnamed(w.f, w.final)
		if errors.Is(err, os.ErrExist) {
			w.abort()
			return nil, fmt.Errorf("%s appeared during capture; amber never overwrites evidence", w.final)
		}
		if err != nil {
			w.abort()
			return nil, fmt.Errorf("sealing archive: %w", err)
		}
		cerr := w.f.Close()
		w.f = nil
		if cerr != nil {
			os.Remove(w.final)
			return nil, fmt.Errorf("closing archive: %w", cerr)
		}
	} else {
		if err := w.f.Close(); err != nil {
			w.abort()
			return nil, fmt.Errorf("closing archive: %w", err)
		}
		w.f = nil
		if _, err := os.Lstat(w.final); err == nil {
			os.Remove(w.partial)
			return nil, fmt.Errorf("%s appeared during capture; amber never overwrites evidence", w.final)
		}
		if err := os.Rename(w.partial, w.final); err != nil {
			os.Remove(w.partial)
			return nil, fmt.Errorf("sealing archive: %w", err)
		}
	}
	if d, err := os.Open(filepath.Dir(w.final)); err == nil {
		d.Sync()
		d.Close()
	}
	return w.sealed(me.SHA256, t), nil
}

func (w *Writer) sealed(manifestSHA256 hashing.Digest, t Trailer) *Sealed {
	return &Sealed{Path: w.final, Perm: w.perm, Size: w.compressedOut, SHA256: w.sum.SHA256(), MD5: w.sum.MD5Hex(), SHA1: w.sum.SHA1Hex(), ManifestSHA256: manifestSHA256, Trailer: t}
}

func (w *Writer) fail(err error) error {
	w.abort()
	return err
}

// Abort stops writing and removes the partial file. It is safe to call
// after Seal (then it does nothing).
func (w *Writer) Abort() { w.abort() }

func (w *Writer) abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil && !w.streaming {
		return
	}
	w.streaming = false
	if w.cancel != nil {
		w.cancel()
	}
	if !w.closed && w.sink != nil {
		w.closed = true
		close(w.sink.fr.out)
		<-w.wmErr
	}
	if w.f == nil {
		return // a stream: its owner abandons it
	}
	w.f.Close()
	if !w.unnamed {
		if _, err := os.Lstat(w.partial); err == nil {
			os.Remove(w.partial)
		}
	}
	w.f = nil
}

// createPartial creates NAME.partial, locked while it is written. One that
// exists with its lock free was left by a capture that died: it is
// removed (it was never evidence: nothing is sealed until renamed).
func createPartial(partial string, perm os.FileMode) (*os.File, error) {
	for try := 0; ; try++ {
		f, err := os.OpenFile(partial, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if err == nil {
			tmpfile.LockPartial(f)
			return f, nil
		}
		if !os.IsExist(err) || try > 0 {
			if os.IsExist(err) {
				return nil, fmt.Errorf("%s exists: another capture may be writing it; remove it if not: %w", partial, err)
			}
			return nil, fmt.Errorf("creating archive: %w", err)
		}
		old, oerr := os.Open(partial)
		if oerr != nil {
			return nil, fmt.Errorf("%s exists: another capture may be writing it; remove it if not: %w", partial, err)
		}
		stale := tmpfile.LockPartial(old)
		if ost, err := old.Stat(); stale && err == nil {
			// Still the same file (not one a third capture just made).
			if cur, err := os.Lstat(partial); err == nil && os.SameFile(ost, cur) {
				os.Remove(partial)
			}
		}
		old.Close()
		if !stale {
			return nil, fmt.Errorf("%s exists and another capture is writing it: %w", partial, err)
		}
	}
}

// DefaultLevel is the zstd level of capture when none is asked for, one for
// both encoders. With libzstd (what make build ships), level 2 keeps
// capture within 1.5x of `zstd -3 -T0` on bench/run.sh's corpus (1.10x to
// 1.33x on a quiet machine) while the archive stays within 10% of its size
// (1.090x); level 3 is smaller (1.054x) but leaves the time little margin
// (1.27x to 1.41x, and over 2x on a busy machine). The pure-Go encoder
// maps 2 to its fastest level (1.35x, 1.131x) and 3 to its default (1.72x,
// 1.073x): it keeps both targets at neither.
const DefaultLevel = 2
