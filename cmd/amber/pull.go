package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/registry"
)

type pullOptions struct {
	json     bool
	insecure bool
	out      string
}

func (e *env) newPullCmd() *cobra.Command {
	o := &pullOptions{}
	c := &cobra.Command{
		Use:   "pull docker://REGISTRY/REPO:TAG -o NAME.tar.zst",
		Short: "Fetch sealed evidence from an OCI registry, checked, with its sidecars",
		Long: `pull fetches an evidence artifact that amber push put in a registry: the
archive to NAME (written to a temporary file, hashed while it downloads, and
named NAME only once whole and its SHA-256 is the registry's digest of it),
its sidecars beside it (NAME.sha256, .md5, .sha1, .custody.jsonl, *.sig,
the signatures .intoto.jsonl and timestamps *.tsr,
each checked against its digest), then verifies the archive as amber verify
does and appends a "pulled" event to NAME.custody.jsonl. Nothing that exists
is overwritten; a pull that fails leaves nothing at NAME.

Exit 3: the registry served bytes that are not their digest's, or the
archive does not verify. Exit 4: the reference is not amber evidence.
Exit 5: no such tag. Exit 12: NAME or a sidecar exists. Exit 16: the
registry refused the credentials.`,
		Example: `  amber pull docker://evidence.example/case-2026-041/e1:web -o e1.tar.zst`,
		Args:    argsRange(1, 1),
		RunE:    func(cmd *cobra.Command, args []string) error { return e.runPull(o, args[0]) },
	}
	c.Flags().StringVarP(&o.out, "output", "o", "", "where to write the archive (NAME.tar.zst; required)")
	c.Flags().BoolVar(&o.json, "json", false, "print the result as JSON")
	c.Flags().BoolVar(&o.insecure, "insecure", false, "allow plain HTTP and an unverified certificate (loopback, labs)")
	return c
}

func (e *env) runPull(o *pullOptions, src string) error {
	if o.out == "" {
		return usageError{errors.New("pull: -o NAME.tar.zst is required")}
	}
	ropts := registryOptions(o.insecure)
	ref, err := registry.ParseRef(src, ropts)
	if err != nil {
		return usageError{err}
	}
	a, err := registry.Resolve(e.ctx, ref, ropts)
	if err != nil {
		return err
	}
	prog := isTerminal(e.stderr)
	var progress func(done, total int64)
	if prog {
		last := time.Time{}
		progress = func(done, total int64) {
			if time.Since(last) > 200*time.Millisecond {
				last = time.Now()
				fmt.Fprintf(e.stderr, "\r\033[Kpulling: %d%% of %d MiB", done*100/max(total, 1), total>>20)
			}
		}
	}
	p, err := registry.Pull(e.ctx, a, o.out, ropts, progress)
	if prog {
		fmt.Fprint(e.stderr, "\r\033[K")
	}
	if err != nil {
		return err
	}
	r, err := archive.Verify(o.out, archive.VerifyOptions{Ctx: e.ctx})
	if err != nil {
		return err
	}
	if r.Manifest != nil {
		result := "intact"
		if !r.OK() {
			result = fmt.Sprintf("FAILED (%d problems)", len(r.Problems))
		}
		repo := ref.Context()
		if _, _, err := manifest.NewRecorder().Record(o.out, r.Manifest, "pulled", map[string]string{
			"registry": repo.RegistryStr(), "repository": repo.RepositoryStr(), "reference": ref.Identifier(),
			"manifest": p.Manifest, "sha256": r.SHA256.Hex(), "result": result, "tool": "amber " + version,
		}); err != nil {
			fmt.Fprintf(e.stderr, "amber: warning: could not record the pull in %s.custody.jsonl: %s\n", escapeName(o.out), escapeName(err.Error()))
		}
	}
	if o.json {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if p.Sidecars == nil {
			p.Sidecars = []string{}
		}
		if err := enc.Encode(struct {
			*registry.Pulled
			Verified bool               `json:"verified"`
			Problems []manifest.Problem `json:"problems"`
		}{p, r.OK(), append([]manifest.Problem{}, r.Problems...)}); err != nil {
			return err
		}
	} else {
		for _, pr := range r.Problems {
			fmt.Fprintf(e.stdout, "FAIL %s\n", escapeName(pr.String()))
		}
		status := "OK"
		if !r.OK() {
			status = "TAMPERED"
		}
		fmt.Fprintf(e.stdout, "%s %s: %d bytes, sha256 %s, from docker://%s (%s)\n", status, escapeName(o.out), p.Size, p.SHA256, escapeName(ref.Name()), p.Manifest)
		if len(p.Sidecars) > 0 {
			fmt.Fprintf(e.stdout, "  sidecars: %s\n", escapeName(strings.Join(p.Sidecars, ", ")))
		}
	}
	if !r.OK() {
		return fmt.Errorf("%w: %d problem(s) in %s as pulled from docker://%s", errTampered, len(r.Problems), o.out, ref.Name())
	}
	return nil
}
