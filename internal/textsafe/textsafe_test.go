package textsafe

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEscape(t *testing.T) {
	for _, c := range []struct{ class, in, want string }{
		{"plain ASCII", "nobody", "nobody"},
		{"printable Unicode", "café ünïcode 漢字 🐳", "café ünïcode 漢字 🐳"},
		{"TAB (moves to a tab stop only)", "set -eux;\tapt-get update", "set -eux;\tapt-get update"},
		{"backslashes of an ordinary command", `sed 's/\./x/' \1 '\x00' \n`, `sed 's/\./x/' \1 '\x00' \n`},
		{"a quote inside", `say "hi"`, `say "hi"`},
		{"U+FFFD as such", "\ufffd", "\ufffd"},
		{"ESC (OSC title)", "\x1b]0;pwned\a", `"\x1b]0;pwned\a"`},
		{"cursor left x6", "nobody\x1b[6Droot", `"nobody\x1b[6Droot"`},
		{"BEL", "a\ab", `"a\ab"`},
		{"CR", "ok\rFORGED", `"ok\rFORGED"`},
		{"LF forging a line", "v1\nimages/evil  image", `"v1\nimages/evil  image"`},
		{"VT FF BS", "\v\f\b", `"\v\f\b"`},
		{"NUL and other C0", "\x00\x01\x1f", `"\x00\x01\x1f"`},
		{"DEL", "a\x7fb", `"a\x7fb"`},
		{"C1 NEL", "a\u0085b", `"a\u0085b"`},
		{"C1 CSI", "a\u009b6Db", `"a\u009b6Db"`},
		{"bidi RLO", "\u202eoor", `"\u202eoor"`},
		{"bidi embeddings and overrides", "\u202a\u202b\u202c\u202d", `"\u202a\u202b\u202c\u202d"`},
		{"bidi isolates", "\u2066\u2067\u2068\u2069", `"\u2066\u2067\u2068\u2069"`},
		{"bidi marks", "\u200e\u200f\u061c", `"\u200e\u200f\u061c"`},
		{"zero-width space", "ro\u200bot", `"ro\u200bot"`},
		{"line separator", "a\u2028b", `"a\u2028b"`},
		{"non-BMP tag character", "a\U000E0041b", `"a\U000e0041b"`},
		{"invalid UTF-8", "bad\xffbyte\xc3", `"bad\xffbyte\xc3"`},
		{"tab and backslash beside a control", "a\t\\\x1b", `"a\t\\\x1b"`},
		{"a clean string that is a literal", `"\x41"`, `"\"\\x41\""`},
		{"a clean string that is not one", `"a" and "b"`, `"a" and "b"`},
	} {
		t.Run(c.class, func(t *testing.T) {
			got := Escape(c.in)
			if got != c.want {
				t.Errorf("Escape(%q) = %q, want %q", c.in, got, c.want)
			}
			checkPrintable(t, got)
			if back := undo(got); back != c.in {
				t.Errorf("undoing %q gives %q, want %q", got, back, c.in)
			}
		})
	}
}

// checkPrintable fails when s holds a byte or rune a terminal acts on.
func checkPrintable(t *testing.T, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Errorf("%q is not UTF-8", s)
	}
	for _, r := range s {
		if r < 0x20 && r != '\t' || r == 0x7f || (r >= 0x80 && r <= 0x9f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f || r == 0x061c {
			t.Errorf("%q holds %U", s, r)
		}
	}
}

// undo is how a reader gets the evidence back: a Go string literal is
// unquoted, anything else is the evidence itself.
func undo(s string) string {
	if u, err := strconv.Unquote(s); err == nil && strings.HasPrefix(s, `"`) {
		return u
	}
	return s
}

func TestEscapeReturnsCleanStringsAsTheyAre(t *testing.T) {
	s := "PATH=/usr/local/sbin:/usr/bin"
	if got := Escape(s); got != s || !Clean(s) {
		t.Errorf("Escape(%q) = %q, Clean %v", s, got, Clean(s))
	}
	if n := testing.AllocsPerRun(100, func() { Escape(s) }); n != 0 {
		t.Errorf("Escape of a clean string allocates %v times", n)
	}
	for _, s := range []string{"\r", "\xff", "\u202e", "\x1b", "\u0085"} {
		if Clean(s) {
			t.Errorf("Clean(%q) is true", s)
		}
	}
}

func TestJSON(t *testing.T) {
	v := []string{"/bin/sh", "-c", "echo \x1b]0;t\a \u202eoor\u0085 \x7f \U000E0041 \"q\" \\n\t<&>"}
	b, _ := json.Marshal(v)
	got := JSON(b)
	checkPrintable(t, got)
	var back []string
	if err := json.Unmarshal([]byte(got), &back); err != nil || len(back) != 3 || back[2] != v[2] {
		t.Errorf("JSON(%s) = %s decodes to %q, %v", b, got, back, err)
	}
	for _, want := range []string{`\u202e`, `\u0085`, `\u007f`, `\udb40\udc41`} {
		if !strings.Contains(got, want) {
			t.Errorf("JSON(%s) = %s lacks %s", b, got, want)
		}
	}
	if clean := `["/bin/sh"]`; JSON([]byte(clean)) != clean {
		t.Errorf("JSON changed %s", clean)
	}
}

// FuzzEscape: whatever the input, the output holds nothing a terminal acts
// on, and gives the input back.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "a", "\\", `"a"`, `"`, "\x1b[6D", "\u202e", "\xff\\", "\t", `"\x1b"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Escape(s)
		checkPrintable(t, got)
		if !Clean(got) {
			t.Fatalf("Escape(%q) = %q is not clean", s, got)
		}
		if back := undo(got); back != s {
			t.Fatalf("Escape(%q) = %q gives back %q", s, got, back)
		}
	})
}
