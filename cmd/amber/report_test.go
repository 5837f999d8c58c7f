package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/internal/textsafe"
	"github.com/amber-forensics/amber/manifest"
)

// Changed paths an attacker could leave in a container for the examiner's
// browser: markup, and a newline meant to forge a row.
const (
	reportScriptName  = `/srv/<script>alert(1)<\script>`
	reportNewlineName = "/srv/x\n<img src=x onerror=alert(2)>"
)

// chromium runs Debian's chromium headless (as root: no sandbox) with a
// profile of its own, and returns its stdout.
func chromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// The DOM as chromium serialized it, read with golang.org/x/net/html.
func domWalk(n *html.Node, fn func(*html.Node)) {
	fn(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		domWalk(c, fn)
	}
}

func domAttr(n *html.Node, k string) string {
	for _, a := range n.Attr {
		if a.Key == k {
			return a.Val
		}
	}
	return ""
}

func domText(n *html.Node) string {
	var b strings.Builder
	domWalk(n, func(x *html.Node) {
		if x.Type == html.TextNode {
			b.WriteString(x.Data)
		}
	})
	return b.String()
}

// domRow is a tr: its classes, data-* attributes and its cells' texts.
type domRow struct {
	class map[string]bool
	kind  string
	seq   string
	cells []string
}

func domRows(doc *html.Node, class string) []domRow {
	var out []domRow
	domWalk(doc, func(n *html.Node) {
		if n.Type != html.ElementNode || n.Data != "tr" {
			return
		}
		r := domRow{class: map[string]bool{}, kind: domAttr(n, "data-kind"), seq: domAttr(n, "data-seq")}
		for _, c := range strings.Fields(domAttr(n, "class")) {
			r.class[c] = true
		}
		if !r.class[class] {
			return
		}
		for td := n.FirstChild; td != nil; td = td.NextSibling {
			if td.Type == html.ElementNode && td.Data == "td" {
				r.cells = append(r.cells, domText(td))
			}
		}
		out = append(out, r)
	})
	return out
}

func domByID(doc *html.Node, id string) string {
	s := "\x00missing"
	domWalk(doc, func(n *html.Node) {
		if n.Type == html.ElementNode && domAttr(n, "id") == id {
			s = domText(n)
		}
	})
	return s
}

// squash drops all white space: pdftotext breaks long digests and lines
// where the page did.
func squash(s string) string { return strings.Join(strings.Fields(s), "") }

// TestReportInBrowser: the examiner's report of a changed, running
// container, opened in a real browser (Debian's chromium, headless), and
// its PDF read back with poppler: what it says is checked against amber's
// other commands (diff --json, log --json), the sidecar and the manifest.
func TestReportInBrowser(t *testing.T) {
	testenv.Root(t)
	chrome := testenv.Tool(t, "chromium")
	pdftotext := testenv.Tool(t, "pdftotext")
	pdftoppm := testenv.Tool(t, "pdftoppm")
	id := testContainer(t, "amber-report-a")
	testenv.Run(t, "docker", "exec", id, "sh", "-c", `printf h > "$0"; printf n > "$1"`, reportScriptName, reportNewlineName)
	dir := t.TempDir()
	arch := filepath.Join(dir, "case.tar.zst")
	mustAmber(t, "capture", "container", "amber-report-a", "-o", arch, "--case", "R-19", "--exhibit", "E-7", "--examiner", "E. Xaminer", "--notes", "report test")
	// Signed by an examiner's key made by openssl; the report checks the
	// signature as verify --key does. Its key ID: SHA-256 of the public
	// key's DER, computed by openssl and sha256sum, not by amber.
	key := filepath.Join(dir, "examiner.key")
	testenv.Run(t, "openssl", "genpkey", "-algorithm", "ed25519", "-out", key)
	mustAmber(t, "sign", arch, "--key", key)
	keyID := strings.Fields(string(testenv.Run(t, "sh", "-c", `openssl pkey -in "$0" -pubout -outform DER | sha256sum`, key)))[0]
	page, pdf := filepath.Join(dir, "case-report.html"), filepath.Join(dir, "case-report.pdf")
	r := amber(t, "report", arch, "-o", page, "--pdf", pdf, "--files", "--key", key)
	if r.code != 0 {
		t.Fatalf("report: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	doc, err := html.Parse(bytes.NewReader(chromium(t, chrome, "--dump-dom", "file://"+page)))
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"case-case": "R-19", "case-exhibit": "E-7", "case-examiner": "E. Xaminer", "case-notes": "report test", "verification-result": "intact"} {
		if got := domByID(doc, id); got != want {
			t.Errorf("#%s shows %q, want %q", id, got, want)
		}
	}
	side, err := os.ReadFile(arch + ".sha256")
	if err != nil {
		t.Fatal(err)
	}
	sum := strings.Fields(string(side))[0]
	if sum != sha256File(t, arch) {
		t.Fatalf("the sidecar's %s is not sha256 of the archive", sum)
	}
	n := 0
	for _, h := range domRows(doc, "hash") {
		if h.cells[0] == "SHA-256" && h.cells[1] == sum {
			n++
		}
	}
	if n < 2 {
		t.Errorf("the SHA-256 %s appears in %d hash rows (computed now, and the sidecar's)", sum, n)
	}

	// Custody: every event amber log lists (the report's own verification
	// included), by seq and action.
	events := map[string]string{}
	for _, ev := range domRows(doc, "event") {
		events[ev.seq] = ev.cells[3]
	}
	logged := 0
	sc := bufio.NewScanner(strings.NewReader(mustAmber(t, "log", "--json", arch)))
	for sc.Scan() {
		var ev manifest.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		logged++
		if got, ok := events[strconv.Itoa(ev.Seq)]; !ok || got != ev.Action {
			t.Errorf("custody event %d (%s) shown as %q", ev.Seq, ev.Action, got)
		}
	}
	if logged == 0 || len(events) != logged {
		t.Errorf("%d custody rows, amber log lists %d", len(events), logged)
	}

	// Every change amber diff lists, with its kind; the content-only one
	// marked; the hostile names as text.
	shown := map[string]domRow{}
	for _, c := range domRows(doc, "change") {
		shown[c.kind+" "+c.cells[1]] = c
	}
	var want []string
	for _, line := range strings.Split(strings.TrimSpace(mustAmber(t, "diff", "--json", arch, "containers/amber-report-a")), "\n") {
		var ch struct {
			Kind       string   `json:"kind"`
			Path       string   `json:"path"`
			PathBase64 string   `json:"path_base64"`
			What       []string `json:"what"`
		}
		if err := json.Unmarshal([]byte(line), &ch); err != nil {
			t.Fatal(err)
		}
		if ch.Kind == "!" {
			continue // a finding, not a change: the anomalies below
		}
		if ch.PathBase64 != "" {
			b, _ := base64.StdEncoding.DecodeString(ch.PathBase64)
			ch.Path = string(b)
		}
		key := ch.Kind + " " + textsafe.Escape(ch.Path)
		want = append(want, key)
		row, ok := shown[key]
		if !ok {
			t.Errorf("change %q not in the report", key)
			continue
		}
		if only := len(ch.What) == 1 && ch.What[0] == "content"; row.class["content-only"] != only {
			t.Errorf("change %q: content-only marked %v, diff says what=%v", key, row.class["content-only"], ch.What)
		}
	}
	if len(shown) != len(want) {
		t.Errorf("%d change rows, amber diff lists %d", len(shown), len(want))
	}
	for _, p := range []string{"C " + contentOnly, "A " + textsafe.Escape(reportScriptName), "A " + textsafe.Escape(reportNewlineName)} {
		if _, ok := shown[p]; !ok {
			t.Errorf("%q not among the changes shown", p)
		}
	}
	if !shown["C "+contentOnly].class["content-only"] {
		t.Errorf("%s is not highlighted as content-only", contentOnly)
	}
	domWalk(doc, func(n *html.Node) {
		if n.Type == html.ElementNode && (n.Data == "script" || n.Data == "img") {
			t.Errorf("a <%s> element in the DOM: a name of the evidence became markup", n.Data)
		}
	})

	// Engine disagreements, memory dumps, the signature: from the manifest.
	m := readManifest(t, arch)
	ca, _ := m.Artifact(manifest.KindContainer, "amber-report-a")
	dis := map[string]bool{}
	for _, d := range domRows(doc, "disagreement") {
		dis[d.cells[1]] = true
	}
	for _, an := range m.Anomalies {
		if an.Kind == "engine-change-list" && an.Path != "" && !dis[textsafe.Escape(an.Path)] {
			t.Errorf("engine disagreement on %q not shown", an.Path)
		}
	}
	mem := domRows(doc, "memory")
	if len(mem) != len(ca.Container.Processes) || len(mem) == 0 {
		t.Errorf("%d memory rows, %d processes dumped", len(mem), len(ca.Container.Processes))
	}
	for _, mb := range ca.Container.Members {
		if strings.HasSuffix(mb.Path, "/core") && !strings.Contains(fmtRows(mem), mb.SHA256.String()) {
			t.Errorf("core %s (%s) not shown", mb.Path, mb.SHA256)
		}
	}
	if s := domRows(doc, "signature"); len(s) != 1 || s[0].cells[0] != keyID || !strings.Contains(s[0].cells[4], "valid") || strings.Contains(s[0].cells[4], "INVALID") || s[0].cells[2] != "E. Xaminer" {
		t.Errorf("signature rows: %+v", s)
	}
	if f := domRows(doc, "file"); len(f) < ca.Files {
		t.Errorf("--files: %d rows, the container's layers hold %d files", len(f), ca.Files)
	}

	// The page as a person sees it: a screenshot that is not blank.
	shot := filepath.Join(dir, "shot.png")
	chromium(t, chrome, "--screenshot="+shot, "--window-size=1280,2000", "file://"+page)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	b, dark := img.Bounds(), 0
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			if r, g, bl, _ := img.At(x, y).RGBA(); r+g+bl < 3*0x8000 {
				dark++
			}
		}
	}
	if b.Dx() != 1280 || dark < 2000 {
		t.Errorf("screenshot %v with %d dark pixels sampled: blank?", b, dark)
	}

	// The PDF: the same key text, and pages that render.
	text := squash(testenv.Run(t, pdftotext, pdf, "-"))
	for _, s := range []string{"R-19", "E-7", "E. Xaminer", sum, textsafe.Escape(reportScriptName), "acquisition-started", "sealed", "verified", contentOnly} {
		if !strings.Contains(text, squash(s)) {
			t.Errorf("pdftotext of the PDF lacks %q", s)
		}
	}
	testenv.Run(t, pdftoppm, "-png", "-r", "40", "-l", "3", pdf, filepath.Join(dir, "page"))
	pages, _ := filepath.Glob(filepath.Join(dir, "page-*.png"))
	if len(pages) < 1 {
		t.Errorf("pdftoppm made no page")
	}
	for _, p := range pages {
		if st, err := os.Stat(p); err != nil || st.Size() < 1000 {
			t.Errorf("page %s: %v", p, err)
		}
	}
}

func fmtRows(rs []domRow) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(strings.Join(r.cells, "|"))
		b.WriteByte('\n')
	}
	return b.String()
}

// TestReportWithoutChromium: no browser on PATH: the HTML is written all
// the same, amber says the PDF was not made, and exits 1. --json gives the
// model with the sidecar's hash.
func TestReportWithoutChromium(t *testing.T) {
	dir := t.TempDir()
	arch := fixture.Capture(t, dir, "case", fixture.Webapp())
	page, pdf := filepath.Join(dir, "r.html"), filepath.Join(dir, "r.pdf")
	cmd := exec.Command(amberBin, "report", arch, "-o", page, "--pdf", pdf)
	cmd.Env = append(os.Environ(), "PATH="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("report --pdf without chromium: %v, want exit 1", err)
	}
	if !strings.Contains(stderr.String(), "the PDF was not made") || !strings.Contains(stderr.String(), "r.html") {
		t.Errorf("stderr: %s", stderr.String())
	}
	if st, err := os.Stat(page); err != nil || st.Size() < 1000 {
		t.Errorf("the HTML was not written: %v", err)
	}
	if _, err := os.Stat(pdf); !os.IsNotExist(err) {
		t.Errorf("a PDF exists: %v", err)
	}
	var model struct {
		Case    manifest.Case
		Archive struct {
			Hashes []struct{ Algorithm, Value, Source string }
		}
	}
	if err := json.Unmarshal([]byte(mustAmber(t, "report", "--json", "--no-log", arch)), &model); err != nil {
		t.Fatal(err)
	}
	if model.Case.Case != "TEST-1" || len(model.Archive.Hashes) < 2 || model.Archive.Hashes[1].Value != sha256File(t, arch) {
		t.Errorf("report --json: %+v", model)
	}
}

// TestReportTampered: an archive that fails verification still gets its
// report, which says so first and names the failure; exit 3.
func TestReportTampered(t *testing.T) {
	dir := t.TempDir()
	arch := fixture.Capture(t, dir, "case", fixture.Webapp())
	bad := strings.Repeat("0", 64) + "  case.tar.zst\n"
	if err := os.WriteFile(arch+".sha256", []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(dir, "r.html")
	r := amber(t, "report", arch, "-o", page)
	if r.code != exitTampered || !strings.Contains(r.stderr, "each named in the report") {
		t.Errorf("report of a tampered archive: exit %d, want %d\n%s", r.code, exitTampered, r.stderr)
	}
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if got := domByID(doc, "verification-result"); !strings.HasPrefix(got, "FAILED") {
		t.Errorf("verification result %q", got)
	}
	if p := domRows(doc, "problem"); len(p) != 1 || !strings.Contains(p[0].cells[1], strings.Repeat("0", 64)) {
		t.Errorf("problem rows %+v", p)
	}
	differs := false
	for _, h := range domRows(doc, "hash") {
		differs = differs || h.cells[2] == "case.tar.zst.sha256" && strings.HasPrefix(h.cells[3], "DIFFERS")
	}
	if !differs {
		t.Errorf("the sidecar's hash is not shown as differing: %+v", domRows(doc, "hash"))
	}
}

// TestReportFromRegistry: the report of docker://REF is the local file's:
// the same hash, verification, artifacts and findings; its verification is
// recorded under the cache, as verify's is.
func TestReportFromRegistry(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	registryLogin(t, reg)
	dir := t.TempDir()
	arch := fixture.Capture(t, dir, "case", fixture.Webapp())
	pushTo(t, reg, arch, "case/e1:web")
	ref := "docker://" + reg.Host + "/case/e1:web"
	type model struct {
		Archive struct {
			Hashes []struct{ Value string }
		}
		Verification struct{ Result string }
		Artifacts    []struct {
			Name       string
			MerkleRoot string `json:"merkle_root"`
			Files      int
		}
		Findings json.RawMessage
	}
	read := func(args ...string) model {
		t.Helper()
		var m model
		if err := json.Unmarshal([]byte(mustAmber(t, append([]string{"report", "--json"}, args...)...)), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	local := read("--no-log", arch)
	cache := filepath.Join(dir, "cache")
	remote := read("--cache", cache, "-o", filepath.Join(dir, "r.html"), ref)
	sum := strings.Fields(readString(t, arch+".sha256"))[0]
	if len(remote.Archive.Hashes) == 0 || remote.Archive.Hashes[0].Value != sum || remote.Verification.Result != "intact" {
		t.Errorf("report of %s: hashes %+v, verification %q; the file's SHA-256 is %s", ref, remote.Archive.Hashes, remote.Verification.Result, sum)
	}
	la, _ := json.Marshal(local.Artifacts)
	ra, _ := json.Marshal(remote.Artifacts)
	if string(la) != string(ra) || string(local.Findings) != string(remote.Findings) {
		t.Errorf("artifacts or findings differ:\nlocal  %s\nremote %s", la, ra)
	}
	logs, _ := filepath.Glob(filepath.Join(cache, "custody", "*.custody.jsonl"))
	if len(logs) != 1 || !strings.Contains(readString(t, logs[0]), `"for":"amber report"`) {
		t.Errorf("no verified event of the report under the cache: %v", logs)
	}
}
