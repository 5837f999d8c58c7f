package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
)

// ttyTerm is a real terminal: a shell in a tmux server of the test's own
// (its socket in a temporary directory), 80x24.
type ttyTerm struct {
	t      *testing.T
	tmux   string
	socket string
}

const termPrompt = "amber-term$ "

func newTerm(t *testing.T) *ttyTerm {
	t.Helper()
	tm := &ttyTerm{t: t, tmux: testenv.Tool(t, "tmux"), socket: filepath.Join(t.TempDir(), "tmux.sock")}
	tm.run("new-session", "-d", "-x", "80", "-y", "24", "env", "PS1="+termPrompt, "PATH="+filepath.Dir(amberBin)+":"+os.Getenv("PATH"), "TERM=xterm-256color", "sh", "-i")
	t.Cleanup(func() { exec.Command(tm.tmux, "-S", tm.socket, "kill-server").Run() })
	tm.wait(strings.TrimSpace(termPrompt))
	return tm
}

func (tm *ttyTerm) run(args ...string) string {
	tm.t.Helper()
	out, err := exec.Command(tm.tmux, append([]string{"-S", tm.socket}, args...)...).CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// keys types keys (tmux key names: Tab, Enter, Space, Escape, or text).
func (tm *ttyTerm) keys(keys ...string) {
	tm.t.Helper()
	for _, k := range keys {
		tm.run("send-keys", "-t", "0", k)
		// One key at a time, as a person types: each is drawn before the
		// next arrives.
		time.Sleep(60 * time.Millisecond)
	}
}

func (tm *ttyTerm) typeText(s string) { tm.run("send-keys", "-t", "0", "-l", s) }

func (tm *ttyTerm) screen() string { return tm.run("capture-pane", "-p", "-t", "0") }

// wait polls the screen until each of want shows (10 s at most) and
// returns it.
func (tm *ttyTerm) wait(want ...string) string {
	tm.t.Helper()
	var s string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		s = tm.screen()
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(s, w)
		}
		if ok {
			return s
		}
	}
	tm.t.Fatalf("the terminal does not show %q:\n%s", want, s)
	return ""
}

// waitGone polls until s is off the screen.
func (tm *ttyTerm) waitGone(s string) string {
	tm.t.Helper()
	var scr string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if scr = tm.screen(); !strings.Contains(scr, s) {
			return scr
		}
	}
	tm.t.Fatalf("the terminal still shows %q:\n%s", s, scr)
	return ""
}

// lineWith is the screen line holding s.
func lineWith(scr, s string) string {
	for _, l := range strings.Split(scr, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// quit presses q and checks the terminal is as it was: the shell's prompt
// and the command line back (the alternate screen left), the cursor shown.
func (tm *ttyTerm) quit(cmdline string) {
	tm.t.Helper()
	tm.keys("q")
	tm.wait(strings.TrimSpace(termPrompt))
	// The command line as typed, its wrapped lines joined (-J).
	scr := tm.run("capture-pane", "-p", "-J", "-t", "0")
	if !strings.Contains(scr, termPrompt+cmdline) {
		tm.t.Errorf("after q the terminal does not show the command line as it was:\n%s", scr)
	}
	if !strings.HasSuffix(strings.TrimRight(scr, "\n "), strings.TrimSpace(termPrompt)) {
		tm.t.Errorf("after q the shell's prompt is not the last line:\n%s", scr)
	}
	if got := strings.TrimSpace(tm.run("display", "-p", "-t", "0", "#{alternate_on} #{cursor_flag}")); got != "0 1" {
		tm.t.Errorf("after q: alternate screen, cursor shown = %q; want 0 1 (the normal screen, the cursor visible)", got)
	}
}

// TestBrowseTerminal drives amber browse in a real terminal (tmux, 80x24)
// through the webapp incident: the layer list, the layer that adds the AWS
// credentials (marked +), their content, the later layer that removes them
// (marked -), folding, the diff of a modified file, filtering, hostile
// names shown escaped, and q leaving the terminal as it was.
func TestBrowseTerminal(t *testing.T) {
	dir := t.TempDir()
	hostile := fixture.Image{Tags: []string{"hostile:v1"}, Layers: [][]byte{fixture.Layer(
		fixture.Dir("x/"), fixture.File("x/evil\x1b[31mred", "e\n"), fixture.File("x/new\nline", "n\n"),
	)}}
	arch := fixture.Capture(t, dir, "case", fixture.Webapp(), hostile)
	// Not a terminal: refused, a usage error.
	if r := amber(t, "browse", arch); r.code != exitUsage || !strings.Contains(r.stderr, "browse needs a terminal") {
		t.Errorf("amber browse without a terminal: exit %d %q; want %d, needs a terminal", r.code, r.stderr, exitUsage)
	}
	tm := newTerm(t)
	cmdline := "amber browse " + arch
	tm.typeText(cmdline)
	tm.keys("Enter")
	scr := tm.wait("images/webapp_v1", "0 9216 +11~0-0", "1 4096 +2~1-0", "2 2560 +0~1-1", "+ added  ~ modified  - removed")
	if got := strings.TrimSpace(tm.run("display", "-p", "-t", "0", "#{alternate_on}")); got != "1" {
		t.Errorf("amber browse runs on the normal screen (alternate_on %q):\n%s", got, scr)
	}

	// Layer 1 adds the credentials.
	tm.keys("j", "Tab", "j", "Space", "j", "Space", "j")
	tm.wait("> + -rw-r--r--  0:0    51       credentials")
	tm.keys("Enter")
	tm.wait("/srv/.aws/credentials  51 bytes  verified sha256:", "     2  aws_access_key_id = AKIAIOSFODNN7EXAMPLE")
	tm.keys("q")
	tm.waitGone("aws_access_key_id")
	// Extracted, checked, and recorded in the custody log.
	dest := t.TempDir()
	tm.keys("e")
	tm.wait("extract to directory: .")
	tm.keys("C-u")
	tm.typeText(dest)
	tm.keys("Enter")
	tm.wait("extracted images/webapp_v1/layers/1/srv/.aws/credentials")

	// Layer 2 removes them; folded and unfolded.
	tm.keys("Tab", "j", "Tab", "Space", "j")
	tm.wait("> - drwxr-xr-x  0:0     -   ▸ .aws", "~ -rw-r--r--  0:0    19     index.html", "2560 bytes  0 added 1 modified 1 deleted")
	tm.keys("k", "Space")
	scr = tm.waitGone(".aws")
	if !strings.Contains(scr, "▸ srv") {
		t.Errorf("srv folded:\n%s", scr)
	}
	// The diff of the modified index.html against layer 0's.
	tm.keys("Space", "j", "j", "Enter")
	tm.wait("diff /srv/index.html", "against layer 0's version", "-<h1>hello</h1>", "+<h1>hello, v1</h1>")
	tm.keys("q")
	tm.waitGone("against layer 0")

	// A filter by glob, over layer 0.
	tm.keys("Tab", "g", "j", "/")
	tm.wait("filter (glob, re:REGEX, or text):")
	tm.typeText("*.conf")
	tm.keys("Enter")
	scr = tm.wait("[filter *.conf]", "/etc/app.conf", "1 match(es)")
	if strings.Contains(scr, "passwd") {
		t.Errorf("the filter *.conf shows passwd:\n%s", scr)
	}
	tm.keys("Escape")
	tm.waitGone("[filter")

	// Resized: drawn again at the new size (the left pane wider: the
	// whole instruction shows), and back.
	tm.run("resize-window", "-t", "0", "-x", "120", "-y", "40")
	tm.wait("0 9216 +11~0-0 ADD file:base /  ")
	tm.run("resize-window", "-t", "0", "-x", "80", "-y", "24")
	tm.wait("0 9216 +11~0-0 ADD file:…")

	// Hostile names, escaped on the screen.
	tm.keys("Tab", "G", "Tab", "Space")
	scr = tm.wait(`"evil\x1b[31mred"`, `"new\nline"`)
	if l := lineWith(scr, `"new\nline"`); !strings.HasPrefix(strings.TrimSpace(l), "0 ") && !strings.Contains(l, "│") {
		t.Errorf("the name with a newline broke the line: %q", l)
	}
	if strings.Contains(tm.run("capture-pane", "-p", "-e", "-t", "0"), "\x1b[31mred") {
		t.Errorf("the escape sequence of a name reached the terminal")
	}
	tm.quit(cmdline)
	sum := sha256.Sum256([]byte("[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"))
	if got := testenv.Run(t, "sha256sum", filepath.Join(dest, "credentials")); !strings.HasPrefix(got, hex.EncodeToString(sum[:])) {
		t.Errorf("sha256sum of the extracted credentials: %s", got)
	}
	if log := mustAmber(t, "log", arch); !strings.Contains(log, "extracted") || !strings.Contains(log, "images/webapp_v1/layers/1/srv/.aws/credentials") {
		t.Errorf("the custody log does not record the extraction:\n%s", log)
	}
}

// TestBrowseContainer: a captured container opens at its changes against
// its image, its processes' memory listed.
func TestBrowseContainer(t *testing.T) {
	testenv.Root(t)
	testContainer(t, "amber-browse-ctr")
	arch := filepath.Join(t.TempDir(), "ctr.tar.zst")
	mustAmber(t, "capture", "container", "amber-browse-ctr", "-o", arch)
	tm := newTerm(t)
	cmdline := "amber browse " + arch + " containers/amber-browse-ctr"
	tm.typeText(cmdline)
	tm.keys("Enter")
	scr := tm.wait("containers/amber-browse-ctr  layer 3", "> ", "container", "mem ")
	// The right pane: /newdir added.
	if l := lineWith(scr, "newdir"); !strings.Contains(l, "+ drwxr-xr-x") {
		t.Errorf("newdir in the container's changes: %q\n%s", l, scr)
	}
	tm.keys("Tab")
	for i := 0; i < 12 && !strings.Contains(lineWith(tm.screen(), "│> "), "srv"); i++ {
		tm.keys("j")
	}
	tm.keys("Space")
	scr = tm.wait("added.txt")
	if l := lineWith(scr, "added.txt"); !strings.Contains(l, "+ -rw-r--r--") {
		t.Errorf("added.txt: %q\n%s", l, scr)
	}
	if l := lineWith(scr, "name with space"); !strings.Contains(l, "- -rw-r--r--") {
		t.Errorf("the removed /srv/name with space: %q\n%s", l, scr)
	}
	// Its content changed without a change of size: the diff says so.
	for i := 0; i < 12 && !strings.Contains(lineWith(tm.screen(), "│> "), "data"); i++ {
		tm.keys("j")
	}
	tm.keys("Space", "j")
	tm.wait("> ~ -rw-r--r--", "creds")
	tm.keys("Enter")
	tm.wait("diff /srv/data/creds", "-AKIAEXAMPLEKEY", "+AKIAEXAMPLEKEZ")
	tm.keys("q")
	tm.waitGone("diff /srv")
	// The memory of its process: the files of its dump.
	tm.keys("Tab", "G")
	tm.wait("process ", "mappings")
	tm.keys("Tab")
	tm.wait("core")
	tm.quit(cmdline)
}

// TestBrowseRegistry: docker://REF is browsed as amber ls reads it (only
// the frames read are fetched, each checked), a file's content included.
func TestBrowseRegistry(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	registryLogin(t, reg)
	arch := fixture.Capture(t, t.TempDir(), "case", fixture.Webapp())
	pushTo(t, reg, arch, "case/e1:web")
	tm := newTerm(t)
	cmdline := "amber browse --cache " + filepath.Join(t.TempDir(), "cache") + " docker://" + reg.Host + "/case/e1:web"
	tm.typeText(cmdline)
	tm.keys("Enter")
	tm.wait("images/webapp_v1", "1 4096 +2~1-0")
	tm.keys("j", "Tab", "j", "Space", "j", "Space", "j", "Enter")
	tm.wait("/srv/.aws/credentials  51 bytes  verified sha256:", "     2  aws_access_key_id = AKIAIOSFODNN7EXAMPLE")
	tm.keys("q")
	tm.waitGone("aws_access_key_id")
	tm.quit(cmdline)
}
