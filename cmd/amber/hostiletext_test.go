package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/manifest"
)

// Evidence strings that act on a terminal or forge lines when printed raw.
const (
	hTitle   = "\x1b]0;pwned\a"                              // OSC: retitles the terminal
	hUser    = "nobody\x1b[6Droot"                           // cursor left x6: shows "root"
	hForge   = "v1\nimages/forged  image sha256:0000 refs -" // a newline forging an ls line
	hCR      = "ok\rFORGED"                                  // carriage return: overwrites
	hC1      = "/srv\u009b2J"                                // C1 CSI: clears the screen
	hBidi    = "\u202etoor"                                  // right-to-left override
	hDel     = "SIG\x7fTERM"                                 // DEL
	hComment = "innocent\nUSER root"                         // a comment that forges an instruction
	hRun     = "/bin/sh -c echo hi\nUSER root"               // a command that does too
)

// checkTerminalSafe fails when out holds a byte a terminal acts on (a C0
// control other than the newline ending each line, DEL), a C1 control, a
// bidi override, isolate or mark, or is not UTF-8.
func checkTerminalSafe(t *testing.T, what, out string) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Errorf("%s: output is not UTF-8:\n%q", what, out)
	}
	for i, r := range out {
		bad := r < 0x20 && r != '\n' || r == 0x7f || r >= 0x80 && r <= 0x9f ||
			r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 || r == 0x200e || r == 0x200f || r == 0x061c
		if bad {
			t.Errorf("%s: raw %U at byte %d: %q", what, r, i, out[max(0, i-40):min(len(out), i+40)])
			return
		}
	}
}

// hostileSources writes a docker-save tarball and an OCI layout whose
// tags, config, history, media types and titles are hostile.
func hostileSources(t *testing.T, dir string) (save, layout string) {
	t.Helper()
	img := fixture.Image{
		Tags:   []string{"evil:" + hTitle + hForge},
		Layers: [][]byte{fixture.Layer(fixture.File("etc/motd", "hi\n")), fixture.Layer(fixture.File("srv/x", "x\n"), fixture.File("etc/motd", "hi"+hTitle+"\n"))},
		Runtime: map[string]any{
			"User": hUser, "WorkingDir": hC1, "StopSignal": hDel,
			"Env":        []string{"TITLE=" + hTitle, "CR=" + hCR},
			"Labels":     map[string]string{"bidi" + hBidi: "v" + hForge},
			"OnBuild":    []string{"RUN " + hComment},
			"Entrypoint": []string{"/bin/sh" + hBidi, "-c"},
		},
		ConfigFields: map[string]any{
			"author": "evil" + hTitle,
			"history": []map[string]any{
				{"created": fixture.Epoch, "created_by": "/bin/sh -c #(nop) ADD file:base in /"},
				{"created": fixture.Epoch, "created_by": "", "comment": hComment, "empty_layer": true},
				{"created": fixture.Epoch, "created_by": hRun},
			},
		},
	}
	save = filepath.Join(dir, "hostile.tar")
	if err := fixture.DockerSave(save, img); err != nil {
		t.Fatal(err)
	}
	l := fixture.NewLayout()
	m := l.Image(fixture.Image{Layers: [][]byte{fixture.Layer(fixture.File("a", "a\n"))}})
	empty := l.Blob("application/vnd.oci.empty.v1+json", []byte("{}"))
	art := l.Manifest(fixture.Desc{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "artifactType": "application/x" + hTitle,
		"config": empty, "layers": []fixture.Desc{l.Blob("application/x"+hBidi, []byte("blob")).With("annotations", map[string]string{"org.opencontainers.image.title": "t" + hCR})}})
	odd := l.Blob("application/vnd.odd"+hTitle+hForge, []byte(`{}`))
	layout = filepath.Join(dir, "layout")
	if err := l.Write(layout, m.With("annotations", map[string]string{"org.opencontainers.image.ref.name": "oci" + hForge}), art, odd); err != nil {
		t.Fatal(err)
	}
	return save, layout
}

// TestHostileStringsEscaped: evidence strings that would retitle the
// terminal, move its cursor, forge a line or reverse text reach no text
// output raw (every byte of stdout is scanned): ls, inspect, history,
// layers, dockerfile, capture, log, verify and errors show them escaped
// quoted with escapes ("\x1b", "\n", "\u202e"), and the --json outputs keep
// them exact.
func TestHostileStringsEscaped(t *testing.T) {
	dir := t.TempDir()
	save, layout := hostileSources(t, dir)
	arch := filepath.Join(dir, "case.tar.zst")
	capOut := mustAmber(t, "capture", "image", save, layout, "-o", arch, "--notes", "seized"+hCR)
	checkTerminalSafe(t, "capture", capOut)
	for _, want := range []string{`not-captured: "index.json lists`, `application/vnd.odd\x1b]0;pwned\av1\nimages/forged`, `application/x\x1b]0;pwned\a`} {
		if !strings.Contains(capOut, want) {
			t.Errorf("capture output lacks %q:\n%s", want, capOut)
		}
	}

	// A custody event appended by a hostile (or careless) party.
	a := fixture.Open(t, arch)
	ev := manifest.Event{Time: time.Now(), Actor: hUser, Host: "host" + hForge, Action: "copied" + hBidi, Details: map[string]string{"to" + hCR: hTitle}}
	if err := manifest.AppendCustody(arch+".custody.jsonl", a.Manifest.Custody.Head, a.Manifest.Custody.Events, ev); err != nil {
		t.Fatal(err)
	}

	var sum struct {
		Case      manifest.Case
		Artifacts []manifest.Artifact
	}
	if err := json.Unmarshal([]byte(mustAmber(t, "ls", "--json", arch)), &sum); err != nil {
		t.Fatal(err)
	}
	img := ""
	for _, art := range sum.Artifacts {
		if art.Kind == manifest.KindImage && len(art.Refs) > 0 && art.Refs[0] == "evil:"+hTitle+hForge {
			img = "images/" + art.Name
		}
	}
	if img == "" || sum.Case.Notes != "seized"+hCR {
		t.Fatalf("ls --json lost the exact refs or notes: %+v", sum)
	}

	text := map[string][]string{
		"ls": {`refs "evil:\x1b]0;pwned\av1\nimages/forged  image sha256:0000 refs -"`, `refs "ociv1\nimages/forged`, `type "application/x\x1b]0;pwned\a"`,
			`title "tok\rFORGED"`, `notes     "seizedok\rFORGED"`, `"application/x\u202etoor"`},
		"inspect": {`user        "nobody\x1b[6Droot"`, `  "TITLE=\x1b]0;pwned\a"`, `  "CR=ok\rFORGED"`, `  "bidi\u202etoor"="vv1\nimages/forged  image sha256:0000 refs -"`,
			`author      "evil\x1b]0;pwned\a"`, `workdir     "/srv\u009b2J"`, `stopsignal  "SIG\x7fTERM"`, `onbuild     "RUN innocent\nUSER root"`, `entrypoint  ["/bin/sh\u202etoor","-c"]`},
		"history":    {`"/bin/sh -c echo hi\nUSER root"`, `# "innocent\nUSER root"`},
		"layers":     {`LAYER 1  `, `"/bin/sh -c echo hi\nUSER root"`},
		"dockerfile": {`"no command recorded (comment: innocent\nUSER root)"`, `# (not recoverable) "RUN echo hi\nUSER root"`},
		"log":        {`"nobody\x1b[6Droot"@"hostv1\nimages/forged  image sha256:0000 refs -"`, `"copied\u202etoor"`, `"took\rFORGED"="\x1b]0;pwned\a"`},
	}
	for cmd, wants := range text {
		args := []string{cmd, arch}
		if cmd != "ls" && cmd != "log" {
			args = append(args, img)
		}
		out := mustAmber(t, args...)
		checkTerminalSafe(t, cmd, out)
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Errorf("%s lacks %s:\n%s", cmd, w, out)
			}
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "images/forged  image") || strings.HasPrefix(line, "USER root") || strings.HasPrefix(line, "FORGED") {
				t.Errorf("%s: a forged line: %q", cmd, line)
			}
		}
	}

	// The --json outputs carry the exact strings.
	var in struct {
		User, Author, Workdir, Stopsignal string
		Env, Onbuild, Entrypoint          []string
		Labels                            map[string]string
	}
	if err := json.Unmarshal([]byte(mustAmber(t, "inspect", "--json", arch, img)), &in); err != nil {
		t.Fatal(err)
	}
	if in.User != hUser || in.Author != "evil"+hTitle || in.Workdir != hC1 || in.Stopsignal != hDel || in.Env[0] != "TITLE="+hTitle ||
		in.Onbuild[0] != "RUN "+hComment || in.Entrypoint[0] != "/bin/sh"+hBidi || in.Labels["bidi"+hBidi] != "v"+hForge {
		t.Errorf("inspect --json: %+v", in)
	}
	var hist []struct {
		CreatedBy string `json:"created_by"`
		Comment   string `json:"comment"`
	}
	if err := json.Unmarshal([]byte(mustAmber(t, "history", "--json", arch, img)), &hist); err != nil {
		t.Fatal(err)
	}
	if len(hist) != 3 || hist[1].Comment != hComment || hist[2].CreatedBy != hRun {
		t.Errorf("history --json: %+v", hist)
	}
	var lay []struct {
		CreatedBy string `json:"created_by"`
	}
	if err := json.Unmarshal([]byte(mustAmber(t, "layers", "--json", arch, img)), &lay); err != nil {
		t.Fatal(err)
	}
	if len(lay) != 2 || lay[1].CreatedBy != hRun {
		t.Errorf("layers --json: %+v", lay)
	}
	// A command holding a newline is not presented as recovered.
	var df []struct {
		Instruction string
		Recovered   bool
	}
	if err := json.Unmarshal([]byte(mustAmber(t, "dockerfile", "--json", arch, img)), &df); err != nil {
		t.Fatal(err)
	}
	if len(df) != 3 || df[2].Recovered || df[2].Instruction != "RUN echo hi\nUSER root" {
		t.Errorf("dockerfile --json: %+v", df)
	}
	var last struct{ Actor, Host, Action string }
	logJSON := strings.Split(strings.TrimSpace(mustAmber(t, "log", "--json", arch)), "\n")
	if err := json.Unmarshal([]byte(logJSON[len(logJSON)-1]), &last); err != nil || last.Actor != hUser || last.Host != "host"+hForge || last.Action != "copied"+hBidi {
		t.Errorf("log --json: %+v %v", last, err)
	}

	// A content diff of a file whose new version holds an escape sequence.
	diff := mustAmber(t, "diff", "--content", arch, img+"/stages/0", img+"/stages/1")
	checkTerminalSafe(t, "diff --content", diff)
	if !strings.Contains(diff, "C /etc/motd  [") || !strings.Contains(diff, "\n-hi\n+\"hi\\x1b]0;pwned\\a\"\n") {
		t.Errorf("diff --content:\n%s", diff)
	}

	// An error naming evidence (a view path of the image) is escaped too.
	r := amber(t, "cat", arch, img+"/rootfs/no"+hTitle)
	if r.code != exitNotFound {
		t.Errorf("cat of a missing path: exit %d", r.code)
	}
	checkTerminalSafe(t, "cat's error", r.stderr)
}

// TestSha256sumOnTerminal: ls --sha256sum writes GNU sha256sum's format
// to a file or pipe (sha256sum -c reads back names with control bytes),
// and on a terminal escapes what the format cannot (ESC, bidi) instead of
// sending it to the terminal.
func TestSha256sumOnTerminal(t *testing.T) {
	script := testenv.Tool(t, "script")
	dir := t.TempDir()
	names := []string{"esc" + hTitle, "bidi" + hBidi, "nl" + hForge[:3]}
	var entries []fixture.Entry
	for _, n := range names {
		entries = append(entries, fixture.File("d/"+n, n))
	}
	arch := fixture.Capture(t, dir, "names", fixture.Image{Tags: []string{"names:1"}, Layers: [][]byte{fixture.Layer(entries...)}})
	view := "images/names_1/rootfs/d"

	// To a file: sha256sum -c --strict checks the files as extracted.
	tree := filepath.Join(dir, "tree")
	for _, n := range names {
		os.MkdirAll(tree, 0o755)
		if err := os.WriteFile(filepath.Join(tree, n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sums := mustAmber(t, "ls", "--sha256sum", arch, view)
	os.WriteFile(filepath.Join(dir, "sums"), []byte(sums), 0o644)
	c := exec.Command("sha256sum", "-c", "--strict", filepath.Join(dir, "sums"))
	c.Dir = tree
	if out, err := c.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c: %v\n%s", err, out)
	}

	// On a terminal (script(1) gives amber a pseudo-terminal).
	out, err := exec.Command(script, "-qec", fmt.Sprintf("%s ls --sha256sum %s %s", amberBin, arch, view), "/dev/null").Output()
	if err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	tty := strings.ReplaceAll(string(out), "\r\n", "\n")
	checkTerminalSafe(t, "ls --sha256sum on a terminal", tty)
	for _, want := range []string{`  "esc\x1b]0;pwned\a"` + "\n", `  "bidi\u202etoor"` + "\n", `  "nlv1\n"` + "\n"} {
		if !strings.Contains(tty, want) {
			t.Errorf("ls --sha256sum on a terminal lacks %s:\n%s", want, tty)
		}
	}
}

// TestCaptureProgressEscapesComm: a container process that renamed itself
// (its comm) to an escape sequence and a carriage return is named escaped
// in capture's progress lines; the archive records the comm exact.
func TestCaptureProgressEscapesComm(t *testing.T) {
	testenv.Root(t)
	dockerImage(t)
	name := "amber-ctr-comm"
	exec.Command("docker", "rm", "-f", name).Run()
	// The shell writes its own comm, then waits: the comm stays.
	id := strings.TrimSpace(testenv.Run(t, "docker", "run", "-d", "--name", name, "amber-test:1", "sh", "-c",
		`printf 'a\rFORGED\033]0;t\a' > /proc/$$/comm; echo ready; while :; do sleep 3600; done`))
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", id).Run() })
	const comm = "a\rFORGED\x1b]0;t\a"
	for i := 0; ; i++ {
		if strings.Contains(testenv.Run(t, "docker", "logs", id), "ready") {
			break
		}
		if i == 100 {
			t.Fatal("the container did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	arch := filepath.Join(t.TempDir(), "c.tar.zst")
	r := amber(t, "capture", "container", name, "-o", arch)
	if r.code != 0 {
		t.Fatalf("capture: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	checkTerminalSafe(t, "capture's progress", r.stderr)
	checkTerminalSafe(t, "capture", r.stdout)
	if want := `amber: "memory: process `; !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, ` (a\rFORGED\x1b]0;t\a), `) {
		t.Errorf("progress lacks the escaped comm:\n%s", r.stderr)
	}
	var sum struct{ Artifacts []manifest.Artifact }
	if err := json.Unmarshal([]byte(mustAmber(t, "ls", "--json", arch)), &sum); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range sum.Artifacts {
		if a.Container != nil {
			for _, p := range a.Container.Processes {
				found = found || p.Comm == comm
			}
		}
	}
	if !found {
		t.Errorf("no process recorded with comm %q: %+v", comm, sum.Artifacts)
	}
}

// TestVerifyProblemsEscaped: verify names the files a damaged frame held;
// a hostile name among them is escaped in the FAIL line.
func TestVerifyProblemsEscaped(t *testing.T) {
	dir := t.TempDir()
	// Incompressible and over a frame: the damaged frame holds only it.
	rnd := make([]byte, 3<<20)
	rand.NewChaCha8([32]byte{1}).Read(rnd)
	body := string(rnd)
	arch := fixture.Capture(t, dir, "v", fixture.Image{Tags: []string{"v:1"},
		Layers: [][]byte{fixture.Layer(fixture.File("etc/x"+hTitle+hForge, body))}})
	a := fixture.Open(t, arch)
	lb, ok := a.Blob(manifest.BlobName(a.Manifest.Artifacts[0].Layers[0].Digest))
	if !ok {
		t.Fatal("no layer blob")
	}
	fr, _ := a.Table.EntryByDecompressedOffset(uint64(lb.Offset + lb.Size/2))
	b, err := os.ReadFile(arch)
	if err != nil {
		t.Fatal(err)
	}
	b[int64(fr.CompressedOffset)+int64(fr.CompressedSize)-5] ^= 0x01
	bad := filepath.Join(dir, "bad.tar.zst")
	if err := os.WriteFile(bad, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r := amber(t, "verify", "--no-log", bad)
	if r.code != exitTampered {
		t.Fatalf("verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	checkTerminalSafe(t, "verify", r.stdout)
	if !strings.Contains(r.stdout, `/etc/x\x1b]0;pwned\av1\nimages/forged`) {
		t.Errorf("verify does not name the file escaped:\n%s", r.stdout)
	}
}
