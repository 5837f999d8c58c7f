package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/registry"
)

type pushOptions struct {
	json     bool
	insecure bool
	custody  bool
	full     bool
	force    bool
}

func (e *env) newPushCmd() *cobra.Command {
	o := &pushOptions{}
	c := &cobra.Command{
		Use:   "push ARCHIVE docker://REGISTRY/REPO:TAG",
		Short: "Put a sealed archive and its sidecars into an OCI registry",
		Long: `push uploads a sealed archive unchanged to a registry as an
OCI artifact (an image manifest with artifactType ` + registry.ArtifactType + `):
the archive byte for byte as the first layer, so that the registry's digest
of it is the archive's SHA-256 (its .sha256 sidecar); the sidecars present
(.sha256, .md5, .sha1, .custody.jsonl, signatures .intoto.jsonl and *.sig,
timestamps *.tsr) as further layers
titled with their file names; annotations with the case, exhibit, examiner,
the time and amber's version. The manifest is pushed last: a push that fails
leaves no tag.

A tag that names something already is never moved: push refuses (exit 12)
unless --force (what the tag named stays in the registry under its digest,
untagged); --custody may replace a tag that names the same archive.

It appends a "pushed" event (registry, repository, tag, manifest digest) to
ARCHIVE.custody.jsonl and prints the manifest digest.

While it uploads, push checks the archive as it was sealed: every frame's
bytes against its sealed digest, the seek table, trailer and manifest, the
file indexes and Merkle roots, and the sidecars; a byte changed since sealing
stops it before the tag (exit 3). --full also re-derives every file's hash and
every layer's digest from the content, as amber verify does (it costs as much
CPU as the upload takes time). An archive without a .sha256 sidecar is checked
before the upload instead.

--custody pushes a new manifest version with the current custody sidecar
(events recorded since, such as "pushed" and "pulled"): the archive blob,
which the registry must already hold, is checked and not uploaded again.

Credentials come from the Docker config (DOCKER_CONFIG, ~/.docker/config.json
and its credential helpers); a private CA through SSL_CERT_FILE.
Exit 3: the archive does not verify. Exit 16: the registry refused the
credentials. Exit 5: no such repository or blob. Exit 12: the tag exists (--force).
Exit 130: interrupted (Ctrl-C); nothing is tagged, but the blobs uploaded
by then stay in the registry, untagged, until its garbage collection.`,
		Example: `  amber push case.tar.zst docker://evidence.example/case-2026-041/e1:web
  amber push --custody case.tar.zst docker://evidence.example/case-2026-041/e1:web
  amber push --force case.tar.zst docker://evidence.example/case-2026-041/e1:web   # move the tag`,
		Args: argsRange(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error { return e.runPush(o, args[0], args[1]) },
	}
	c.Flags().BoolVar(&o.json, "json", false, "print the result as JSON")
	c.Flags().BoolVar(&o.insecure, "insecure", false, "allow plain HTTP and an unverified certificate (loopback, labs)")
	c.Flags().BoolVar(&o.full, "full", false, "check every file's content and layer digest too (as amber verify), not only the sealed frames")
	c.Flags().BoolVar(&o.custody, "custody", false, "push a new manifest version with the current custody sidecar; the archive blob must be in the registry already")
	c.Flags().BoolVar(&o.force, "force", false, "replace the tag if it names something already (what it named stays in the registry under its digest)")
	return c
}

// registryOptions are the options every registry command shares. The
// environment's AMBER_REGISTRY_TIMEOUT (a Go duration: 30s, 2m) bounds
// how long a registry may keep amber waiting (registry.Options.Timeout:
// for an answer, and for each KiB a second of a body), default 60s.
func registryOptions(insecure bool) registry.Options {
	o := registry.Options{Insecure: insecure, UserAgent: "amber/" + version}
	if v := os.Getenv("AMBER_REGISTRY_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			fmt.Fprintf(os.Stderr, "amber: AMBER_REGISTRY_TIMEOUT=%q is not a positive duration (like 30s); waiting up to %s\n", escapeName(v), registry.DefaultTimeout)
		} else {
			o.Timeout = d
		}
	}
	return o
}

func (e *env) runPush(o *pushOptions, path, dest string) error {
	ropts := registryOptions(o.insecure)
	tag, err := registry.ParseTag(dest, ropts)
	if err != nil {
		return usageError{err}
	}
	// The evidence is tagged only when it holds: a registry copy of a
	// damaged archive would carry the damage to every examiner. With its
	// .sha256 sidecar the archive is verified while it uploads (the
	// registry checks the uploaded bytes against that digest; the
	// manifest waits for the verification); without it, first.
	verify := func(ctx context.Context) (*archive.Report, error) {
		r, err := archive.Verify(path, archive.VerifyOptions{Ctx: ctx, Sealed: !o.full})
		if err != nil {
			return nil, err
		}
		if !r.OK() {
			for _, p := range r.Problems {
				fmt.Fprintf(e.stderr, "FAIL %s\n", escapeName(p.String()))
			}
			return nil, fmt.Errorf("%w: %s has %d problem(s); run amber verify; nothing was pushed", errTampered, path, len(r.Problems))
		}
		if b, err := os.ReadFile(path + ".sha256"); err == nil {
			if f := strings.Fields(string(b)); len(f) == 0 || f[0] != r.SHA256.Hex() {
				return nil, fmt.Errorf("%w: %s.sha256 does not hold the archive's SHA-256 %s; nothing was pushed", errTampered, path, r.SHA256.Hex())
			}
		}
		return r, nil
	}
	r, ready, err := e.verifyWhilePushing(path, verify)
	if err != nil {
		return err
	}
	// A tag is moved only when asked: checked before the upload, and
	// again before the manifest (another push may have come meanwhile).
	noOverwrite := func() error {
		if o.force {
			return nil
		}
		return registry.NoOverwrite(e.ctx, tag, ropts, r.SHA256, o.custody)
	}
	if err := noOverwrite(); err != nil {
		return err
	}
	req := pushRequest(path, r.Manifest, r.SHA256, r.Size)
	req.ArchivePresent = o.custody
	req.Ready = func() error {
		if ready != nil {
			if err := ready(); err != nil {
				return err
			}
		}
		return noOverwrite()
	}
	m, base, side := r.Manifest, filepath.Base(path), req.Sidecars
	prog := isTerminal(e.stderr)
	if prog {
		last := time.Time{}
		req.Progress = func(done, total int64) {
			if time.Since(last) > 200*time.Millisecond || done == total {
				last = time.Now()
				fmt.Fprintf(e.stderr, "\r\033[Kpushing: %d%% of %d MiB", done*100/max(total, 1), total>>20)
			}
		}
	}
	p, err := registry.Push(e.ctx, tag, req, ropts)
	if prog {
		fmt.Fprint(e.stderr, "\r\033[K")
	}
	if err != nil {
		where := registry.Prefix + tag.Name()
		left := "nothing was tagged at " + where + "; the blobs uploaded by then stay in the registry, untagged, until its garbage collection"
		// Without --custody or --force the tag did not name this archive
		// before: if it does now, the manifest landed.
		if !o.custody && !o.force {
			if d, ok := e.landedAnyway(err, func(ctx context.Context) (*registry.Tagged, error) { return registry.Existing(ctx, tag, ropts) }, r.SHA256); ok {
				left = where + " was tagged (manifest " + d + ") as the interruption came; the custody log does not record the push"
			}
		}
		return interruptedAt(e, err, left)
	}
	action := "pushed"
	if o.custody {
		action = "pushed custody"
	}
	_, _, err = manifest.NewRecorder().Record(path, m, "pushed", map[string]string{
		"registry": p.Registry, "repository": p.Repository, "tag": p.Tag, "manifest": p.Digest.String(),
		"sha256": r.SHA256.Hex(), "what": action, "tool": "amber " + version,
	})
	if err != nil {
		// The push happened: say so, and that the local log lacks it.
		fmt.Fprintf(e.stderr, "amber: warning: pushed, but could not record it in %s.custody.jsonl: %s\n", escapeName(path), escapeName(err.Error()))
	}
	if o.json {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			*registry.Pushed
			SHA256   string   `json:"sha256"`
			Sidecars []string `json:"sidecars"`
		}{p, r.SHA256.Hex(), titles(side)})
	}
	fmt.Fprintf(e.stdout, "%s\n", p.Digest)
	what := "archive uploaded"
	if p.Skipped {
		what = "archive already in the registry, not uploaded"
	}
	fmt.Fprintf(e.stderr, "pushed %s to docker://%s (%s; sidecars %s)\n", escapeName(base), escapeName(tag.Name()), what, escapeName(strings.Join(titles(side), ", ")))
	return nil
}

// pushRequest is the evidence artifact of the sealed archive at path
// (manifest m, SHA-256 sum, size bytes): its sidecars present beside it,
// the annotations, the config. amber push and a capture to a registry
// push the same.
func pushRequest(path string, m *manifest.Manifest, sum hashing.Digest, size int64) registry.PushRequest {
	base := filepath.Base(path)
	var side []registry.PushFile
	for _, s := range []struct{ suf, mt string }{
		{".sha256", registry.MediaTypeDigests}, {".md5", registry.MediaTypeDigests}, {".sha1", registry.MediaTypeDigests},
		{".custody.jsonl", registry.MediaTypeCustody}, {".intoto.jsonl", registry.MediaTypeAttestation},
	} {
		if st, err := os.Stat(path + s.suf); err == nil && st.Mode().IsRegular() {
			side = append(side, registry.PushFile{Path: path + s.suf, Title: base + s.suf, MediaType: s.mt})
		}
	}
	for _, g := range []struct{ pat, mt string }{{"*.sig", registry.MediaTypeSignature}, {"*.tsr", registry.MediaTypeTimestamp}} {
		sigs, _ := filepath.Glob(escapeGlob(path) + g.pat)
		for _, s := range sigs {
			if st, err := os.Stat(s); err == nil && st.Mode().IsRegular() {
				if _, ok := registry.SidecarSuffix(base, filepath.Base(s)); ok {
					side = append(side, registry.PushFile{Path: s, Title: filepath.Base(s), MediaType: g.mt})
				}
			}
		}
	}
	ann := map[string]string{
		registry.AnnotationCreated:       time.Now().UTC().Format(time.RFC3339),
		registry.AnnotationVersion:       version,
		registry.AnnotationArchiveSHA256: sum.Hex(),
		registry.AnnotationTitle:         base,
	}
	for k, v := range map[string]string{registry.AnnotationCase: m.Case.Case, registry.AnnotationExhibit: m.Case.Exhibit, registry.AnnotationExaminer: m.Case.Examiner} {
		if v != "" {
			ann[k] = v
		}
	}
	req := registry.PushRequest{
		Archive: path, SHA256: sum, Size: size, Sidecars: side,
		Config:      registry.Config{Name: base, Size: size, SHA256: sum.Hex(), Version: version},
		Annotations: ann,
	}
	return req
}

func titles(fs []registry.PushFile) []string {
	t := []string{}
	for _, f := range fs {
		t = append(t, f.Title)
	}
	return t
}

// escapeGlob quotes the glob metacharacters of a path.
func escapeGlob(p string) string {
	var b strings.Builder
	for _, r := range p {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// verifyWhilePushing starts verify: in the background when the archive's
// .sha256 sidecar names its digest (what the upload needs first), the push
// then waiting for it before the manifest (ready); else at once. It
// returns what the push needs of the archive: its digest and size, and its
// manifest (read from its end, which the verification checks).
func (e *env) verifyWhilePushing(path string, verify func(context.Context) (*archive.Report, error)) (*archive.Report, func() error, error) {
	b, err := os.ReadFile(path + ".sha256")
	f := strings.Fields(string(b))
	sum, perr := hashing.Parse("sha256:" + firstOr(f, ""))
	st, serr := os.Stat(path)
	if err != nil || perr != nil || serr != nil {
		r, err := verify(e.ctx)
		return r, nil, err
	}
	a, err := archive.Open(path)
	if err != nil {
		return nil, nil, err
	}
	m := a.Manifest
	a.Close()
	done := make(chan error, 1)
	var checked *archive.Report
	go func() {
		r, err := verify(e.ctx)
		if err == nil && (r.SHA256 != sum || r.Size != st.Size()) {
			err = fmt.Errorf("%w: %s changed while it was pushed; nothing was tagged", errTampered, path)
		}
		checked = r
		done <- err
	}()
	ready := func() error {
		if err := <-done; err != nil {
			return err
		}
		if checked.Manifest == nil || checked.Manifest.Case != m.Case {
			return fmt.Errorf("%w: %s changed while it was pushed; nothing was tagged", errTampered, path)
		}
		return nil
	}
	return &archive.Report{SHA256: sum, Size: st.Size(), Manifest: m}, ready, nil
}

func firstOr(f []string, def string) string {
	if len(f) == 0 {
		return def
	}
	return f[0]
}
