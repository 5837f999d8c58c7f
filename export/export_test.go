package export_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/amber-forensics/amber/export"
	"github.com/amber-forensics/amber/export/dfxmltest"
	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/manifest"
)

// hostile are names XML 1.0 cannot carry as they are, or that break
// naive writers: markup, a newline, invalid UTF-8, C0 controls (ESC),
// DEL, a backslash next to what looks like amber's own escape, TAB and
// CR (which XML would normalise), the non-characters U+FFFE/U+FFFF.
var hostile = []string{
	"srv/a<b&c>\"q'", "srv/new\nline", "srv/bad\xffbyte", "srv/ctl\x01\x1b[31m\x7f", `srv/back\slash\x41`,
	"srv/tab\tcr\r", "srv/\uFFFE\uFFFF", "srv/ok-ünï€", "srv/trunc\xe2\x82",
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func hostileArchive(t *testing.T) (string, [][]fixture.Entry) {
	l0 := []fixture.Entry{fixture.Dir("etc/"), fixture.File("etc/passwd", "root:x:0:0\n"), fixture.Hardlink("etc/hard", "etc/passwd"),
		fixture.Symlink("etc/link<&>", "../tar\x01get\xff")}
	for i, n := range hostile {
		l0 = append(l0, fixture.File(n, "content "+strings.Repeat("x", i)))
	}
	l1 := []fixture.Entry{fixture.Whiteout("srv", "doomed"), fixture.File("srv/added", "added\n")}
	arch := fixture.Capture(t, t.TempDir(), "hostile", fixture.Image{Tags: []string{"hostile:1"}, Layers: [][]byte{fixture.Layer(l0...), fixture.Layer(l1...)}})
	return arch, [][]fixture.Entry{l0, l1}
}

// TestDFXMLSchemaAndFiles: the DFXML of an archive whose names are hostile
// is valid against dfxml.xsd, and holds, per layer, exactly the layer's
// tar entries (names byte for byte, after undoing the documented escape)
// with the SHA-256 of what the test put in them.
func TestDFXMLSchemaAndFiles(t *testing.T) {
	arch, layers := hostileArchive(t)
	a := fixture.Open(t, arch)
	doc := filepath.Join(t.TempDir(), "out.dfxml")
	f, err := os.Create(doc)
	if err != nil {
		t.Fatal(err)
	}
	opts := export.Options{Tool: manifest.Tool{Name: "amber", Version: "test"}, CommandLine: []string{"amber", "export", "bad\x02arg<"},
		Host: "host\x1b", Name: arch + "\xff", SHA256: sum("whatever")}
	if err := export.WriteDFXML(f, a, opts); err != nil {
		t.Fatal(err)
	}
	f.Close()
	d := dfxmltest.Check(t, doc)
	if len(d.Volumes) != len(layers) {
		t.Fatalf("%d volumes, want %d", len(d.Volumes), len(layers))
	}
	for i, entries := range layers {
		want := map[string]string{}
		for _, e := range entries {
			name := strings.TrimSuffix(e.Name, "/")
			switch e.Type {
			case 0:
				want[name] = "r " + sum(e.Body)
			case '1': // a hard link: its target's content
				want[name] = "r " + sum("root:x:0:0\n")
			case '2':
				want[name] = "l "
			case '5':
				want[name] = "d "
			}
			if strings.Contains(name, ".wh.") {
				want[name] = "w " + sum("")
			}
		}
		got := map[string]string{}
		for _, f := range d.Volumes[i].Files {
			got[f.Path()] = f.Type + " " + f.SHA256
			if f.Type == "l" {
				if l, _ := base64.StdEncoding.DecodeString(f.LinkB64); string(l) != "../tar\x01get\xff" {
					t.Errorf("link target %q", l)
				}
			}
		}
		if !equal(want, got) {
			t.Errorf("volume %d (%s):\n got %q\nwant %q", i, d.Volumes[i].Label, got, want)
		}
		if l := a.Manifest.Artifacts[0].Layers[i].Digest.Hex(); d.Volumes[i].Digest != l || !strings.Contains(d.Volumes[i].Label, "images/hostile_1/layers/") {
			t.Errorf("volume %d: digest %s label %q, want layer %s", i, d.Volumes[i].Digest, d.Volumes[i].Label, l)
		}
	}
	if len(d.Files) != 1 || d.Files[0].Path() != arch+"\xff" || d.Files[0].SHA256 != sum("whatever") {
		t.Errorf("the archive's fileobject: %+v", d.Files)
	}
}

func equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestEscapeRoundTrip(t *testing.T) {
	for _, n := range append(hostile, "", `\`, `\\x`, `\x4`, "plain") {
		if got := export.Unescape(export.Escape(n)); got != n {
			t.Errorf("Unescape(Escape(%q)) = %q", n, got)
		}
	}
}

// TestCASE parses the CASE/UCO export with rdflib and asks it, in SPARQL,
// for the acquisition, its tool's name and version, the archive's hashes
// and the custody events.
func TestCASE(t *testing.T) {
	py := testenv.RDFLib(t)
	arch, _ := hostileArchive(t)
	a := fixture.Open(t, arch)
	b, err := os.ReadFile(arch)
	if err != nil {
		t.Fatal(err)
	}
	fileSum := sha256.Sum256(b)
	var buf bytes.Buffer
	opts := export.Options{Name: arch, Size: int64(len(b)), SHA256: hex.EncodeToString(fileSum[:]), MD5: strings.Repeat("ab", 16),
		Custody: []manifest.Event{{Seq: 0, Action: "sealed", Actor: "tester", Host: "h"}, {Seq: 1, Action: "verified", Actor: "bad\xffactor", Host: "h"}}, Sealed: 1}
	if err := export.WriteCASE(&buf, a, opts); err != nil {
		t.Fatal(err)
	}
	out := runSPARQL(t, py, buf.Bytes())
	want := "acquired|amber|test|" + hex.EncodeToString(fileSum[:]) + "|" + strings.Repeat("ab", 16) + "|tester\n" +
		"events|sealed:tester,verified:bad\\xffactor\n"
	if out != want {
		t.Errorf("rdflib:\n%s\nwant:\n%s\nJSON-LD:\n%s", out, want, buf.String())
	}
}

// caseQuery prints "ACTION|TOOL|VERSION|SHA256|MD5|PERFORMER" for the
// acquisition and the custody actions' "name:performer", sorted.
const caseQuery = `
import sys, rdflib
g = rdflib.Graph()
g.parse(data=sys.stdin.read(), format="json-ld")
P = """PREFIX ci: <https://ontology.caseontology.org/case/investigation/>
PREFIX ua: <https://ontology.unifiedcyberontology.org/uco/action/>
PREFIX uc: <https://ontology.unifiedcyberontology.org/uco/core/>
PREFIX ut: <https://ontology.unifiedcyberontology.org/uco/tool/>
PREFIX uo: <https://ontology.unifiedcyberontology.org/uco/observable/>
PREFIX ty: <https://ontology.unifiedcyberontology.org/uco/types/>
PREFIX ui: <https://ontology.unifiedcyberontology.org/uco/identity/>
"""
acq = P + """SELECT ?name ?tname ?tver ?sha ?md5 ?who WHERE {
  ?act a ci:InvestigativeAction ; uc:name ?name ; ua:instrument ?tool ; ua:performer ?p ; ua:result ?f ;
       ua:startTime ?s ; ua:endTime ?e .
  ?p a ui:Person ; uc:name ?who .
  ?tool a ut:Tool ; uc:name ?tname ; ut:version ?tver .
  ?f a uo:File ; uc:hasFacet ?cd .
  ?cd a uo:ContentDataFacet ; uo:hash ?h1, ?h2 .
  ?h1 ty:hashMethod ?m1 ; ty:hashValue ?sha . FILTER(str(?m1) = "SHA256")
  ?h2 ty:hashMethod ?m2 ; ty:hashValue ?md5 . FILTER(str(?m2) = "MD5")
}"""
for r in g.query(acq):
    print("|".join(str(x) for x in r))
ev = P + """SELECT ?name ?who WHERE {
  ?act a ci:InvestigativeAction ; uc:name ?name ; ua:performer ?p ; ua:object ?f .
  ?f a uo:File . ?p uc:name ?who . FILTER(?name != "acquired")
}"""
print("events|" + ",".join(sorted("%s:%s" % (r[0], r[1]) for r in g.query(ev))))
`

func runSPARQL(t *testing.T, py string, doc []byte) string {
	t.Helper()
	cmd := exec.Command(py, "-c", caseQuery)
	cmd.Stdin = bytes.NewReader(doc)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("rdflib: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// TestDFXMLHostileTimes: a tar header's time is evidence too: one of year
// 0 (no xs:dateTime in XSD 1.0), before it, or past 9999 still gives a
// document valid against dfxml.xsd.
func TestDFXMLHostileTimes(t *testing.T) {
	var entries []fixture.Entry
	for i, at := range []time.Time{time.Date(0, 6, 1, 0, 0, 0, 0, time.UTC), time.Date(-40, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(12345, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)} {
		e := fixture.File(fmt.Sprintf("f%d", i), "x")
		e.ModTime = at
		entries = append(entries, e)
	}
	arch := fixture.Capture(t, t.TempDir(), "times", fixture.Image{Tags: []string{"times:1"}, Layers: [][]byte{fixture.Layer(entries...)}})
	a := fixture.Open(t, arch)
	doc := filepath.Join(t.TempDir(), "out.dfxml")
	f, err := os.Create(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := export.WriteDFXML(f, a, export.Options{Tool: manifest.Tool{Name: "amber", Version: "test"}, Name: arch}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b, _ := os.ReadFile(doc)
	got := regexp.MustCompile(`<mtime>([^<]*)</mtime>`).FindAllSubmatch(b, -1)
	// XSD 1.0 has no year 0: Go's year 0 is 1 BCE, -0001; year -40 is -0041.
	want := []string{"-0001-06-01T00:00:00Z", "-0041-01-01T00:00:00Z", "12345-01-01T00:00:00Z"}
	for i, w := range want {
		if i >= len(got) || string(got[i][1]) != w {
			t.Errorf("mtimes %q, want %q first", got, want)
			break
		}
	}
	dfxmltest.Check(t, doc)
}
