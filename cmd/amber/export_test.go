package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/amber-forensics/amber/export/dfxmltest"
	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/manifest"
)

// TestExportContainer: a real container (its image built on the engine,
// then changed: a name with a newline, '<' and '&', an escape sequence;
// its image has invalid UTF-8) captured with its image, exported as DFXML
// and CASE/UCO. The DFXML is valid against dfxml.xsd (xmllint); read back
// by Python's XML parser, each layer's (name, sha256) set is the set amber
// ls -r --json gives for the same tree, and a sample of the hashes is
// sha256sum of amber cat, as are the container's files outside its layers
// (inspect.json, changes.txt, logs, memory dumps); the archive's own digests are its
// sidecars'.
// The CASE/UCO JSON-LD, parsed by rdflib, has the acquisition, amber and
// its version as the instrument, the container and its image among its
// objects, and the sidecar's SHA-256.
func TestExportContainer(t *testing.T) {
	testenv.Root(t)
	py := testenv.RDFLib(t)
	id := testContainer(t, "amber-ctr-export")
	testenv.Run(t, "docker", "exec", id, "sh", "-c", `printf lt > '/srv/a<b&c>'; printf esc > "/srv/$(printf 'esc\033[31m')"`)
	dir := t.TempDir()
	arch := filepath.Join(dir, "case.tar.zst")
	mustAmber(t, "capture", "container", "amber-ctr-export", "-o", arch, "--case", "T-19", "--examiner", "E. <Xaminer>", "--md5", "--sha1")

	doc := filepath.Join(dir, "case.dfxml")
	mustAmber(t, "export", arch, "--format", "dfxml", "-o", doc)
	// stdout gives the same document (but for its start time).
	if r := amber(t, "export", arch, "--format", "dfxml"); r.code != 0 || !strings.Contains(r.stdout, "</dfxml>") {
		t.Fatalf("export to stdout: exit %d %s", r.code, r.stderr)
	}
	d := dfxmltest.Check(t, doc)
	labels := map[string]bool{}
	var sample []string // VIEWPATH sha256
	seen := map[string]bool{}
	for _, v := range d.Volumes {
		label := strings.Split(strings.TrimPrefix(v.Label, "OCI layer tar "), ", ")[0]
		labels[label] = true
		got := map[string]string{}
		for _, f := range v.Files {
			got[f.Path()] = f.SHA256
			seen[f.Path()] = true
			if f.SHA256 != "" && len(sample) < 8 && (len(sample) < 4 || (strings.ContainsAny(f.Path(), "<\n\x1b") || !utf8.ValidString(f.Path()))) {
				sample = append(sample, label+"/"+f.Path()+"\x00"+f.SHA256)
			}
		}
		want := map[string]string{}
		for _, l := range lsJSON(t, "-r", arch, label) {
			if l.Path == "." || slices.Contains(l.Flags, "implicit") {
				continue // the tree's root and implied directories: no tar entry
			}
			want[l.Path] = l.SHA256
		}
		if len(got) != len(want) || len(want) == 0 {
			t.Errorf("%s: %d files in the DFXML, amber ls -r --json lists %d", label, len(got), len(want))
		}
		for p, s := range want {
			if g, ok := got[p]; !ok || g != s {
				t.Errorf("%s/%q: DFXML sha256 %q (present %v), ls %q", label, p, g, ok, s)
			}
		}
	}
	if !labels["images/amber-test_1/layers/0"] || !labels["containers/amber-ctr-export/changes"] {
		t.Errorf("volumes %v: want the image's layers and the container's changes", labels)
	}
	for _, n := range []string{"srv/a<b&c>", "srv/new\nline2", "srv/esc\x1b[31m", "srv/bad\xffbyte", "srv/added.txt"} {
		if !seen[n] {
			t.Errorf("%q is in no volume", n)
		}
	}
	// Independent check of a sample of hashes: the bytes amber cat gives.
	for _, s := range sample {
		vp, want, _ := strings.Cut(s, "\x00")
		content := mustAmber(t, "cat", arch, vp)
		if h := sha256.Sum256([]byte(content)); hex.EncodeToString(h[:]) != want {
			t.Errorf("%q: DFXML sha256 %s, cat | sha256sum %x", vp, want, h)
		}
	}
	if len(sample) < 5 {
		t.Errorf("only %d files sampled", len(sample))
	}
	side := map[string]string{}
	for _, ext := range []string{"sha256", "md5", "sha1"} {
		b, err := os.ReadFile(arch + "." + ext)
		if err != nil {
			t.Fatal(err)
		}
		side[ext] = strings.Fields(string(b))[0]
	}
	n := len(d.Files)
	if n < 2 || d.Files[n-1].SHA256 != side["sha256"] || d.Files[n-1].SHA256 != sha256File(t, arch) {
		t.Fatalf("the archive's fileobject (last) %+v, sidecar %s", d.Files, side["sha256"])
	}
	// The container's files outside its layers, each as amber cat gives it.
	members := map[string]bool{}
	for _, f := range d.Files[:n-1] {
		members[f.Path()] = true
		content := mustAmber(t, "cat", arch, f.Path())
		if h := sha256.Sum256([]byte(content)); hex.EncodeToString(h[:]) != f.SHA256 {
			t.Errorf("%q: DFXML sha256 %s, cat | sha256sum %x", f.Path(), f.SHA256, h)
		}
	}
	memory := false
	for p := range members {
		memory = memory || strings.HasPrefix(p, "containers/amber-ctr-export/memory/") && strings.HasSuffix(p, "/core")
	}
	if !memory || !members["containers/amber-ctr-export/inspect.json"] || !members["containers/amber-ctr-export/changes.txt"] {
		t.Errorf("the container's members: %v", members)
	}

	// CASE/UCO, read by rdflib.
	r := amber(t, "export", arch, "--format", "case-uco")
	if r.code != 0 {
		t.Fatalf("export case-uco: exit %d\n%s", r.code, r.stderr)
	}
	cmd := exec.Command(py, "-c", exportSPARQL)
	cmd.Stdin = strings.NewReader(r.stdout)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("rdflib: %v\n%s", err, stderr.String())
	}
	want := "acquired|amber|" + amberVersion(t) + "|" + side["sha256"] + "|" + side["md5"] + "|" + side["sha1"] + "|E. <Xaminer>\n"
	if lines := strings.SplitAfter(string(got), "\n"); lines[0] != want || !strings.Contains(string(got), "sealed:") ||
		!strings.Contains(string(got), "containers/amber-ctr-export") || !strings.Contains(string(got), "images/amber-test_1") {
		t.Errorf("rdflib:\n%s\nwant first line:\n%s", got, want)
	}
}

// exportSPARQL prints "ACTION|TOOL|VERSION|SHA256|MD5|SHA1|PERFORMER" of
// the acquisition, then the other actions on the archive as NAME:ACTOR,
// then the names of the acquisition's objects (sources, what was taken).
const exportSPARQL = `
import sys, rdflib
g = rdflib.Graph()
g.parse(data=sys.stdin.read(), format="json-ld")
P = """PREFIX ci: <https://ontology.caseontology.org/case/investigation/>
PREFIX ua: <https://ontology.unifiedcyberontology.org/uco/action/>
PREFIX uc: <https://ontology.unifiedcyberontology.org/uco/core/>
PREFIX ut: <https://ontology.unifiedcyberontology.org/uco/tool/>
PREFIX uo: <https://ontology.unifiedcyberontology.org/uco/observable/>
PREFIX ty: <https://ontology.unifiedcyberontology.org/uco/types/>
"""
def h(m):
    return """?cd uo:hash ?h%s . ?h%s ty:hashMethod ?m%s ; ty:hashValue ?v%s . FILTER(str(?m%s) = "%s")""" % (m, m, m, m, m, m)
q = P + """SELECT ?name ?tname ?tver ?vSHA256 ?vMD5 ?vSHA1 ?who WHERE {
  ?act a ci:InvestigativeAction ; uc:name ?name ; ua:instrument ?tool ; ua:performer ?p ; ua:result ?f ; ua:startTime ?s ; ua:endTime ?e .
  ?p uc:name ?who . ?tool a ut:Tool ; uc:name ?tname ; ut:version ?tver .
  ?f a uo:File ; uc:hasFacet ?cd . ?cd a uo:ContentDataFacet .
  """ + h("SHA256") + h("MD5") + h("SHA1") + "}"
for r in g.query(q):
    print("|".join(str(x) for x in r))
ev = P + """SELECT ?name ?who WHERE { ?act a ci:InvestigativeAction ; uc:name ?name ; ua:performer ?p ; ua:object ?f . ?f a uo:File . ?p uc:name ?who . }"""
print(",".join(sorted("%s:%s" % (r[0], r[1]) for r in g.query(ev))))
obj = P + """SELECT ?n WHERE { ?act a ci:InvestigativeAction ; uc:name "acquired" ; ua:object ?o . ?o uc:name ?n . }"""
print("objects|" + ",".join(sorted(str(r[0]) for r in g.query(obj))))
`

// amberVersion is the version the test binary reports (amber --version).
func amberVersion(t *testing.T) string {
	t.Helper()
	f := strings.Fields(mustAmber(t, "--version"))
	return f[len(f)-1]
}

// TestExportRegistry: an archive read from a registry (docker://REF)
// exports the same volumes as the local file, and the registry's digest of
// the blob stands for the archive's SHA-256 (its sidecar's) in both
// formats.
func TestExportRegistry(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	registryLogin(t, reg)
	dir := t.TempDir()
	arch := fixture.Capture(t, dir, "small", fixture.Webapp())
	pushTo(t, reg, arch, "case/export:1")
	ref := "docker://" + reg.Host + "/case/export:1"
	sidecar := strings.Fields(readString(t, arch+".sha256"))[0]
	volumes := func(doc string) string {
		i, j := strings.Index(doc, "  <volume"), strings.LastIndex(doc, "</volume>")
		if i < 0 || j < i {
			t.Fatalf("no volumes in\n%s", doc)
		}
		return doc[i:j]
	}
	local := mustAmber(t, "export", arch, "--format", "dfxml")
	remote := mustAmber(t, "export", "--cache", filepath.Join(dir, "cache"), ref, "--format", "dfxml")
	if volumes(local) != volumes(remote) {
		t.Errorf("the registry's volumes differ from the file's:\n%s", lineDiff(volumes(local), volumes(remote)))
	}
	tail := remote[strings.LastIndex(remote, "</volume>"):]
	if !strings.Contains(tail, "<filename>"+ref+"</filename>") || !strings.Contains(tail, `<hashdigest type="sha256">`+sidecar+"</hashdigest>") {
		t.Errorf("the archive's fileobject, read from %s, is not its blob with the sidecar's SHA-256 %s:\n%s", ref, sidecar, tail)
	}
	if c := mustAmber(t, "export", "--cache", filepath.Join(dir, "cache"), ref, "--format", "case-uco"); !strings.Contains(c, `"@value": "`+sidecar+`"`) {
		t.Errorf("CASE/UCO of %s lacks the SHA-256 %s:\n%s", ref, sidecar, c)
	}
}

// TestExportDamaged: an archive whose file index is damaged (one bit of
// the frame holding it) fails the export with exit 3, and -o leaves
// nothing behind: no FILE, no partial one.
func TestExportDamaged(t *testing.T) {
	dir := t.TempDir()
	var entries []fixture.Entry
	for i := range 3000 {
		entries = append(entries, fixture.File(fmt.Sprintf("srv/f%04d", i), strconv.Itoa(i)))
	}
	arch := fixture.Capture(t, dir, "d", fixture.Image{Tags: []string{"d:1"}, Layers: [][]byte{fixture.Layer(entries...)}})
	a := fixture.Open(t, arch)
	ie, ok := a.Manifest.Entry(manifest.IndexName(a.Manifest.Artifacts[0].Layers[0].Digest))
	if !ok {
		t.Fatal("no index entry")
	}
	fr, _ := a.Table.EntryByDecompressedOffset(uint64(ie.Offset + ie.Size/2))
	b, err := os.ReadFile(arch)
	if err != nil {
		t.Fatal(err)
	}
	b[int64(fr.CompressedOffset)+int64(fr.CompressedSize)/2] ^= 0x01
	bad := filepath.Join(dir, "bad.tar.zst")
	if err := os.WriteFile(bad, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out", "bad.dfxml")
	os.Mkdir(filepath.Dir(out), 0o755)
	r := amber(t, "export", bad, "--format", "dfxml", "-o", out)
	if r.code != exitTampered || strings.Contains(r.stderr, "panic") {
		t.Fatalf("export of a damaged archive: exit %d, want %d\n%s", r.code, exitTampered, r.stderr)
	}
	if left, _ := os.ReadDir(filepath.Dir(out)); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
	if r := amber(t, "export", arch, "--format", "dfxml", "-o", out); r.code != 0 {
		t.Fatalf("export of the intact archive: exit %d\n%s", r.code, r.stderr)
	}
}
