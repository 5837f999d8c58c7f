package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/attest"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/textsafe"
	"github.com/amber-forensics/amber/manifest"
	rpt "github.com/amber-forensics/amber/report"
	"github.com/amber-forensics/amber/snapshot/registry"
)

type reportOptions struct {
	output string
	pdf    string
	files  bool
	json   bool
	noLog  bool
	attest verifyAttestFlags
}

func (e *env) newReportCmd() *cobra.Command {
	o := &reportOptions{}
	c := &cobra.Command{
		Use:   "report ARCHIVE -o REPORT.html [--pdf REPORT.pdf] [--files] [--json]",
		Short: "Write the examiner's report of an archive: one self-contained HTML page (and PDF)",
		Long: `report writes the examiner's report of an archive, to attach to an affidavit:
one self-contained HTML file (inline CSS, no script, nothing fetched from
the network) that prints clean to PDF. It holds:

  the case header (case, exhibit, examiner, notes);
  the acquisition record (tool and version, host, OS and kernel, runtime
    and API version, command line, UTC start and end, sources);
  the archive's SHA-256, as computed now and as ARCHIVE.sha256 (.md5,
    .sha1) and the custody log's sealed event record it;
  the signatures found in ARCHIVE.intoto.jsonl and the RFC 3161
    timestamps (ARCHIVE*.tsr), checked as 'amber verify' checks them with
    --key, --ca and --tsa-ca (a failure is the verification's: exit 3),
    listed as not checked without;
  a verification run made now, as 'amber verify' makes it: its date,
    result, and every failure named;
  the custody log, sealed and later events, with its chain status;
  each artifact with its layers (digest, size, created-by, Merkle root,
    file count);
  the findings: each container against its image as 'amber diff ARCHIVE
    containers/NAME' lists it (A/C/D; content-only changes, whose size,
    mode, owner and mtime were kept, highlighted), the engine's
    disagreements, the anomalies, the memory dumps (process, size, SHA-256);
  with --files, every file of every layer with its SHA-256, from the file
    indexes (no content is read).

Every figure comes from the archive; dates are UTC, ISO 8601. --json prints
the same model as JSON. Names from the evidence are escaped: markup shows
as text, a newline as \n in quotes.

--pdf renders the HTML with headless Chromium (chromium, chromium-browser
or google-chrome on PATH; as root it runs with --no-sandbox, which Chromium
needs there). Without it, the HTML is written all the same and amber says
the PDF was not made, with exit 1: a script that asked for a PDF must not
take its absence for success.

Like verify, the verification run appends a "verified" event to
ARCHIVE.custody.jsonl (--no-log: don't); the report shows it. For a
docker://REF, the custody events are those kept under --cache, as for
verify and log.

Exit 0: report written, archive intact. Exit 3: report written, and the
verification failed (the report names each failure). Exit 4: not an amber
archive. Exit 5: no such archive. Exit 1: the report or the PDF could not
be written.`,
		Example: `  amber report case.tar.zst -o case-report.html
  amber report case.tar.zst -o case-report.html --pdf case-report.pdf --files
  amber report case.tar.zst -o case-report.html --key examiner.pub --tsa-ca tsa-root.pem
  amber report case.tar.zst --json | jq '.findings.container_changes[].content_only'
  amber report --insecure docker://evidence.example/case-041/e1:web -o e1-report.html`,
		Args: argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error { return e.runReport(o, args[0]) },
	}
	f := c.Flags()
	f.StringVarP(&o.output, "output", "o", "", "write the HTML report to this file")
	f.StringVar(&o.pdf, "pdf", "", "also render the report to this PDF with headless Chromium")
	f.BoolVar(&o.files, "files", false, "append every file of every layer with its SHA-256")
	f.BoolVar(&o.json, "json", false, "print the report's data as JSON on stdout")
	f.BoolVar(&o.noLog, "no-log", false, "do not append the verification to the custody log")
	o.attest.addFlags(c)
	return c
}

func (e *env) runReport(o *reportOptions, path string) error {
	if o.output == "" && o.pdf == "" && !o.json {
		return usageError{errors.New("report: give -o REPORT.html, --pdf REPORT.pdf or --json")}
	}
	checkOpts, err := o.attest.checkOptions()
	if err != nil {
		return err
	}
	if o.attest.any() && registry.IsRef(path) {
		return usageError{fmt.Errorf("--key, --ca and --tsa-ca check the signatures beside a file: amber pull %s, then report on the file", path)}
	}
	if o.output != "" && o.output == o.pdf {
		return usageError{errors.New("report: -o and --pdf name the same file")}
	}
	recordAt := path
	var blob *registry.Blob
	var a *archive.Archive
	if registry.IsRef(path) {
		if blob, err = e.openBlob(path); err != nil {
			return err
		}
		defer blob.Close()
		if recordAt, err = blob.CustodyBase(); err != nil {
			return err
		}
	}
	if a, err = e.openForVerify(path, blob); err != nil {
		return err
	}
	defer a.Close()

	// As verify: a layer of many files is re-indexed in memory.
	for _, art := range a.Manifest.Artifacts {
		for _, l := range art.Layers {
			if l.Files > manyFiles {
				lessGarbage()
			}
		}
	}
	at := time.Now().UTC()
	vr, secs, err := e.verification(path, blob, recordAt, hashing.Digest{})
	if err != nil {
		return err
	}
	if !o.noLog && vr.Manifest != nil {
		result := "intact"
		if !vr.OK() {
			result = fmt.Sprintf("FAILED (%d problems)", len(vr.Problems))
		}
		details := map[string]string{"result": result, "sha256": vr.SHA256.Hex(), "tool": "amber " + version, "seconds": fmt.Sprintf("%.1f", secs), "for": "amber report"}
		if blob != nil {
			details["registry_ref"] = path
			details["manifest_digest"] = blob.ManifestDigest.String()
		}
		head, seq, err := manifest.NewRecorder().Record(recordAt, vr.Manifest, "verified", details)
		switch {
		case err == nil:
			if !vr.CustodyHead.IsZero() {
				vr.CustodyHead, vr.CustodyHeadSeq = head, seq
			}
		default:
			fmt.Fprintf(e.stderr, "amber: warning: could not record the verification: %s\n", escapeName(err.Error()))
		}
	}
	// Signatures and timestamps, checked as verify checks them (with
	// --key, --ca, --tsa-ca; listed as not checked without): their
	// failures are the verification's.
	sigFile := recordAt + ".intoto.jsonl"
	var sigs []rpt.Signature
	if blob == nil {
		sigs = reportSignatures(e.checkAttest(path, vr, checkOpts))
	}
	sidecars := recordAt
	name := path
	if blob == nil {
		if abs, err := filepath.Abs(path); err == nil {
			name = abs
		}
	}
	r, err := rpt.Build(rpt.Input{Archive: a, Name: name, Sidecars: sidecars, Verification: vr, VerifiedAt: at, VerifySeconds: secs,
		Signatures: sigs, SignaturesFrom: filepath.Base(sigFile), Files: o.files, Generated: time.Now(), GeneratedBy: "amber " + version})
	if err != nil {
		return err
	}
	if o.json {
		// Compact first: textsafe.JSON then escapes what encoding/json
		// leaves raw inside strings (DEL, C1, bidi), and only there.
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		var out bytes.Buffer
		if err := json.Indent(&out, []byte(textsafe.JSON(b)), "", "  "); err != nil {
			return err
		}
		out.WriteByte('\n')
		if _, err := e.stdout.Write(out.Bytes()); err != nil {
			return err
		}
	}
	var buf bytes.Buffer
	if err := rpt.WriteHTML(&buf, r); err != nil {
		return err
	}
	htmlPath := o.output
	if htmlPath != "" {
		if err := writeFileAtomic(htmlPath, buf.Bytes()); err != nil {
			return fmt.Errorf("writing the report: %w", err)
		}
		if !o.json {
			fmt.Fprintf(e.stdout, "report %s: %d bytes, sha256 %s\n", escapeName(htmlPath), buf.Len(), hashing.Sum(buf.Bytes()).Hex())
		}
	}
	var pdfErr error
	if o.pdf != "" {
		pdfErr = e.renderPDF(buf.Bytes(), htmlPath, o.pdf, o.json)
	}
	if pdfErr != nil {
		return pdfErr
	}
	if !vr.OK() {
		return fmt.Errorf("%w at report time: %d problem(s) in %s, each named in the report", errTampered, len(vr.Problems), path)
	}
	return nil
}

// reportSignatures turns what attest.Check found into the report's rows:
// one per signature, with the timestamp over it (NAME.<keyid16>.tsr); a
// timestamp over the archive itself (NAME.tsr) as a row of its own.
func reportSignatures(res *attest.Result) []rpt.Signature {
	out := []rpt.Signature{}
	used := map[int]bool{}
	stamp := func(row *rpt.Signature, t attest.TSResult) {
		if !t.Time.IsZero() {
			tm := t.Time.UTC()
			row.Timestamp = &tm
		}
		row.TSA = t.TSA
		if t.Status != attest.StatusVerified {
			row.TSA = strings.TrimSpace(t.TSA + " (timestamp " + t.Status + ")")
		}
	}
	for _, s := range res.Signatures {
		row := rpt.Signature{KeyID: s.KeyID, Signer: s.Signer, Algorithm: s.Algorithm, Examiner: s.Examiner, VerifiedWith: s.By,
			Checked: s.Status != attest.StatusNotChecked, Valid: s.Status == attest.StatusVerified}
		if s.Status == attest.StatusFailed {
			row.Problem = s.Detail
		}
		if len(s.KeyID) >= 16 {
			for i, t := range res.Timestamps {
				if !used[i] && strings.HasSuffix(t.File, "."+s.KeyID[:16]+".tsr") {
					used[i] = true
					stamp(&row, t)
					break
				}
			}
		}
		out = append(out, row)
	}
	for i, t := range res.Timestamps {
		if used[i] {
			continue
		}
		row := rpt.Signature{Signer: "(no signature: an RFC 3161 timestamp, " + t.File + ", over " + t.Over + ")",
			Checked: t.Status != attest.StatusNotChecked, Valid: t.Status == attest.StatusVerified}
		if t.Status == attest.StatusFailed {
			row.Problem = t.Detail
		}
		stamp(&row, t)
		out = append(out, row)
	}
	return out
}

// writeFileAtomic writes b to path through a temporary file in the same
// directory, renamed over it: a reader never sees half a report. The file
// is 0600: it names the examiner, hosts and paths.
func writeFileAtomic(path string, b []byte) error {
	t, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.partial")
	if err != nil {
		return err
	}
	defer os.Remove(t.Name())
	if _, err := t.Write(b); err != nil {
		t.Close()
		return err
	}
	if err := t.Sync(); err != nil {
		t.Close()
		return err
	}
	if err := t.Close(); err != nil {
		return err
	}
	return os.Rename(t.Name(), path)
}

// chromiumNames are the names Debian, other distributions and Google give
// the browser.
var chromiumNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// renderPDF prints the HTML to pdf with headless Chromium. htmlPath is the
// HTML written (empty: a temporary copy is printed). A Chromium that is
// missing or fails is an error naming it, after the HTML was written.
func (e *env) renderPDF(html []byte, htmlPath, pdf string, quiet bool) error {
	bin := ""
	for _, n := range chromiumNames {
		if p, err := exec.LookPath(n); err == nil {
			bin = p
			break
		}
	}
	where := "no HTML was asked for (-o)"
	if htmlPath != "" {
		where = "the HTML report is written: " + escapeName(htmlPath)
	}
	if bin == "" {
		fmt.Fprintf(e.stderr, "amber: the PDF was not made: no headless Chromium found (%s on PATH); %s\n", strings.Join(chromiumNames, ", "), where)
		return fmt.Errorf("--pdf %s: %w", pdf, errNoChromium)
	}
	tmp, err := os.MkdirTemp("", "amber-report")
	if err != nil {
		return fmt.Errorf("--pdf: %w", err)
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "report.html")
	if err := os.WriteFile(src, html, 0o600); err != nil {
		return fmt.Errorf("--pdf: %w", err)
	}
	out := filepath.Join(tmp, "report.pdf")
	// A profile of its own (never the user's), no first-run or background
	// traffic; the page itself fetches nothing (its CSP forbids it).
	args := []string{"--headless", "--disable-gpu", "--user-data-dir=" + filepath.Join(tmp, "profile"), "--no-first-run",
		"--disable-extensions", "--disable-background-networking", "--disable-sync", "--no-pdf-header-footer",
		"--print-to-pdf=" + out, "file://" + src}
	if os.Geteuid() == 0 {
		args = append([]string{"--no-sandbox"}, args...) // Chromium refuses to run as root with its sandbox
	}
	if isTerminal(e.stderr) {
		fmt.Fprintf(e.stderr, "rendering the PDF with %s ...\n", bin)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	cmd.Env = append(os.Environ(), "HOME="+tmp) // Chromium writes under $HOME too
	runErr := cmd.Run()
	b, readErr := os.ReadFile(out)
	if runErr != nil || readErr != nil || !bytes.HasPrefix(b, []byte("%PDF-")) {
		if e.ctx.Err() != nil {
			return e.ctx.Err()
		}
		msg := lastLines(stderr.String(), 5)
		fmt.Fprintf(e.stderr, "amber: the PDF was not made: %s failed (%v); %s\n%s\n", bin, firstErr(runErr, readErr, errors.New("no PDF written")), where, escapeName(msg))
		return fmt.Errorf("--pdf %s: %w", pdf, errNoChromium)
	}
	if err := writeFileAtomic(pdf, b); err != nil {
		return fmt.Errorf("writing the PDF: %w", err)
	}
	if !quiet {
		fmt.Fprintf(e.stdout, "pdf %s: %d bytes, sha256 %s\n", escapeName(pdf), len(b), hashing.Sum(b).Hex())
	}
	return nil
}

// errNoChromium: the PDF could not be made (exit 1, the HTML written).
var errNoChromium = errors.New("the PDF was not made: headless Chromium missing or failing")

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
