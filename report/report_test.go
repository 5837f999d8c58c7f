package report_test

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/textsafe"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/report"
)

// Names an attacker could give files and build steps: markup meant for
// the examiner's browser, a newline meant to forge a row, bytes that are
// not UTF-8.
const (
	hostileFile    = "srv/<img src=x onerror=alert(1)>\n<script>alert(2)</script>.txt"
	nonUTF8File    = "srv/bad\xffname"
	hostileStep    = `/bin/sh -c echo "<script>alert(3)</script>" > /srv/x`
	passwdBody     = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/srv:/bin/sh\n"
	hostileContent = "<script>alert(4)</script>"
)

func hostileImage() fixture.Image {
	img := fixture.Webapp()
	img.Layers = append(img.Layers, fixture.Layer(fixture.File(hostileFile, hostileContent), fixture.File(nonUTF8File, "x")))
	img.History = append(img.History, hostileStep)
	return img
}

// build captures the hostile image and builds its report, with every file.
func build(t *testing.T) (string, *archive.Report, *report.Report, []byte) {
	t.Helper()
	arch := fixture.Capture(t, t.TempDir(), "case", hostileImage())
	vr, err := archive.Verify(arch, archive.VerifyOptions{})
	if err != nil || !vr.OK() {
		t.Fatalf("verify: %v %+v", err, vr)
	}
	a := fixture.Open(t, arch)
	at := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	sigs := []report.Signature{{KeyID: "<b>key</b>", Problem: "not checked"}, {KeyID: "k2", Checked: true, Valid: true, Timestamp: &at, TSA: "tsa.example"}}
	r, err := report.Build(report.Input{Archive: a, Name: arch, Sidecars: arch, Verification: vr, VerifiedAt: at, VerifySeconds: 0.5,
		Signatures: sigs, Files: true, Generated: at, GeneratedBy: "amber test"})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := report.WriteHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	return arch, vr, r, b.Bytes()
}

// node helpers over golang.org/x/net/html: the page as a browser parses it.
func walk(n *html.Node, fn func(*html.Node)) {
	fn(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, fn)
	}
}

func attr(n *html.Node, k string) string {
	for _, a := range n.Attr {
		if a.Key == k {
			return a.Val
		}
	}
	return ""
}

func hasClass(n *html.Node, c string) bool {
	for _, x := range strings.Fields(attr(n, "class")) {
		if x == c {
			return true
		}
	}
	return false
}

func text(n *html.Node) string {
	var b strings.Builder
	walk(n, func(x *html.Node) {
		if x.Type == html.TextNode {
			b.WriteString(x.Data)
		}
	})
	return b.String()
}

// rows returns the cells' texts of every tr of class c.
func rows(doc *html.Node, c string) [][]string {
	var out [][]string
	walk(doc, func(n *html.Node) {
		if n.Type != html.ElementNode || n.Data != "tr" || !hasClass(n, c) {
			return
		}
		var cells []string
		for td := n.FirstChild; td != nil; td = td.NextSibling {
			if td.Type == html.ElementNode && td.Data == "td" {
				cells = append(cells, text(td))
			}
		}
		out = append(out, cells)
	})
	return out
}

func byID(doc *html.Node, id string) string {
	s := "\x00missing"
	walk(doc, func(n *html.Node) {
		if n.Type == html.ElementNode && attr(n, "id") == id {
			s = text(n)
		}
	})
	return s
}

// TestReportHTML: what the page says, read back as a browser parses it,
// against independent figures: the sidecar's sum, sha256 of the file and
// of a file's known content, the custody counts of the verification.
func TestReportHTML(t *testing.T) {
	arch, vr, _, page := build(t)
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	if got := byID(doc, "case-case"); got != "TEST-1" {
		t.Errorf("case: %q", got)
	}
	if got := byID(doc, "case-examiner"); got != "tester" {
		t.Errorf("examiner: %q", got)
	}
	side, err := os.ReadFile(arch + ".sha256")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Fields(string(side))[0]
	b, _ := os.ReadFile(arch)
	if s := sha256.Sum256(b); hex.EncodeToString(s[:]) != want {
		t.Fatalf("the sidecar says %s; sha256 of the file is %x", want, s)
	}
	hashes := rows(doc, "hash")
	found := 0
	for _, h := range hashes {
		if h[0] == "SHA-256" && h[1] == want {
			found++
		}
		if h[1] != want {
			t.Errorf("a hash row shows %q, the file's SHA-256 is %s", h, want)
		}
	}
	if found < 2 { // computed now, and the sidecar's
		t.Errorf("SHA-256 %s shown %d times: %q", want, found, hashes)
	}
	if ev := rows(doc, "event"); len(ev) != vr.SealedEvents+vr.SidecarEvents || len(ev) == 0 {
		t.Errorf("%d custody rows, the verification counted %d+%d", len(ev), vr.SealedEvents, vr.SidecarEvents)
	}
	if got := byID(doc, "verification-result"); got != "intact" {
		t.Errorf("verification result %q", got)
	}
	// Every file, its hash from the index; one known by its content.
	sum := sha256.Sum256([]byte(passwdBody))
	files := rows(doc, "file")
	var seen []string
	for _, f := range files {
		seen = append(seen, f[0])
		if f[0] == "/etc/passwd" && f[3] != hex.EncodeToString(sum[:]) {
			t.Errorf("/etc/passwd shown with %q, its content's SHA-256 is %x", f[3], sum)
		}
	}
	for _, p := range []string{"/etc/passwd", "/usr/bin/app", "/srv/.aws/credentials", "/srv/.wh..aws", textsafe.Escape("/" + hostileFile), textsafe.Escape("/" + nonUTF8File)} {
		if !strings.Contains("\n"+strings.Join(seen, "\n")+"\n", "\n"+p+"\n") {
			t.Errorf("file %q not listed in --files: %q", p, seen)
		}
	}
	m := vr.Manifest
	total := 0
	for _, l := range m.Artifacts[0].Layers {
		total += l.Files
	}
	if len(files) < total {
		t.Errorf("%d file rows; the manifest counts %d files in the layers", len(files), total)
	}
	checkNoMarkup(t, doc)
	// The hostile step is the created-by of the last layer, as text.
	layers := rows(doc, "layer")
	if len(layers) != len(m.Artifacts[0].Layers) || !strings.Contains(layers[len(layers)-1][5], hostileStep) {
		t.Errorf("layer rows %q lack the step %q", layers, hostileStep)
	}
	sig := rows(doc, "signature")
	// Key ID, signer, examiner, algorithm, result, timestamp, TSA.
	if len(sig) != 2 || sig[0][0] != "<b>key</b>" || !strings.Contains(sig[0][4], "not checked") ||
		sig[1][4] != "valid" || sig[1][5] != "2026-12-02T08:00:00Z" || sig[1][6] != "tsa.example" {
		t.Errorf("signature rows: %q", sig)
	}
}

// checkNoMarkup fails when evidence became markup: the page itself has no
// script, image, or event handler, so any is injected.
func checkNoMarkup(t *testing.T, doc *html.Node) {
	t.Helper()
	walk(doc, func(n *html.Node) {
		if n.Type != html.ElementNode {
			return
		}
		if n.Data == "script" || n.Data == "img" || n.Data == "iframe" || n.Data == "link" {
			t.Errorf("a <%s> element in the report: evidence became markup", n.Data)
		}
		for _, a := range n.Attr {
			if strings.HasPrefix(a.Key, "on") || strings.Contains(a.Val, "javascript:") {
				t.Errorf("<%s %s=%q> in the report", n.Data, a.Key, a.Val)
			}
		}
	})
}

// TestReportJSON: the model is the data: hostile names kept exactly (and
// as base64 when not UTF-8), the same hashes as the page.
func TestReportJSON(t *testing.T) {
	_, vr, r, _ := build(t)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Archive struct {
			Hashes []struct{ Algorithm, Value string }
		}
		Files []struct {
			Files []struct {
				Path       string
				PathBase64 string `json:"path_base64"`
			}
		}
		Verification struct{ Result string }
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Archive.Hashes) == 0 || back.Archive.Hashes[0].Value != vr.SHA256.Hex() || back.Verification.Result != "intact" {
		t.Errorf("JSON hashes %+v, result %q; verify computed %s", back.Archive.Hashes, back.Verification.Result, vr.SHA256.Hex())
	}
	var hostile, raw bool
	for _, l := range back.Files {
		for _, f := range l.Files {
			hostile = hostile || f.Path == "/"+hostileFile
			if f.PathBase64 != "" {
				p, _ := base64.StdEncoding.DecodeString(f.PathBase64)
				raw = raw || string(p) == "/"+nonUTF8File
			}
		}
	}
	if !hostile || !raw {
		t.Errorf("JSON lacks the hostile name exactly (%v) or the non-UTF-8 one as base64 (%v)", hostile, raw)
	}
}

// TestReportFailures: a verification that failed is said first, and each
// failure is named, escaped.
func TestReportFailures(t *testing.T) {
	arch := fixture.Capture(t, t.TempDir(), "case", hostileImage())
	vr, err := archive.Verify(arch, archive.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vr.Problems = append(vr.Problems, manifest.Problem{Where: "layer 3 " + hostileFile, Detail: "content SHA-256 differs"})
	r, err := report.Build(report.Input{Archive: fixture.Open(t, arch), Name: arch, Sidecars: arch, Verification: vr, VerifiedAt: time.Now(), Generated: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := report.WriteHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(&b)
	if err != nil {
		t.Fatal(err)
	}
	if got := byID(doc, "verification-result"); got != "FAILED (1 problems)" {
		t.Errorf("verification result %q", got)
	}
	p := rows(doc, "problem")
	if len(p) != 1 || p[0][0] != textsafe.Escape("layer 3 "+hostileFile) {
		t.Errorf("problem rows %q", p)
	}
	checkNoMarkup(t, doc)
}

// TestReportLegacyHashes: the frozen v1 archive has .md5 and .sha1
// sidecars: the report shows them, equal to md5 and sha1 of the file, as
// the verification run checked them; a wrong .md5 is shown as differing.
func TestReportLegacyHashes(t *testing.T) {
	dir := t.TempDir()
	arch := dir + "/webapp.tar.zst"
	for _, ext := range []string{"", ".sha256", ".md5", ".sha1", ".custody.jsonl"} {
		b, err := os.ReadFile("../testdata/v1/webapp.tar.zst" + ext)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(arch+ext, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	file, _ := os.ReadFile(arch)
	m5, s1 := md5.Sum(file), sha1.Sum(file)
	want := map[string]string{"MD5": hex.EncodeToString(m5[:]), "SHA-1": hex.EncodeToString(s1[:])}
	hashes := func() []report.Hash {
		vr, err := archive.Verify(arch, archive.VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := report.Build(report.Input{Archive: fixture.Open(t, arch), Name: arch, Sidecars: arch, Verification: vr, Generated: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return r.Archive.Hashes
	}
	seen := map[string]int{}
	for _, h := range hashes() {
		if w, ok := want[h.Algorithm]; ok {
			seen[h.Algorithm]++
			if h.Value != w || !h.OK || !strings.HasPrefix(h.Status, "matches the file") {
				t.Errorf("%s from %s: %s (%s), the file's is %s", h.Algorithm, h.Source, h.Value, h.Status, w)
			}
		}
	}
	if seen["MD5"] != 2 || seen["SHA-1"] != 2 { // the sidecar's and the sealed event's
		t.Errorf("legacy hashes shown: %v", seen)
	}
	if err := os.WriteFile(arch+".md5", []byte(strings.Repeat("0", 32)+"  webapp.tar.zst\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, h := range hashes() {
		if h.Source == "webapp.tar.zst.md5" && (h.OK || !strings.HasPrefix(h.Status, "DIFFERS")) {
			t.Errorf("a wrong .md5 shown as %q", h.Status)
		}
	}
}
