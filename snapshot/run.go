package snapshot

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/source"
)

// Request is one capture of image sources into one archive.
type Request struct {
	Sources     []string
	Output      string
	Case        manifest.Case
	CommandLine []string
	Tool        manifest.Tool
	MD5, SHA1   bool
	// HashSources also records the SHA-256 of each source tarball as a
	// whole (one more read of it, alongside the capture).
	HashSources bool
	// Level is the zstd level of the archive's frames (0: the default).
	Level int
	Options
	// WriteProgress receives the tar bytes written so far.
	WriteProgress func(int64)
	// Now dates the acquisition, its custody events (sealed and in the
	// sidecar) and the archive's tar headers (nil: time.Now).
	Now func() time.Time
	// OpenRef opens a source that is no file (a registry's image:
	// snapshot/registry's, which snapshot does not import); it returns
	// nil, nil for a path, which is opened as a file. Such a source is
	// recorded by its Path (the reference and the digest it resolved to).
	OpenRef func(ctx context.Context, ref string) (*source.Source, error)
	// Host is who captures where (nil: this host and user, HostInfo).
	// With Now fixed too, the same sources give the same archive byte for
	// byte: the golden digests of testdata/golden/archive-digests.txt.
	Host *Host
}

// Host is the machine and account a capture runs on, as the acquisition
// record and its custody events name them.
type Host struct {
	Name, OS, Kernel, User string
	UID                    int
	// Dir is the working directory a relative source path is recorded
	// against ("": the process's): the manifest names sources by
	// absolute path.
	Dir string
}

func (h *Host) fill(a *manifest.Acquisition) {
	if h == nil {
		manifest.HostInfo(a)
		return
	}
	a.Host, a.OS, a.Kernel, a.User, a.UID = h.Name, h.OS, h.Kernel, h.User, h.UID
}

func (h *Host) absPath(p string) string {
	if h == nil || h.Dir == "" || filepath.IsAbs(p) {
		return absPath(p)
	}
	return filepath.Join(h.Dir, p)
}

// Result describes a sealed capture.
type Result struct {
	Sealed   *archive.Sealed
	Manifest *manifest.Manifest
	Sidecars []string
}

// Actor names who acts: the examiner if given, else the OS user.
func Actor(c manifest.Case, a manifest.Acquisition) string {
	if c.Examiner != "" {
		return c.Examiner
	}
	return a.User
}

// CaptureImageFiles captures docker-save tarballs and OCI layouts (and
// the sources req.OpenRef opens: a registry's images) into a sealed
// archive with its sidecars. On any error, and on cancellation,
// nothing is left at the output name.
func CaptureImageFiles(ctx context.Context, req Request) (*Result, error) {
	s := newSession(req.Tool, req.Case, req.CommandLine, req.Now, req.Host)
	acq := &s.m.Acquisition
	var srcs []*source.Source
	defer func() {
		for _, s := range srcs {
			s.Close()
		}
	}()
	remote := make([]bool, len(req.Sources))
	for i, p := range req.Sources {
		var src *source.Source
		var err error
		if req.OpenRef != nil {
			src, err = req.OpenRef(ctx, p)
			if err != nil {
				return nil, err
			}
		}
		if src != nil {
			srcs = append(srcs, src)
			remote[i] = true
			acq.Sources = append(acq.Sources, manifest.Source{Kind: src.Kind, Path: src.Path})
			continue
		}
		src, err = source.Open(p)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, src)
		rec := manifest.Source{Kind: src.Kind, Path: req.Host.absPath(p)}
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			rec.Size = st.Size()
		}
		acq.Sources = append(acq.Sources, rec)
	}
	waitSums := hashSources(ctx, req, acq.Sources, remote)
	if err := s.begin(req.CommandLine, nil, archive.WriterOptions{MD5: req.MD5, SHA1: req.SHA1, Progress: req.WriteProgress, Level: req.Level, Perm: req.Perm, Encoder: req.Encoder}, req.Output, req.Stream); err != nil {
		return nil, err
	}
	defer s.abort()
	layers := newLayerSet()
	for _, src := range srcs {
		c, err := layers.capture(ctx, src, s.w, req.Options)
		if err != nil {
			return nil, fmt.Errorf("capturing %s: %w", src.Path, err)
		}
		err = s.add(c, func(a *manifest.Artifact) error {
			if _, dup := s.m.Artifact(a.Kind, a.Name); dup {
				return fmt.Errorf("two sources hold an image named %s; capture them into separate archives", a.Name)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return s.seal(ctx, func() error {
		if err := waitSums(); err != nil {
			return err
		}
		for i, src := range acq.Sources {
			if !src.SHA256.IsZero() {
				if err := s.ev("source-hashed", map[string]string{"source": src.Path, "index": fmt.Sprint(i), "sha256": src.SHA256.String(), "size": fmt.Sprint(src.Size)}); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// hashSources starts hashing each source tarball as a whole when asked
// (req.HashSources), alongside the capture; the function it returns
// waits for the hashes and records them in recs.
func hashSources(ctx context.Context, req Request, recs []manifest.Source, remote []bool) func() error {
	type srcSum struct {
		d   hashing.Digest
		err error
	}
	sums := make([]chan srcSum, len(req.Sources))
	for i, p := range req.Sources {
		sums[i] = make(chan srcSum, 1)
		if !req.HashSources || remote[i] || recs[i].Size == 0 && recs[i].Kind == source.KindOCILayout {
			sums[i] <- srcSum{}
			continue
		}
		go func() {
			d, _, err := hashFile(ctx, p)
			sums[i] <- srcSum{d, err}
		}()
	}
	return func() error {
		for i := range sums {
			s := <-sums[i]
			if s.err != nil {
				return fmt.Errorf("hashing source %s: %w", req.Sources[i], s.err)
			}
			recs[i].SHA256 = s.d
		}
		return nil
	}
}

// writeSidecars writes NAME.sha256 (and .md5, .sha1 when computed) in
// sha256sum format, and starts NAME.custody.jsonl with the "sealed" event
// dated by now, each created with the archive's permissions (s.Perm).
func writeSidecars(s *archive.Sealed, actor, host string, c manifest.Custody, now func() time.Time) ([]string, error) {
	base := filepath.Base(s.Path)
	perm := s.Perm
	if perm == 0 {
		perm = 0o600
	}
	var out []string
	for _, f := range []struct{ ext, sum string }{{".sha256", s.SHA256.Hex()}, {".md5", s.MD5}, {".sha1", s.SHA1}} {
		if f.sum == "" {
			continue
		}
		p := s.Path + f.ext
		if err := writeFileAtomic(p, []byte(f.sum+"  "+base+"\n"), perm); err != nil {
			return out, err
		}
		out = append(out, p)
	}
	cp := s.Path + ".custody.jsonl"
	// A new archive's log is new too: a file already there (another
	// archive's, or planted with another owner or mode) is not chained to.
	cf, err := os.OpenFile(cp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return out, fmt.Errorf("starting the custody log: %w", err)
	}
	cf.Close()
	details := map[string]string{"archive": base, "sha256": s.SHA256.Hex(), "size": fmt.Sprint(s.Size), "manifest_sha256": s.ManifestSHA256.Hex()}
	if s.MD5 != "" {
		details["md5"] = s.MD5
	}
	if s.SHA1 != "" {
		details["sha1"] = s.SHA1
	}
	if _, _, err := manifest.AppendCustodyAt(cp, c.Head, c.Events, manifest.Event{Actor: actor, Host: host, Action: "sealed", Details: details}, now); err != nil {
		return out, err
	}
	return append(out, cp), nil
}

// writeFileAtomic writes p through p.partial, created new with perm: a
// stale or planted p.partial is removed, never written through (it would
// keep its owner and mode).
func writeFileAtomic(p string, b []byte, perm os.FileMode) error {
	tmp := p + ".partial"
	os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", p, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", p, err)
	}
	return nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func hashFile(ctx context.Context, p string) (hashing.Digest, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return hashing.Digest{}, 0, err
	}
	defer f.Close()
	h := hashing.NewMulti(false, false)
	if _, err := io.CopyBuffer(h, engine.ContextReader(ctx, f), make([]byte, 1<<20)); err != nil {
		return hashing.Digest{}, 0, err
	}
	return h.SHA256(), h.Size(), nil
}

// ShellJoin renders argv so that a shell would split it back the same way.
func ShellJoin(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r))
		}) < 0 {
			b.WriteString(a)
			continue
		}
		b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	return b.String()
}
