package browse

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/teatest"

	"github.com/amber-forensics/amber/extract"
	"github.com/amber-forensics/amber/internal/fixture"
)

// hostileImage has names a terminal would act on: an ANSI escape, a
// newline, a byte that is not UTF-8, a tab, and a 4,000-byte name.
func hostileImage() fixture.Image {
	return fixture.Image{Tags: []string{"hostile:v1"}, Layers: [][]byte{fixture.Layer(
		fixture.Dir("x/"),
		fixture.File("x/evil\x1b[31mred", "e\n"),
		fixture.File("x/new\nline", "n\n"),
		fixture.File("x/bad\xffbyte", "b\n"),
		fixture.File("x/tab\there", "t\n"),
		fixture.File("x/"+strings.Repeat("L", 4000), "l\n"),
		fixture.File("x/content", "plain\n\x1b]0;pwned\x07title\n"),
	)}, History: []string{"/bin/sh -c printf '\x1b[2J' > /x/evil"}}
}

func testArchive(t *testing.T) string {
	t.Helper()
	return fixture.Capture(t, t.TempDir(), "case", fixture.Webapp(), hostileImage())
}

func newModel(t *testing.T, opts Options) *Model {
	t.Helper()
	a := fixture.Open(t, testArchive(t))
	m, err := New(a, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range m.arts {
		m.Update(count(x)())
	}
	return m
}

// press sends keys: a name of tea's (tab, enter, space, esc, pgdown, ...)
// or runes.
func press(m *Model, keys ...string) {
	special := map[string]tea.KeyType{"tab": tea.KeyTab, "enter": tea.KeyEnter, "space": tea.KeySpace, "esc": tea.KeyEsc,
		"pgdown": tea.KeyPgDown, "pgup": tea.KeyPgUp, "up": tea.KeyUp, "down": tea.KeyDown, "end": tea.KeyEnd}
	for _, k := range keys {
		if t, ok := special[k]; ok {
			m.Update(tea.KeyMsg{Type: t})
			continue
		}
		for _, r := range k {
			m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}})
		}
	}
}

func screen(t *testing.T, m *Model) string {
	t.Helper()
	s := m.View()
	lines := strings.Split(s, "\n")
	if len(lines) != m.h {
		t.Fatalf("the screen has %d lines, want %d:\n%s", len(lines), m.h, s)
	}
	for i, l := range lines {
		if w := ansi.StringWidth(l); w > m.w {
			t.Fatalf("line %d is %d cells wide, the terminal %d: %q", i, w, m.w, l)
		}
	}
	return ansi.Strip(s)
}

// rowOf is the screen line holding s.
func rowOf(scr, s string) string {
	for _, l := range strings.Split(scr, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// right is the right pane's part of a screen line.
func right(l string) string {
	_, r, _ := strings.Cut(l, "│")
	return r
}

func wantOn(t *testing.T, scr string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(scr, w) {
			t.Fatalf("screen lacks %q:\n%s", w, scr)
		}
	}
}

// TestCredentialsStory: the layer list with the counts amber layers
// gives; layer 1 adds the AWS credentials (marked +), its content shown
// verified; layer 2 removes them (marked -, the removed version readable);
// blame; the diff of the modified index.html.
func TestCredentialsStory(t *testing.T) {
	m := newModel(t, Options{Diff: func(la, lb string, a, b []byte) []byte {
		return []byte("--- " + la + "\n+++ " + lb + "\n-" + string(a) + "+" + string(b))
	}})
	scr := screen(t, m)
	wantOn(t, scr, "images/webapp_v1", "0 9216 +11~0-0 ADD file", "1 4096 +2~1-0", "2 2560 +0~1-1", "+ added", "~ modified", "- removed")
	press(m, "j", "tab")
	scr = screen(t, m)
	if l := rowOf(scr, "▸ srv"); !strings.HasPrefix(strings.TrimLeft(right(l), "*> "), "drwx") {
		t.Errorf("layer 1's /srv is unchanged (no mark): %q", l)
	}
	press(m, "j", "space", "j", "space", "j")
	scr = screen(t, m)
	l := rowOf(scr, "credentials")
	if !strings.HasPrefix(right(l), "> + -rw-r--r--  0:0    51") {
		t.Fatalf("credentials in layer 1: %q; want selected, added, its mode, owner, size\n%s", l, scr)
	}
	press(m, "enter")
	scr = screen(t, m)
	wantOn(t, scr, "/srv/.aws/credentials  51 bytes  verified sha256:", "     1  [default]", "     2  aws_access_key_id = AKIAIOSFODNN7EXAMPLE")
	press(m, "q")
	press(m, "b")
	wantOn(t, screen(t, m), "layer 1  A added", "layer 2  D deleted", "deleted in layer 2; not in the merged view")
	press(m, "esc")

	// Layer 2: .aws removed; unfolded, what it held, removed too and
	// still readable (the version of layer 1).
	press(m, "tab", "j", "tab", "space", "j")
	scr = screen(t, m)
	if l := rowOf(scr, ".aws"); !strings.HasPrefix(right(l), "> - drwxr-xr-x") {
		t.Fatalf("layer 2's .aws: %q; want marked removed\n%s", l, scr)
	}
	press(m, "space", "j")
	scr = screen(t, m)
	if l := rowOf(scr, "credentials"); !strings.HasPrefix(right(l), "> - -rw-r--r--") {
		t.Fatalf("layer 2's credentials: %q; want marked removed\n%s", l, scr)
	}
	press(m, "enter")
	wantOn(t, screen(t, m), "(removed; this is the version of layer 1)", "AKIAIOSFODNN7EXAMPLE")
	press(m, "q", "j")
	scr = screen(t, m)
	if l := rowOf(scr, "index.html"); !strings.HasPrefix(right(l), "> ~ -rw-r--r--") {
		t.Fatalf("layer 2's index.html: %q; want marked modified\n%s", l, scr)
	}
	press(m, "w")
	wantOn(t, screen(t, m), "wasted space: 94 bytes in 3 layers", "layer 1: 51 bytes wasted", "        51  /srv/.aws/credentials  (deleted in layer 2)",
		"        28  /etc/app.conf  (overwritten in layer 1)")
	press(m, "q", "enter")
	wantOn(t, screen(t, m), "diff /srv/index.html", "against layer 0's version", "--- layers/0/srv/index.html", "+++ layers/2/srv/index.html", "-<h1>hello</h1>", "+<h1>hello, v1</h1>")
}

// TestFoldFilterChanges: space folds, / filters (glob, regex, text), c
// shows the changes only, s the stage.
func TestFoldFilterChanges(t *testing.T) {
	m := newModel(t, Options{})
	press(m, "tab", "space")
	scr := screen(t, m)
	wantOn(t, scr, "▾ etc", "app.conf", "passwd")
	press(m, "j", "j", "j", "j", "space", "j", "space")
	wantOn(t, screen(t, m), "app2 => usr/bin/app", "start -> app")
	press(m, "space", "k", "space", "k", "k", "k", "k", "space")
	if scr := screen(t, m); strings.Contains(scr, "passwd") || !strings.Contains(scr, "▸ etc") {
		t.Fatalf("etc folded still shows its files:\n%s", scr)
	}
	press(m, "/", "*.conf", "enter")
	scr = screen(t, m)
	wantOn(t, scr, "[filter *.conf]", "/etc/app.conf", "1 match(es)")
	if strings.Contains(scr, "passwd") {
		t.Fatalf("the filter *.conf shows passwd:\n%s", scr)
	}
	press(m, "esc", "/", "re:^/usr/bin/(su|app)$", "enter")
	scr = screen(t, m)
	wantOn(t, scr, "/usr/bin/su", "/usr/bin/app", "2 match(es)")
	if strings.Contains(scr, "app2") {
		t.Fatalf("the regex matches app2:\n%s", scr)
	}
	press(m, "esc")
	// In a stage, a path of several layers is one match; a removed one
	// is marked so.
	press(m, "tab", "j", "j", "s", "/", "*.html", "enter")
	scr = screen(t, m)
	wantOn(t, scr, "stage 2", "/srv/index.html", "1 match(es)")
	if l := rowOf(scr, "/srv/index.html"); !strings.Contains(l, "> ~ -rw-r--r--") {
		t.Fatalf("index.html in stage 2: %q", l)
	}
	press(m, "esc", "/", "re:cred", "enter")
	scr = screen(t, m)
	if l := rowOf(scr, "/srv/.aws/credentials"); !strings.Contains(l, "> - -rw-r--r--") {
		t.Fatalf("the credentials in stage 2's filter: %q\n%s", l, scr)
	}
	press(m, "esc", "s", "tab", "k", "k", "tab")
	// Stage 2, changes only: srv (changed below), not etc or usr.
	press(m, "tab", "j", "j", "s", "c")
	scr = screen(t, m)
	wantOn(t, scr, "stage 2  [changes only]", "▸ srv")
	if strings.Contains(scr, "▸ etc") || strings.Contains(scr, "▸ usr") {
		t.Fatalf("changes only shows unchanged directories:\n%s", scr)
	}
	press(m, "tab", "space")
	scr = screen(t, m)
	wantOn(t, scr, ".aws", "index.html")
	if strings.Contains(scr, "name with space") {
		t.Fatalf("changes only shows a file of layer 1 in stage 2:\n%s", scr)
	}
	press(m, "c", "j", "space")
	wantOn(t, screen(t, m), "name with space.txt")
}

// TestHostileNames: names with an escape sequence, a newline, a byte that
// is not UTF-8 and a tab are shown escaped, a 4,000-byte one cut with a
// mark; a file's escape sequences are escaped in its content; nothing of
// the evidence reaches the terminal raw.
func TestHostileNames(t *testing.T) {
	m := newModel(t, Options{})
	m.Update(tea.WindowSizeMsg{Width: 160, Height: 30})
	press(m, "end", "tab", "space")
	raw := m.View()
	if strings.Contains(raw, "\x1b[31mred") || strings.Contains(raw, "\x1b[2J") || strings.Contains(raw, "new\nline") || strings.Contains(raw, "\xff") {
		t.Fatalf("a raw name reached the screen: %q", raw)
	}
	scr := screen(t, m)
	wantOn(t, scr, `"evil\x1b[31mred"`, `"new\nline"`, `"bad\xffbyte"`, `"tab\there"`, `printf '\x1b[2J'`)
	press(m, "j")
	if l := rowOf(screen(t, m), "LLLL"); !strings.HasSuffix(strings.TrimRight(l, " "), "…") {
		t.Fatalf("the 4,000-byte name: %q; want it cut with a mark", l)
	}
	if d := rowOf(screen(t, m), "/x/LLL"); !strings.HasSuffix(strings.TrimRight(d, " "), "…") {
		t.Fatalf("the details of the 4,000-byte name: %q", d)
	}
	if s := safe("x/" + strings.Repeat("L", 4000)); len(s) > maxName+20 || !strings.HasSuffix(s, "…[4002 bytes]") {
		t.Fatalf("safe of a 4,002-byte name: %d bytes, ends %q", len(s), s[len(s)-20:])
	}
	press(m, "down", "down", "enter")
	raw = m.View()
	if strings.Contains(raw, "\x1b]0;pwned") || strings.Contains(raw, "\x07") {
		t.Fatalf("a file's escape sequence reached the screen: %q", raw)
	}
	wantOn(t, screen(t, m), `     2  "\x1b]0;pwned\atitle"`)
}

// TestExtract: e writes the file to the directory given, checked, and
// reports it for the custody log.
func TestExtract(t *testing.T) {
	var got []string
	m := newModel(t, Options{Extracted: func(vp, target string, res *extract.Result) error {
		got = append(got, vp, target)
		return nil
	}})
	dest := t.TempDir()
	press(m, "j", "tab", "j", "space", "j", "space", "j", "e")
	m.prompt.SetValue(dest)
	press(m, "enter")
	b, err := os.ReadFile(filepath.Join(dest, "credentials"))
	if err != nil || !bytes.Contains(b, []byte("AKIAIOSFODNN7EXAMPLE")) {
		t.Fatalf("extracted credentials: %q, %v\n%s", b, err, screen(t, m))
	}
	if len(got) != 2 || got[0] != "images/webapp_v1/layers/1/srv/.aws/credentials" || got[1] != filepath.Join(dest, "credentials") {
		t.Fatalf("recorded %q", got)
	}
	wantOn(t, screen(t, m), "extracted images/webapp_v1/layers/1/srv/.aws/credentials")
	// Again: the destination exists, nothing is overwritten.
	press(m, "e")
	m.prompt.SetValue(dest)
	press(m, "enter")
	wantOn(t, screen(t, m), "extract:", "exists")
}

// TestResize: every size from 80x24 up draws within the terminal.
func TestResize(t *testing.T) {
	m := newModel(t, Options{})
	press(m, "tab", "space")
	for _, s := range [][2]int{{80, 24}, {120, 40}, {40, 10}, {200, 60}, {80, 24}} {
		m.Update(tea.WindowSizeMsg{Width: s[0], Height: s[1]})
		wantOn(t, screen(t, m), "etc")
	}
	press(m, "?")
	wantOn(t, screen(t, m), "keys", "space          fold/unfold")
}

// TestProgram runs the model in bubbletea's test harness: keys in, the
// screen out, q ends it.
func TestProgram(t *testing.T) {
	m := newModel(t, Options{})
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(80, 24))
	teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return bytes.Contains(b, []byte("images/webapp_v1")) }, teatest.WithDuration(5*time.Second))
	tm.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("j")})
	tm.Send(tea.KeyMsg{Type: tea.KeyTab})
	tm.Send(tea.KeyMsg{Type: tea.KeyDown})
	tm.Send(tea.KeyMsg{Type: tea.KeySpace})
	teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return bytes.Contains(b, []byte("name with space.txt")) }, teatest.WithDuration(5*time.Second))
	tm.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("q")})
	tm.WaitFinished(t, teatest.WithFinalTimeout(5*time.Second))
	if fm := tm.FinalModel(t).(*Model); !fm.quitting || fm.lsel != 2 {
		t.Fatalf("final model: quitting %v, selection %d", fm.quitting, fm.lsel)
	}
}

// TestEmptyAndDamaged: an empty layer and an image without layers take
// every key without a panic.
func TestEmptyAndDamaged(t *testing.T) {
	empty := fixture.Image{Tags: []string{"empty:v1"}, Layers: [][]byte{fixture.Layer()}}
	a := fixture.Open(t, fixture.Capture(t, t.TempDir(), "empty", empty))
	m, err := New(a, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"enter", "space", "b", "e", "enter", "w", "C", "s", "c", "tab", "enter", "space", "b", "e", "esc", "/", "x", "enter", "G", "pgdown", "up", "tab", "k", "k", "enter", "tab", "space"} {
		press(m, k)
		screen(t, m)
	}
	wantOn(t, screen(t, m), "images/empty_v1")
}

// TestCountOnRequest: an artifact over the limit is not counted at start
// (a million-file layer would be walked whole); C counts it.
func TestCountOnRequest(t *testing.T) {
	a := fixture.Open(t, testArchive(t))
	m, err := New(a, Options{CountLimit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if cmd := m.Init(); cmd != nil {
		t.Fatalf("Init counts artifacts over the limit")
	}
	scr := screen(t, m)
	wantOn(t, scr, "0 9216     ? ADD", "(23 entries: C counts)")
	_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("C")})
	wantOn(t, screen(t, m), "counting...")
	m.Update(cmd())
	scr = screen(t, m)
	wantOn(t, scr, "0 9216 +11~0-0", "11 added 0 modified 0 deleted, 43 bytes wasted")
	if strings.Contains(scr, "counting") {
		t.Fatalf("still counting:\n%s", scr)
	}
}

// TestContentChecked: content whose SHA-256 is not the index's is not
// shown; the error says which digest was found and which was recorded.
func TestContentChecked(t *testing.T) {
	m := newModel(t, Options{})
	press(m, "j", "tab", "j", "space", "j", "space", "j")
	tr := m.currentTree()
	r, _, _, err := tr.rowAt(m.rsel)
	if err != nil || r.rel != "srv/.aws/credentials" {
		t.Fatalf("selected %q, %v", r.rel, err)
	}
	r.rec.SHA256[0] ^= 1
	m.showContent(tr, r)
	if m.overlay != nil {
		t.Fatalf("content shown though its SHA-256 differs from the record: %q", m.overlay.lines)
	}
	wantOn(t, screen(t, m), "error: manifest: ", "/srv/.aws/credentials has SHA-256 9ca53a33")
}

// TestStartAt: a view path opens at its artifact, layer or stage, its
// directories unfolded down to the path, which is selected.
func TestStartAt(t *testing.T) {
	a := fixture.Open(t, testArchive(t))
	for _, c := range []struct{ start, title, sel string }{
		{"images/webapp_v1/layers/1/srv/.aws/credentials", "images/webapp_v1  layer 1", "> + -rw-r--r--  0:0    51       credentials"},
		{"images/webapp_v1/stages/2/usr/bin/su", "images/webapp_v1  stage 2", ">   -rwsr-xr-x  0:0    14       su"},
		{"images/webapp_v1/rootfs/etc", "images/webapp_v1  stage 2", ">   drwxr-xr-x  0:0     - ▸ etc"},
		{"images/webapp_v1/layers/2", "images/webapp_v1  layer 2", "*   drwxr-xr-x  0:0     - ▸ srv"},
		{"images/hostile_v1", "images/hostile_v1  layer 0", "* + drwxr-xr-x  0:0     - ▸ x"},
	} {
		m, err := New(a, Options{Start: c.start})
		if err != nil {
			t.Fatalf("%s: %v", c.start, err)
		}
		scr := screen(t, m)
		wantOn(t, scr, c.title)
		if !strings.Contains(scr, "│"+c.sel) && !strings.Contains(scr, "│  "+strings.TrimPrefix(c.sel, "> ")) {
			t.Errorf("%s: no %q:\n%s", c.start, c.sel, scr)
		}
	}
	for _, bad := range []string{"images/nope", "images/webapp_v1/layers/3", "images/webapp_v1/layers/1/nope", "volumes/x", "images/webapp_v1/config.json"} {
		if _, err := New(a, Options{Start: bad}); err == nil {
			t.Errorf("start at %s: no error", bad)
		}
	}
}
