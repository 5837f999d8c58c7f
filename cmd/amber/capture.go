package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot"
)

type captureOptions struct {
	output       string
	c            manifest.Case
	md5, sha1    bool
	json         bool
	hashSource   bool
	level        int
	maxExpansion int64
}

func (o *captureOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVarP(&o.output, "output", "o", "", "archive to write (NAME.tar.zst); never overwritten")
	f.StringVar(&o.c.Case, "case", "", "case identifier")
	f.StringVar(&o.c.Exhibit, "exhibit", "", "exhibit identifier")
	f.StringVar(&o.c.Examiner, "examiner", "", "examiner's name (default: the OS user)")
	f.StringVar(&o.c.Notes, "notes", "", "free-text notes")
	f.BoolVar(&o.md5, "md5", false, "also write NAME.md5 for legacy tooling")
	f.BoolVar(&o.sha1, "sha1", false, "also write NAME.sha1 for legacy tooling")
	f.BoolVar(&o.json, "json", false, "print the result as JSON")
	f.IntVar(&o.level, "level", 0, "zstd level of the archive, 1 (fastest) to 19 (smallest); 0: the default (2 with libzstd, 3 with the pure-Go encoder)")
	f.BoolVar(&o.hashSource, "hash-source", false, "also record each source tarball's SHA-256 (one more read of it)")
	f.Int64Var(&o.maxExpansion, "max-expansion", snapshot.DefaultMaxExpansion, "refuse a compressed layer that expands more than this many times (0: no limit)")
}

func (e *env) newCaptureCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "capture",
		Short: "Capture evidence into a sealed archive",
	}
	o := &captureOptions{}
	img := &cobra.Command{
		Use:   "image SOURCE... -o ARCHIVE.tar.zst",
		Short: "Capture images from docker-save tarballs or OCI layout directories",
		Long: `Capture every image of each SOURCE (a 'docker save' tarball, legacy or
Docker 25+ layout; an OCI archive tarball; or an OCI image layout directory)
into one sealed archive. Layers are stored uncompressed and checked against
the config's diff_ids; each gets a file index with every file's SHA-256.

The archive is written to ARCHIVE.partial and renamed once sealed; beside it
go ARCHIVE.sha256 (sha256sum -c --strict accepts it) and
ARCHIVE.custody.jsonl (the chain-of-custody log). Ctrl-C leaves nothing.`,
		Example: `  amber capture image app.tar -o case.tar.zst --case 2026-041 --exhibit E1 \
      --examiner "J. Doe" --notes "seized from host web-3"
  amber capture image ./oci-layout -o image.tar.zst --md5 --sha1`,
		Args: argsRange(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.runCaptureImage(o, args)
		},
	}
	o.addFlags(img)
	c.AddCommand(img)
	return c
}

func (e *env) runCaptureImage(o *captureOptions, sources []string) error {
	if o.output == "" {
		return usageError{fmt.Errorf("capture image needs -o ARCHIVE.tar.zst")}
	}
	if o.level < 0 || o.level > 19 {
		return usageError{fmt.Errorf("--level %d: use 1 to 19", o.level)}
	}
	req := snapshot.Request{
		Sources: sources, Output: o.output, Case: o.c, CommandLine: e.args,
		Tool: manifest.Tool{Name: "amber", Version: version}, MD5: o.md5, SHA1: o.sha1, HashSources: o.hashSource, Level: o.level,
		Options: snapshot.Options{MaxExpansion: o.maxExpansion},
	}
	prog := isTerminal(e.stderr)
	start := time.Now()
	if prog {
		req.Progress = func(msg string) { fmt.Fprintf(e.stderr, "\r\033[K%s", msg) }
		req.WriteProgress = func(n int64) {
			fmt.Fprintf(e.stderr, "\r\033[K%d MiB archived, %.0f MiB/s", n>>20, float64(n)/(1<<20)/time.Since(start).Seconds())
		}
	}
	res, err := snapshot.CaptureImageFiles(e.ctx, req)
	if prog {
		fmt.Fprint(e.stderr, "\r\033[K")
	}
	if err != nil {
		return err
	}
	if o.json {
		out := map[string]any{
			"archive": res.Sealed.Path, "size": res.Sealed.Size, "sha256": res.Sealed.SHA256.Hex(),
			"manifest_sha256": res.Sealed.ManifestSHA256.Hex(), "sidecars": res.Sidecars,
			"artifacts": res.Manifest.Artifacts, "anomalies": res.Manifest.Anomalies,
		}
		if res.Sealed.MD5 != "" {
			out["md5"] = res.Sealed.MD5
		}
		if res.Sealed.SHA1 != "" {
			out["sha1"] = res.Sealed.SHA1
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	w := e.stdout
	fmt.Fprintf(w, "sealed %s (%d bytes)\n", res.Sealed.Path, res.Sealed.Size)
	fmt.Fprintf(w, "sha256 %s\n", res.Sealed.SHA256.Hex())
	if res.Sealed.MD5 != "" {
		fmt.Fprintf(w, "md5    %s\n", res.Sealed.MD5)
	}
	if res.Sealed.SHA1 != "" {
		fmt.Fprintf(w, "sha1   %s\n", res.Sealed.SHA1)
	}
	for _, a := range res.Manifest.Artifacts {
		fmt.Fprintf(w, "%ss/%s: %d layers, %d files, image %s, merkle %s\n", a.Kind, a.Name, len(a.Layers), a.Files, a.ImageID.Short(), a.MerkleRoot.Hex()[:16])
	}
	for _, an := range res.Manifest.Anomalies {
		fmt.Fprintf(w, "anomaly: images/%s layer %d: %s: %s\n", an.Artifact, an.Layer, an.Kind, an.Detail)
	}
	for _, s := range res.Sidecars {
		fmt.Fprintf(w, "wrote %s\n", s)
	}
	return nil
}
