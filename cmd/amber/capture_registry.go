package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/amber-forensics/amber/attest"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot"
	"github.com/amber-forensics/amber/snapshot/registry"
)

// toRegistryHelp is the capture commands' word on -o docker://.
const toRegistryHelp = `
-o docker://REGISTRY/REPO:TAG captures straight into a registry: the archive
streams into a chunked blob upload while it is written (no copy on local
disk; index spills and the small sidecars go to a staging directory under
TMPDIR, removed at the end), as REPO's last element-TAG.tar.zst. Once
sealed, the sidecars and the manifest are pushed as amber push would, the
manifest last: a capture that fails or is interrupted tags nothing and its
upload session is abandoned (a capture interrupted after the archive's
blob is committed leaves that blob in the registry, untagged, until its
garbage collection). A tag that names something already is never moved:
the capture is refused before it starts (exit 12) unless --force.
--keep-local DIR also keeps the archive and its sidecars in DIR under
that name (written as it streams, to NAME.partial, named once the
registry holds the tag). The custody log records the push with the
manifest's digest, in a second version of the manifest (as push --custody).
A registry that refuses chunks gets the archive spooled to a temp file
and uploaded whole (said on stderr). Credentials from the Docker config;
--insecure for plain HTTP or an unverified certificate.`

// captureTo runs capture with its archive written to o.output: a file,
// or, for -o docker://REG/REPO:TAG, straight into the registry. There the
// archive is streamed into a blob upload session while it is written (no
// local copy: the staging directory, removed at the end, holds only
// index spills and the small sidecars); once sealed the blob is
// committed under its SHA-256, the sidecars are uploaded and the manifest
// put last, so a capture that fails or is interrupted tags nothing and
// its upload session is abandoned. output and opts are the request's.
func (e *env) captureTo(o *captureOptions, output *string, opts *snapshot.Options, capture func() (*snapshot.Result, error)) (err error) {
	// The key is read before the capture: a bad one stops it at once.
	key, err := o.sign.load("sign-key", "sign-cert")
	if err != nil {
		return err
	}
	if !registry.IsRef(o.output) {
		if o.keepLocal != "" {
			return usageError{fmt.Errorf("--keep-local is for a capture to a registry (-o docker://REGISTRY/REPO:TAG)")}
		}
		if o.force {
			return usageError{fmt.Errorf("--force is for a capture to a registry (-o docker://REGISTRY/REPO:TAG); amber never overwrites an archive file")}
		}
		res, err := capture()
		if err != nil {
			return err
		}
		if err := e.attestCapture(o, key, res); err != nil {
			return err
		}
		return e.printCapture(o, res)
	}
	ropts := registryOptions(o.insecure)
	ropts.Transport = o.transport
	tag, err := registry.ParseTag(o.output, ropts)
	if err != nil {
		return usageError{err}
	}
	// An interruption names what it left: the registry reference has no
	// file to speak of, and the archive blob, once committed, stays in the
	// registry untagged (until its garbage collection).
	where := registry.Prefix + tag.Name()
	var committed, tagged bool
	var sum hashing.Digest
	defer func() {
		left := "nothing was tagged at " + where + "; the upload session was abandoned"
		if committed {
			left = "nothing was tagged at " + where + "; the archive's blob, uploaded, stays in the registry, untagged, until its garbage collection"
			if d, ok := e.landedAnyway(err, func(ctx context.Context) (*registry.Tagged, error) { return registry.Existing(ctx, tag, ropts) }, sum); ok {
				left = where + " was tagged (manifest " + d + ") as the interruption came, without the custody log that records the push"
			}
		}
		if tagged {
			left = where + " is tagged, but not with the custody log that records the push"
		}
		if o.keepLocal != "" && !tagged {
			left += "; nothing was kept in " + o.keepLocal
		}
		err = interruptedAt(e, err, left)
	}()
	// A tag is moved only when asked: checked before the capture starts
	// (no capture wasted), and again before the manifest.
	noOverwrite := func() error {
		if o.force {
			return nil
		}
		return registry.NoOverwrite(e.ctx, tag, ropts, hashing.Digest{}, false)
	}
	if err := noOverwrite(); err != nil {
		return err
	}
	staging, err := os.MkdirTemp("", "amber-capture-")
	if err != nil {
		return fmt.Errorf("staging directory: %w", err)
	}
	defer os.RemoveAll(staging)
	*output = filepath.Join(staging, ArtifactFileName(tag.Context().RepositoryStr(), tag.TagStr()))
	up, err := registry.StartUpload(e.ctx, tag, ropts, staging, func(msg string) {
		fmt.Fprintf(e.stderr, "amber: %s\n", escapeName(msg))
	})
	if err != nil {
		return err
	}
	defer up.Abort() // after Commit, nothing
	opts.Stream = up
	var keep *keptCopy
	if o.keepLocal != "" {
		if keep, err = newKeptCopy(o.keepLocal, filepath.Base(*output), opts.Perm); err != nil {
			return err
		}
		defer keep.discard() // after keep, nothing
		opts.Stream = io.MultiWriter(up, keep.f)
	}
	res, err := capture()
	if err != nil {
		return err
	}
	sum = res.Sealed.SHA256
	if err := up.Commit(res.Sealed.SHA256); err != nil {
		return fmt.Errorf("sealing %s: %w; nothing was tagged", o.output, err)
	}
	committed = true
	// Signed in the staging directory, before the manifest is pushed:
	// the signature and token go up as sidecars with the rest.
	if err := e.attestCapture(o, key, res); err != nil {
		return fmt.Errorf("nothing was tagged at %s; the archive's blob (sha256 %s), uploaded, stays in the registry, untagged, until its garbage collection: %w", o.output, res.Sealed.SHA256.Hex(), err)
	}
	p, err := e.pushCaptured(tag, ropts, res, noOverwrite)
	if p != nil {
		tagged = true
	}
	if err != nil {
		if tagged {
			return fmt.Errorf("sealing %s: %w", o.output, err)
		}
		return fmt.Errorf("sealing %s: %w; nothing was tagged", o.output, err)
	}
	var kept []string
	if keep != nil {
		if kept, err = keep.keep(res.Sidecars); err != nil {
			return fmt.Errorf("%s is tagged %s, but the local copy was not kept: %w", o.output, p.Digest, err)
		}
	}
	if err := e.printPushedCapture(o, res, p); err != nil {
		return err
	}
	for _, k := range kept {
		fmt.Fprintf(e.stderr, "kept %s\n", escapeName(k))
	}
	return nil
}

// landedAnyway says, for a push interrupted (err) while its manifest was
// on its way, whether the tag names the archive sum after all: the
// registry took the manifest as the interruption came. It asks again
// with a context of its own (the command's is cancelled), briefly.
func (e *env) landedAnyway(err error, existing func(context.Context) (*registry.Tagged, error), sum hashing.Digest) (string, bool) {
	if err == nil || sum.IsZero() || (!errors.Is(err, context.Canceled) && e.ctx.Err() == nil) {
		return "", false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t, terr := existing(ctx)
	if terr != nil || t == nil || t.Archive.Hex != sum.Hex() {
		return "", false
	}
	return t.Digest.String(), true
}

// keptCopy is the local copy --keep-local asks for: the archive written
// to DIR/NAME.partial as it streams, renamed to NAME with its sidecars
// once the registry holds the tag; removed on any failure.
type keptCopy struct {
	f       *os.File
	final   string
	partial string
	perm    os.FileMode
	done    bool
}

func newKeptCopy(dir, name string, perm os.FileMode) (*keptCopy, error) {
	if perm == 0 {
		perm = 0o600
	}
	k := &keptCopy{final: filepath.Join(dir, name), partial: filepath.Join(dir, name+".partial"), perm: perm}
	for _, p := range []string{k.final, k.final + ".sha256", k.final + ".custody.jsonl"} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("--keep-local: %s already exists; amber never overwrites evidence", p)
		}
	}
	f, err := os.OpenFile(k.partial, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return nil, fmt.Errorf("--keep-local: %w", err)
	}
	k.f = f
	return k, nil
}

// keep syncs the archive, names it and copies the sidecars beside it.
func (k *keptCopy) keep(sidecars []string) ([]string, error) {
	if err := k.f.Sync(); err != nil {
		return nil, err
	}
	if err := k.f.Close(); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(k.final); err == nil {
		return nil, fmt.Errorf("%s appeared during the capture; amber never overwrites evidence", k.final)
	}
	if err := os.Rename(k.partial, k.final); err != nil {
		return nil, err
	}
	k.done = true
	out := []string{k.final}
	for _, s := range sidecars {
		b, err := os.ReadFile(s)
		if err != nil {
			return out, err
		}
		p := filepath.Join(filepath.Dir(k.final), filepath.Base(s))
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, k.perm)
		if err != nil {
			return out, err
		}
		_, err = f.Write(b)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return out, err
		}
		out = append(out, p)
	}
	return out, nil
}

func (k *keptCopy) discard() {
	if k.done {
		return
	}
	k.f.Close()
	os.Remove(k.partial)
}

// ArtifactFileName is the archive's file name in a capture to
// REPO:TAG (recorded in the archive, the config and the title): the last
// path element of the repository and the tag, e.g. node7-web.tar.zst.
func ArtifactFileName(repo, tag string) string {
	return repo[strings.LastIndex(repo, "/")+1:] + "-" + tag + ".tar.zst"
}

// pushCaptured tags the sealed capture: its sidecars and the manifest
// (the archive blob, committed, is HEAD-checked, not uploaded again);
// then the "pushed" event, with that manifest's digest, goes into the
// custody log, and a second version of the manifest carries that log (as
// amber push --custody would). The tag's final digest is the second's.
// ready is asked before the first manifest is put (the tag still free?).
// When the first is tagged and the second fails, it returns the first
// with the error.
func (e *env) pushCaptured(tag interface{ String() string }, ropts registry.Options, res *snapshot.Result, ready func() error) (*registry.Pushed, error) {
	t, err := registry.ParseTag(registry.Prefix+tag.String(), ropts)
	if err != nil {
		return nil, err
	}
	s := res.Sealed
	req := pushRequest(s.Path, res.Manifest, s.SHA256, s.Size)
	req.ArchivePresent = true
	req.Ready = ready
	p, err := registry.Push(e.ctx, t, req, ropts)
	if err != nil {
		return nil, err
	}
	_, _, err = manifest.NewRecorder().Record(s.Path, res.Manifest, "pushed", map[string]string{
		"registry": p.Registry, "repository": p.Repository, "tag": p.Tag, "manifest": p.Digest.String(),
		"sha256": s.SHA256.Hex(), "what": "captured to the registry", "tool": "amber " + version,
	})
	if err != nil {
		fmt.Fprintf(e.stderr, "amber: warning: pushed %s, but could not record it in the custody log: %s\n", p.Digest, escapeName(err.Error()))
		return p, nil
	}
	req = pushRequest(s.Path, res.Manifest, s.SHA256, s.Size)
	req.ArchivePresent = true
	req.Annotations[registry.AnnotationCreated] = time.Now().UTC().Format(time.RFC3339)
	p2, err := registry.Push(e.ctx, t, req, ropts)
	if err != nil {
		return p, fmt.Errorf("the capture is tagged %s, but its custody log with the pushed event is not: %w", p.Digest, err)
	}
	return p2, nil
}

// printPushedCapture tells what a capture to a registry sealed and where.
func (e *env) printPushedCapture(o *captureOptions, res *snapshot.Result, p *registry.Pushed) error {
	where := registry.Prefix + p.Registry + "/" + p.Repository + ":" + p.Tag
	sides := []string{}
	for _, s := range res.Sidecars {
		sides = append(sides, filepath.Base(s))
	}
	if o.json {
		res.Sealed.Path = where
		res.Sidecars = sides
		return e.printCaptureWith(o, res, map[string]any{"registry": p})
	}
	res.Sealed.Path = where
	res.Sidecars = nil
	if err := e.printCapture(o, res); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "pushed manifest %s (sidecars %s)\n", p.Digest, escapeName(strings.Join(sides, ", ")))
	return nil
}

// attestCapture signs and timestamps a sealed capture as its flags ask,
// adding the files written to its sidecars. A failure leaves the archive
// sealed, and says so.
func (e *env) attestCapture(o *captureOptions, key *attest.Key, res *snapshot.Result) error {
	if !o.sign.wanted() {
		return nil
	}
	s := res.Sealed
	out, err := e.attestArchive(s.Path, res.Manifest, s.SHA256, s.ManifestSHA256, key, o.sign.tsa, s.Perm, e.stderr)
	if out != nil {
		res.Sidecars = append(res.Sidecars, out.Files...)
	}
	if err != nil && registry.IsRef(o.output) {
		return err // the caller says what became of the upload
	}
	if err != nil {
		return fmt.Errorf("%s is sealed (sha256 %s), but: %w", s.Path, s.SHA256.Hex(), err)
	}
	return nil
}
