package archive

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/extsort"
	"github.com/amber-forensics/amber/manifest"
)

// Problem is manifest.Problem: one verification failure.
type Problem = manifest.Problem

// Report is the outcome of Verify.
type Report struct {
	Path      string         `json:"path"`
	Size      int64          `json:"size"`
	SHA256    hashing.Digest `json:"sha256"`
	Frames    int64          `json:"frames"`
	TarSize   int64          `json:"tar_size"`
	Members   int            `json:"members"`
	Layers    int            `json:"layers"`
	Files     int            `json:"files"`
	Artifacts int            `json:"artifacts"`
	// Sealed custody events inside the archive, and events in the sidecar.
	SealedEvents  int                `json:"sealed_events"`
	SidecarEvents int                `json:"sidecar_events"`
	Sidecars      []string           `json:"sidecars_checked"`
	Problems      []manifest.Problem `json:"problems"`
	// Warnings are findings that are no failure (a renamed archive).
	Warnings []manifest.Problem `json:"warnings"`
	// CustodyHead is the SHA-256 of the custody log's last line (of the
	// sealed log when there is no sidecar), and CustodyHeadSeq its seq;
	// zero when the chain does not hold. Noted outside the archive, it is
	// what later shows that the last event was not edited (ExpectHead).
	CustodyHead    hashing.Digest `json:"custody_head,omitzero"`
	CustodyHeadSeq int            `json:"custody_head_seq"`
	// ExpectedHeadSeq is the seq of the line VerifyOptions.ExpectHead
	// names, when it is in the chain.
	ExpectedHeadSeq *int `json:"expected_head_seq,omitempty"`
	// Sealed says the check was VerifyOptions.Sealed's (frames against
	// their sealed digests; none decompressed).
	Sealed bool `json:"sealed_only,omitempty"`
	// Manifest is the archive's manifest when it could be read.
	Manifest *manifest.Manifest `json:"-"`
}

// OK reports whether nothing failed.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// ArchiveOK reports whether every failure is one of the custody log: the
// archive's own hashes hold.
func (r *Report) ArchiveOK() bool {
	for _, p := range r.Problems {
		if !p.Custody {
			return false
		}
	}
	return true
}

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// Ctx, when set, stops the verification once done (Verify then
	// returns its error, never a report).
	Ctx context.Context
	// Progress is called with compressed bytes checked so far.
	Progress func(done, total int64)
	// ExpectHead, when set, is a custody head noted earlier: the chain
	// must still hold a line of that SHA-256.
	ExpectHead hashing.Digest
	// PageIndexes reads every stored index in pages, as a layer of a
	// million files is read (tests; by default only indexes of
	// DefaultPagedIndexMin bytes and more are).
	PageIndexes bool
	// SidecarPath is where the sidecars are looked for (PATH.sha256,
	// PATH.custody.jsonl, ...): Verify's path by default; VerifyReaderAt
	// looks for none unless it is set.
	SidecarPath string
	// Sealed checks what sealing fixed, without decompressing a frame:
	// the seek table, trailer and manifest, every frame's compressed bytes
	// against the sealed frame digests, the stored indexes and Merkle
	// roots, the whole file's SHA-256 and the sidecars. Any byte of a
	// sealed frame changed since sealing is caught and named by frame; the
	// frames after them (frame digests, manifest, trailer) are checked as
	// they decode, and a change there that decodes to the same bytes (a
	// compressed stream has such) only the whole file's SHA-256 against
	// a sidecar, a custody event or a signature catches, in either mode.
	// What it does not re-derive is the capture's own work (each file's
	// hash recomputed from its content, each layer's digest from its
	// tar). amber push's
	// gate; an archive without sealed frame digests gets the full check.
	Sealed bool
}

type verifier struct {
	r   *Report
	f   io.ReaderAt
	a   *Archive // nil when the manifest could not be read
	tab *SeekTable
	// fatal is a fault of this machine (no temp space to rebuild an
	// index) that stops the verification: not a finding about the archive.
	fatal error
	// sealed are the custody events sealed inside the archive, when their
	// chain holds; md5 and sha1 the whole file's, when a sidecar asked.
	sealed    []manifest.Event
	sealedOK  bool
	md5, sha1 string
	opts      VerifyOptions
}

func (v *verifier) add(where, format string, args ...any) {
	v.addProblem(manifest.Problem{Where: where, Detail: fmt.Sprintf(format, args...)})
}

func (v *verifier) addProblem(p manifest.Problem) {
	if len(v.r.Problems) >= 1000 {
		return
	}
	v.r.Problems = append(v.r.Problems, p)
}

// Verify recomputes every digest in the archive at path: each frame's zstd
// and seek-table checksums, the seek table's tiling of the file, every tar
// header and padding, every member's SHA-256, every layer's per-file hashes
// against its index, every Merkle root, the manifest's and the trailer's
// hashes, the sealed custody chain, and the sidecars (.sha256, .md5, .sha1,
// .custody.jsonl) when present. Damage goes into the report; the error is
// for an archive that cannot be read at all.
func Verify(path string, opts VerifyOptions) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening archive: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("opening archive: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", manifest.ErrNotArchive, path)
	}
	if opts.SidecarPath == "" {
		opts.SidecarPath = path
	}
	return verify(f, st.Size(), path, opts)
}

// VerifyReaderAt is Verify of an archive of size bytes read through r (a
// blob in a registry): r is read once, front to back, frame by frame.
// name stands for the archive in the report; sidecars are checked only
// when opts.SidecarPath says where they are.
func VerifyReaderAt(r io.ReaderAt, size int64, name string, opts VerifyOptions) (*Report, error) {
	return verify(r, size, name, opts)
}

func verify(f io.ReaderAt, size int64, path string, opts VerifyOptions) (*Report, error) {
	var err error
	v := &verifier{r: &Report{Path: path, Size: size}, f: f, opts: opts}
	v.tab, err = ReadSeekTable(f, size)
	if err != nil {
		if errors.Is(err, manifest.ErrNotArchive) {
			return nil, err
		}
		v.add("seek table", "%v", err)
		sum, err := hashWhole(f, size)
		if err != nil {
			return nil, err
		}
		v.r.SHA256 = sum
		v.checkSidecars(opts.SidecarPath)
		return v.r, nil
	}
	v.r.Frames = v.tab.NumFrames()
	v.r.TarSize = int64(v.tab.SeekTable.Size())
	if a, err := open(f, size, path); err != nil {
		if errors.Is(err, manifest.ErrUnsupportedVersion) {
			return nil, err
		}
		v.add("trailer and manifest", "%v", err)
	} else {
		v.a = a
		if opts.PageIndexes {
			a.SetPagedIndexMin(0)
		}
		v.r.Manifest = a.Manifest
		v.r.Artifacts = len(a.Manifest.Artifacts)
	}
	if ds := v.sealedDigests(); opts.Sealed && ds != nil {
		v.r.Sealed = true
		v.streamSealed(ds, opts)
	} else {
		v.stream(opts)
	}
	if opts.Ctx != nil && opts.Ctx.Err() != nil {
		return nil, opts.Ctx.Err()
	}
	if v.fatal != nil {
		return nil, v.fatal
	}
	if v.a != nil {
		v.checkModel()
	}
	v.checkSidecars(opts.SidecarPath)
	return v.r, nil
}

func hashWhole(f io.ReaderAt, size int64) (hashing.Digest, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
		return hashing.Digest{}, fmt.Errorf("reading archive: %w", err)
	}
	return hashing.FromHash(h), nil
}

// sealedDigests are the archive's sealed frame digests, nil when it has
// none or they do not hold (a finding the full check makes).
func (v *verifier) sealedDigests() []hashing.Digest {
	if v.a == nil {
		return nil
	}
	ds, err := v.a.sealed()
	if err != nil || len(ds) == 0 {
		return nil
	}
	return ds
}

// streamSealed reads the file once, front to back, hashing it whole and
// each sealed frame's compressed bytes on all cores; the frames after the
// sealed ones (the manifest, the trailer) were read and checked by open.
func (v *verifier) streamSealed(ds []hashing.Digest, opts VerifyOptions) {
	whole := sha256.New()
	type job struct {
		fr  Frame
		src []byte
	}
	jobs := make(chan job, runtime.GOMAXPROCS(0))
	var mu sync.Mutex
	var bad []Frame
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for j := range jobs {
				if hashing.Sum(j.src) != ds[j.fr.ID] {
					mu.Lock()
					bad = append(bad, j.fr)
					mu.Unlock()
				}
			}
		})
	}
	n := v.tab.NumFrames()
	var done int64
	for i := int64(0); i < n; i++ {
		if opts.Ctx != nil && opts.Ctx.Err() != nil {
			break
		}
		fr, _ := v.tab.EntryByID(i)
		src := make([]byte, fr.CompressedSize)
		if _, err := v.f.ReadAt(src, int64(fr.CompressedOffset)); err != nil {
			v.add(fmt.Sprintf("frame %d", fr.ID), "reading: %v%s", err, v.describe(int64(fr.DecompressedOffset), int64(fr.DecompressedOffset)+int64(fr.DecompressedSize)))
			continue
		}
		whole.Write(src)
		if i < int64(len(ds)) {
			jobs <- job{fr, src}
		}
		done += int64(fr.CompressedSize)
		if opts.Progress != nil {
			opts.Progress(done, v.r.Size)
		}
	}
	close(jobs)
	wg.Wait()
	slices.SortFunc(bad, func(a, b Frame) int { return cmp.Compare(a.ID, b.ID) })
	for _, fr := range bad {
		err := &FrameError{fr, fmt.Errorf("its compressed bytes do not match the sealed frame digest (%s)", FrameDigestsName)}
		v.add(err.Where(), "%s%s", err.Err.Error(), v.describe(int64(fr.DecompressedOffset), int64(fr.DecompressedOffset)+int64(fr.DecompressedSize)))
	}
	tab := make([]byte, v.tab.Size)
	if _, err := v.f.ReadAt(tab, v.tab.Offset); err == nil {
		whole.Write(tab)
	}
	v.r.SHA256 = hashing.FromHash(whole)
}

type frameResult struct {
	fr  Frame
	b   []byte
	err error
}

// stream reads the file once, front to back: it hashes it whole, decodes
// frames on all cores, and feeds the tar stream, in order, to the member
// checker.
func (v *verifier) stream(opts VerifyOptions) {
	whole := sha256.New()
	n := v.tab.NumFrames()
	jobs := make(chan func(), runtime.GOMAXPROCS(0))
	order := make(chan chan frameResult, 2*runtime.GOMAXPROCS(0)+2)
	for range runtime.GOMAXPROCS(0) {
		go func() {
			for j := range jobs {
				j()
			}
		}()
	}
	go func() {
		defer close(order)
		defer close(jobs)
		var done int64
		for i := int64(0); i < n; i++ {
			if opts.Ctx != nil && opts.Ctx.Err() != nil {
				return
			}
			fr, _ := v.tab.EntryByID(i)
			src := make([]byte, fr.CompressedSize)
			_, err := v.f.ReadAt(src, int64(fr.CompressedOffset))
			whole.Write(src)
			ch := make(chan frameResult, 1)
			order <- ch
			if err != nil {
				ch <- frameResult{fr: fr, err: &FrameError{fr, fmt.Errorf("reading: %w", err)}}
				continue
			}
			var sealed *hashing.Digest
			if v.a != nil {
				if ds, err := v.a.sealed(); err == nil && i < int64(len(ds)) {
					sealed = &ds[i]
				}
			}
			jobs <- func() {
				b, err := decodeFrameBytes(src, fr, nil)
				if err == nil && sealed != nil && hashing.Sum(src) != *sealed {
					err = &FrameError{fr, fmt.Errorf("its compressed bytes do not match the sealed frame digest (%s)", FrameDigestsName)}
					b = nil
				}
				ch <- frameResult{fr, b, err}
			}
			done += int64(fr.CompressedSize)
			if opts.Progress != nil {
				opts.Progress(done, v.r.Size)
			}
		}
		tab := make([]byte, v.tab.Size)
		if _, err := v.f.ReadAt(tab, v.tab.Offset); err == nil {
			whole.Write(tab)
		}
	}()
	pr, pw := io.Pipe()
	checked := make(chan struct{})
	go func() {
		v.checkTar(pr)
		io.Copy(io.Discard, pr)
		close(checked)
	}()
	for ch := range order {
		res := <-ch
		b := res.b
		if res.err != nil {
			where, detail := fmt.Sprintf("frame %d", res.fr.ID), res.err.Error()
			var fe *FrameError
			if errors.As(res.err, &fe) {
				where, detail = fe.Where(), fe.Err.Error()
			}
			v.add(where, "%s%s", detail, v.describe(int64(res.fr.DecompressedOffset), int64(res.fr.DecompressedOffset)+int64(res.fr.DecompressedSize)))
			// Keep offsets aligned so later members are still checked.
			b = make([]byte, res.fr.DecompressedSize)
		}
		pw.Write(b)
	}
	pw.Close()
	<-checked
	v.r.SHA256 = hashing.FromHash(whole)
}

type posReader struct {
	r   io.Reader
	pos int64
}

func (p *posReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.pos += int64(n)
	return n, err
}

// checkTar walks the tar stream against the manifest's member list.
func (v *verifier) checkTar(r io.Reader) {
	if v.a == nil {
		return
	}
	pr := &posReader{r: r}
	structure := sha256.New()
	members := append([]manifest.Entry(nil), v.a.Manifest.Entries...)
	t := v.a.Trailer
	members = append(members, manifest.Entry{Name: "amber/manifest.json", Offset: t.ManifestOffset, Size: t.ManifestSize, SHA256: t.ManifestSHA256, HeaderOffset: -1})
	var modTime int64
	for i, e := range members {
		where := "tar member " + e.Name
		hdrOff := pr.pos
		if e.HeaderOffset >= 0 && e.HeaderOffset != hdrOff {
			v.add(where, "manifest places its header at tar offset %d, the stream has it at %d", e.HeaderOffset, hdrOff)
			return
		}
		if e.Offset < hdrOff+512 || e.Offset-hdrOff > 64<<10 {
			v.add(where, "manifest places its content at an impossible offset %d", e.Offset)
			return
		}
		hb := make([]byte, e.Offset-hdrOff)
		if _, err := io.ReadFull(pr, hb); err != nil {
			v.add(where, "tar stream ends inside its header: %v", err)
			return
		}
		structure.Write(hb)
		h, err := tar.NewReader(bytes.NewReader(hb)).Next()
		if err != nil {
			v.add(where, "tar header at tar bytes %d-%d is damaged: %v", hdrOff, e.Offset-1, err)
		} else {
			if i == 0 {
				modTime = h.ModTime.Unix()
			}
			want, err := canonicalHeader(e.Name, e.Size, h.ModTime.Unix())
			if err != nil || !bytes.Equal(want, hb) || h.ModTime.Unix() != modTime {
				v.add(where, "tar header at tar bytes %d-%d differs from what amber wrote (name %q, size %d)", hdrOff, e.Offset-1, h.Name, h.Size)
			}
		}
		v.checkContent(pr, e)
		pad := (512 - e.Size%512) % 512
		pb := make([]byte, pad)
		if _, err := io.ReadFull(pr, pb); err != nil {
			v.add(where, "tar stream ends inside its padding: %v", err)
			return
		}
		structure.Write(pb)
		if !allZero(pb) {
			v.add(where, "padding after its content (tar bytes %d-%d) is not zero", e.Offset+e.Size, e.Offset+e.Size+pad-1)
		}
		v.r.Members++
	}
	if got := hashing.FromHash(structure); got != t.StructureSHA256 {
		v.add("tar structure", "headers and padding hash to %s, the trailer says %s", got.Hex(), t.StructureSHA256.Hex())
	}
	if pr.pos != t.TarOffset {
		v.add(TrailerName, "trailer is at tar offset %d, expected %d", t.TarOffset, pr.pos)
		return
	}
	rest, err := io.ReadAll(io.LimitReader(pr, trailerTail+1))
	if err != nil || int64(len(rest)) != trailerTail {
		v.add(TrailerName, "the tar stream does not end with exactly the trailer and two zero blocks (%d bytes follow the manifest)", len(rest))
		return
	}
	wantHdr, err1 := encodeHeader(TrailerHeader(t.Sealed))
	wantTr, err2 := t.Marshal()
	if err1 != nil || err2 != nil || !bytes.Equal(rest[:512], wantHdr) {
		v.add(TrailerName, "tar header of the trailer (tar bytes %d-%d) is not canonical", t.TarOffset, t.TarOffset+511)
	}
	if !bytes.Equal(rest[512:512+TrailerSize], wantTr) {
		v.add(TrailerName, "trailer text (tar bytes %d-%d) is not canonical", t.TarOffset+512, t.TarOffset+512+TrailerSize-1)
	}
	if !allZero(rest[512+TrailerSize:]) {
		v.add("end of tar stream", "the two end-of-archive blocks (tar bytes %d-%d) are not zero", t.TarOffset+512+TrailerSize, v.r.TarSize-1)
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func encodeHeader(h *tar.Header) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(h); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func canonicalHeader(name string, size, mtime int64) ([]byte, error) {
	return encodeHeader(&tar.Header{Name: name, Mode: 0o444, Size: size, ModTime: time.Unix(mtime, 0), Typeflag: tar.TypeReg})
}

// checkContent hashes one member's content; a layer is also re-indexed and
// compared with its stored index, file by file.
func (v *verifier) checkContent(pr *posReader, e manifest.Entry) {
	where := "tar member " + e.Name + v.what(e.Name)
	h := sha256.New()
	lr := io.LimitReader(pr, e.Size)
	var layer *manifest.Layer
	if d, err := hashing.Parse(strings.TrimPrefix(e.Name, "blobs/sha256/")); err == nil && strings.HasPrefix(e.Name, "blobs/sha256/") {
		if got, ok := v.a.Layer(d); ok {
			layer = got
		}
	}
	var n int64
	var err error
	if layer != nil {
		// Memory for the rebuilt index is bounded by what the stored one
		// holds (an archive captured with a raised --max-index-mib
		// verifies), not by what a hostile layer would need.
		b := &fileindex.IndexBuilder{}
		defer b.Close()
		if ie, ok := v.a.Blob(manifest.IndexName(layer.Digest)); ok {
			b.MaxStrings = max(fileindex.DefaultMaxIndexStrings, 2*ie.Size+1<<20)
		}
		n, err = fileindex.ScanLayerWith(fileindex.SourceReader(io.TeeReader(lr, h)), b, nil, fileindex.ScanOptions{Ctx: v.opts.Ctx})
		if v.local(where, err) {
			return
		}
		if errors.Is(err, fileindex.ErrIndexTooBig) {
			v.add(where, "the layer does not match its index: %v", err)
			_, err = io.Copy(h, lr)
			n = e.Size - lr.(*io.LimitedReader).N
		} else if err == nil && n == e.Size {
			v.compareIndex(layer, b, where)
		}
	} else {
		n, err = io.Copy(h, lr)
	}
	if err != nil || n != e.Size {
		v.add(where, "tar stream ends inside its content (%d of %d bytes): %v", n, e.Size, err)
		return
	}
	if got := hashing.FromHash(h); got != e.SHA256 {
		v.add(where, "content (tar bytes %d-%d) has SHA-256 %s, the manifest says %s", e.Offset, e.Offset+e.Size-1, got.Hex(), e.SHA256.Hex())
	}
	if strings.HasPrefix(e.Name, "blobs/sha256/") && e.SHA256.Hex() != strings.TrimPrefix(e.Name, "blobs/sha256/") {
		v.add(where, "blob's name does not match its recorded digest %s", e.SHA256)
	}
}

// local reports whether err is this machine's fault (no temp space to
// rebuild an index), which stops the verification.
func (v *verifier) local(where string, err error) bool {
	if !errors.Is(err, fileindex.ErrTempSpace) && !errors.Is(err, extsort.ErrCorrupt) {
		return false
	}
	if v.fatal == nil {
		v.fatal = fmt.Errorf("re-indexing %s: %w (TMPDIR sets where)", where, err)
	}
	return true
}

func (v *verifier) compareIndex(l *manifest.Layer, b *fileindex.IndexBuilder, where string) {
	v.r.Layers++
	// Only the digest at first: a layer of a million files has an index
	// of ~200 MB, encoded again only if it does not match.
	built, err := b.Resolve(l.Size)
	var digest hashing.Digest
	if err == nil {
		defer built.Close()
		digest, err = built.Digest()
	}
	if v.local(where, err) {
		return
	}
	if err != nil {
		v.add(where, "re-indexing failed: %v", err)
		return
	}
	stored, err := v.a.Index(l.Digest)
	if err != nil {
		v.add("file index of layer "+l.Digest.String(), "%v", err)
		return
	}
	v.r.Files += l.Files
	// The stored index's bytes have the manifest's digest (checked when
	// it was read whole, or frame by frame and by the stream check when it
	// is read in pages): the same digest means the same bytes.
	if digest == l.Index.Digest {
		return
	}
	rebuilt, err := built.Bytes()
	if err != nil {
		v.add(where, "re-indexing failed: %v", err)
		return
	}
	ri, err := fileindex.ParseIndex(rebuilt)
	if err != nil {
		v.add(where, "re-indexing failed: %v", err)
		return
	}
	if ri.Len() != stored.Len() {
		v.add(where, "layer holds %d index records, its stored index %d", ri.Len(), stored.Len())
		return
	}
	reported := 0
	for i := uint32(0); i < ri.Len() && reported < 20; i++ {
		a, errA := ri.Record(i)
		s, errS := stored.Record(i)
		if errA != nil || errS != nil {
			v.add(where, "index record %d unreadable", i)
			reported++
			continue
		}
		var what []string
		if a.Path != s.Path {
			what = append(what, fmt.Sprintf("path %q vs %q", a.Path, s.Path))
		}
		if a.SHA256 != s.SHA256 {
			what = append(what, fmt.Sprintf("content SHA-256 %s, index says %s", a.SHA256.Hex(), s.SHA256.Hex()))
		}
		if string(a.LeafData()) != string(s.LeafData()) && a.SHA256 == s.SHA256 && a.Path == s.Path {
			what = append(what, "metadata differs from the index")
		}
		sr, errS := stored.RecordBytes(i)
		rr, errR := ri.RecordBytes(i)
		if len(what) == 0 && (errS != nil || errR != nil || !bytes.Equal(sr, rr)) {
			what = append(what, "index record differs")
		}
		if len(what) > 0 {
			v.add(fmt.Sprintf("file /%s in %s", s.Path, strings.TrimPrefix(where, "tar member ")), "%s", strings.Join(what, "; "))
			reported++
		}
	}
	if reported == 0 {
		v.add(where, "its re-built file index differs from the stored one")
	}
}
