package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/attest"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/registry"
)

type verifyOptions struct {
	json       bool
	noLog      bool
	expectHead string
	attest     verifyAttestFlags
}

func (e *env) newVerifyCmd() *cobra.Command {
	o := &verifyOptions{}
	c := &cobra.Command{
		Use:   "verify ARCHIVE",
		Short: "Recompute every hash in an archive and say exactly what fails",
		Long: `Verify reads the whole archive once and recomputes: every zstd frame's
checksums, the seek table, every tar header and padding, every blob's
SHA-256, every file's SHA-256 against the layer's index, every Merkle root,
the manifest's and trailer's hashes, the sealed custody chain, and the
sidecars ARCHIVE.sha256/.md5/.sha1/.custody.jsonl when present.

In the custody log ARCHIVE.custody.jsonl it checks the chain from the
sealed head, every archive digest an event records (sealed, verified, ...)
against the file, and that each event is dated no earlier than the one
before it. A failure there is a "FAIL custody log ..." line: what happened
to the archive after sealing is not what the log says; the archive's own
hashes are reported apart.

It appends a "verified" event to ARCHIVE.custody.jsonl (--no-log: don't),
then prints the custody head: the SHA-256 of the log's last line. The last
line has no later line to protect it, so note the head outside the archive
(case notes) and give it back later with --expect-head: verify fails if
that line, or any before it, was edited or removed.

An archive whose custody log records another file name (renamed after
capture, with its sidecars) verifies as intact, with a "WARN archive name"
line: renaming changes no byte.

Signatures (ARCHIVE.intoto.jsonl, made by amber sign or capture --sign-key)
and RFC 3161 timestamps (ARCHIVE*.tsr) are listed with their key IDs,
certificates and times. Without --key or --ca they are not checked (said so;
the exit code does not depend on them). With --key (repeatable: each key
must have signed) or --ca (a signature's certificate chain must lead to that
root and be for the key that signed; at the time of a token over that
signature whose TSA --tsa-ca trusts, else today), a missing or bad signature is exit 3,
named by its line; so is a statement whose subject is not this file's
SHA-256 or whose manifest digest is not this archive's manifest's. A
timestamp's imprint must be its signature's (NAME.tsr: the archive's
SHA-256); --tsa-ca also checks the TSA's certificate chain (timeStamping
extended key usage) up to that root.

Exit 0: intact (warnings, if any, are WARN lines). Exit 3: tampered or
damaged, the archive or its custody log (each failure is named), or a
signature or timestamp checked with --key, --ca or --tsa-ca fails.
Exit 4: not an amber archive or an unsupported version.
Exit 1: this machine failed, e.g. no room in TMPDIR, where a large layer's
index is rebuilt (temp files, unlinked as they are made): not a finding.`,
		Example: `  amber verify case.tar.zst
  amber verify --expect-head sha256:3f1c... case.tar.zst   # the head noted last time
  amber verify --json case.tar.zst | jq .problems
  amber verify case.tar.zst --key examiner.pub --key second.pub --tsa-ca tsa-root.pem
  amber verify case.tar.zst --ca examiners-root.pem`,
		Args: argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error { return e.runVerify(o, args[0]) },
	}
	c.Flags().BoolVar(&o.json, "json", false, "print the report as JSON")
	c.Flags().BoolVar(&o.noLog, "no-log", false, "do not append to the custody log")
	o.attest.addFlags(c)
	c.Flags().StringVar(&o.expectHead, "expect-head", "", "a custody head noted earlier (sha256:HEX): fail unless the log still holds that line unchanged")
	return c
}

// parseHead reads a custody head given on the command line.
func parseHead(s string) (hashing.Digest, error) {
	if s == "" {
		return hashing.Digest{}, nil
	}
	d, err := hashing.Parse(strings.ToLower(strings.TrimSpace(s)))
	if err != nil {
		return d, usageError{fmt.Errorf("--expect-head: %w", err)}
	}
	return d, nil
}

func (e *env) runVerify(o *verifyOptions, path string) error {
	expect, err := parseHead(o.expectHead)
	if err != nil {
		return err
	}
	checkOpts, err := o.attest.checkOptions()
	if err != nil {
		return err
	}
	if o.attest.any() && registry.IsRef(path) {
		return usageError{fmt.Errorf("--key, --ca and --tsa-ca check the signatures beside a file: amber pull %s, then verify the file", path)}
	}
	// A docker://REF is read once, front to back, from the registry; its
	// custody events go to a sidecar under the cache (recordAt).
	recordAt := path
	var blob *registry.Blob
	if registry.IsRef(path) {
		blob, err = e.openBlob(path)
		if err != nil {
			return err
		}
		defer blob.Close()
		if recordAt, err = blob.CustodyBase(); err != nil {
			return err
		}
	}
	// A layer of many files is re-indexed in memory: collect garbage
	// sooner then (for the others Go's default is a few percent faster).
	if a, err := e.openForVerify(path, blob); err == nil {
		for _, art := range a.Manifest.Artifacts {
			for _, l := range art.Layers {
				if l.Files > manyFiles {
					lessGarbage()
				}
			}
		}
		a.Close()
	}
	start := time.Now()
	r, _, err := e.verification(path, blob, recordAt, expect)
	if err != nil {
		return err
	}
	// Signatures and timestamps: before the verified event, which says
	// how they fared.
	var att *attest.Result
	if blob == nil {
		att = e.checkAttest(path, r, checkOpts)
	}
	if !o.noLog && r.Manifest != nil {
		result := "intact"
		if !r.OK() {
			result = fmt.Sprintf("FAILED (%d problems)", len(r.Problems))
		}
		details := map[string]string{"result": result, "sha256": r.SHA256.Hex(), "tool": "amber " + version, "seconds": fmt.Sprintf("%.1f", time.Since(start).Seconds())}
		if att != nil && len(att.Signatures)+len(att.Timestamps) > 0 {
			details["signatures"] = sigSummary(att)
		}
		if blob != nil {
			details["registry_ref"] = path
			details["manifest_digest"] = blob.ManifestDigest.String()
		}
		head, seq, err := manifest.NewRecorder().Record(recordAt, r.Manifest, "verified", details)
		switch {
		case err == nil:
			if !r.CustodyHead.IsZero() {
				r.CustodyHead, r.CustodyHeadSeq = head, seq
			}
		case !errors.Is(err, os.ErrPermission):
			r.Problems = append(r.Problems, manifest.Problem{Where: "custody log", Detail: err.Error(), Custody: true})
		default:
			fmt.Fprintf(e.stderr, "amber: warning: could not record the verification: %s\n", escapeName(err.Error()))
		}
	}
	if o.json {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if r.Problems == nil {
			r.Problems = []manifest.Problem{}
		}
		if r.Warnings == nil {
			r.Warnings = []manifest.Problem{}
		}
		out := struct {
			*archive.Report
			// Registry says what was read from a registry, and how much.
			Registry *remoteStat `json:"registry,omitempty"`
			// Signatures and Timestamps are those found beside the file.
			Signatures []attest.SigResult `json:"signatures"`
			Timestamps []attest.TSResult  `json:"timestamps"`
		}{Report: r}
		if att != nil {
			out.Signatures, out.Timestamps = att.Signatures, att.Timestamps
		}
		if blob != nil {
			out.Registry = newRemoteStat(blob, recordAt)
		}
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		w := e.stdout
		// A problem names what failed: a member or file name of the
		// archive, escaped.
		for _, p := range r.Problems {
			fmt.Fprintf(w, "FAIL %s\n", escapeName(p.String()))
		}
		for _, p := range r.Warnings {
			fmt.Fprintf(w, "WARN %s\n", escapeName(p.String()))
		}
		status := "OK"
		if !r.OK() {
			status = "TAMPERED"
		}
		fmt.Fprintf(w, "%s %s: %d bytes, sha256 %s\n", status, escapeName(r.Path), r.Size, r.SHA256.Hex())
		if blob != nil {
			fmt.Fprintf(w, "  registry blob %s (manifest %s); %d bytes fetched; custody events in %s.custody.jsonl\n", blob.Digest, blob.ManifestDigest, blob.Stats().BytesFetched, recordAt)
		}
		fmt.Fprintf(w, "  %d frames, %d tar members, %d artifacts, %d layers, %d files re-hashed, %d+%d custody events\n",
			r.Frames, r.Members, r.Artifacts, r.Layers, r.Files, r.SealedEvents, r.SidecarEvents)
		if blob != nil {
		} else if len(r.Sidecars) > 0 {
			fmt.Fprintf(w, "  sidecars checked: %s\n", escapeName(fmt.Sprint(r.Sidecars)))
		} else {
			fmt.Fprintf(w, "  no sidecars found: compare the sha256 above with the one recorded at capture\n")
		}
		if att != nil {
			printAttest(w, att, checkOpts.Checking())
		}
		printHead(w, r.CustodyHead, r.CustodyHeadSeq, expect, r.ExpectedHeadSeq)
		if !r.OK() && onlyAttest(r.Problems) {
			fmt.Fprintf(w, "  the archive's own hashes hold; what fails is a signature or timestamp beside it\n")
		} else if !r.OK() && r.ArchiveOK() {
			fmt.Fprintf(w, "  the archive's own hashes hold; what fails is its custody log, the record of what was done with it after sealing\n")
		}
	}
	if !r.OK() {
		return fmt.Errorf("%w: %d problem(s) in %s", errTampered, len(r.Problems), path)
	}
	return nil
}

// printHead prints the custody head for the examiner to note, and where
// the head noted earlier was found.
func printHead(w io.Writer, head hashing.Digest, seq int, expect hashing.Digest, found *int) {
	if !head.IsZero() {
		fmt.Fprintf(w, "  custody head %s (seq %d): note it outside the archive; given back with --expect-head, it shows whether any event up to it was edited\n", head, seq)
	}
	if found != nil {
		fmt.Fprintf(w, "  expected head %s found: the line of seq %d, unchanged with all before it\n", expect, *found)
	}
}

// verification runs the verification of amber verify (and of amber
// report): archive.Verify over the file, or over the registry blob with
// its sidecars under the cache (recordAt), with progress on a terminal,
// and says how long it took.
func (e *env) verification(path string, blob *registry.Blob, recordAt string, expect hashing.Digest) (*archive.Report, float64, error) {
	opts := archive.VerifyOptions{ExpectHead: expect, Ctx: e.ctx}
	prog := isTerminal(e.stderr)
	if prog {
		last := time.Time{}
		opts.Progress = func(done, total int64) {
			if time.Since(last) > 200*time.Millisecond {
				last = time.Now()
				fmt.Fprintf(e.stderr, "\r\033[Kverifying: %d%% of %d MiB", done*100/max(total, 1), total>>20)
			}
		}
	}
	start := time.Now()
	var r *archive.Report
	var err error
	if blob != nil {
		opts.SidecarPath = recordAt
		r, err = archive.VerifyReaderAt(blob, blob.Size, path, opts)
		if err == nil && r.SHA256.Hex() != blob.Digest.Hex {
			r.Problems = append(r.Problems, manifest.Problem{Where: "registry blob",
				Detail: fmt.Sprintf("its SHA-256 is %s; the registry's manifest names it %s", r.SHA256.Hex(), blob.Digest)})
		}
	} else {
		r, err = archive.Verify(path, opts)
	}
	if prog {
		fmt.Fprint(e.stderr, "\r\033[K")
	}
	return r, time.Since(start).Seconds(), err
}
