package textsafe

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Escape returns s as it is when it prints as itself, and otherwise as a
// Go quoted string, the way git quotes an unusual path:
//
//	nobody             nobody
//	nobody\x1b[6Droot  "nobody\x1b[6Droot"   (ESC: would show as "root")
//	v1\nimages/x       "v1\nimages/x"        (LF: would forge a line)
//	\u202etoor         "\u202etoor"          (RLO: would show as "root")
//
// s prints as itself when it is UTF-8 without an Unsafe rune. Quoting
// (strconv.Quote) writes every control character (\n, \r, \x1b, \x7f,
// \u0085), every rune that does not show as itself (bidi overrides and
// isolates \u202e \u2066, marks \u200e, zero-width and non-ASCII spaces,
// line separators, private use, unassigned) and every byte that is not
// UTF-8 (\xff) as an escape, and doubles backslashes and quotes inside.
//
// So what is printed is one line of visible text that acts on nothing,
// and can be undone: text in double quotes that strconv.Unquote accepts is
// a quoted string, and Unquote gives the evidence back; any other text is
// the evidence itself, backslashes included, so that an ordinary command,
// "sed 's/\./x/'" or docker's "'\x00'", reads as docker history shows it.
// A clean string that would pass for a quoted one ("\"x\"") is quoted too.
func Escape(s string) string {
	if Clean(s) && !(len(s) > 1 && s[0] == '"' && isLiteral(s)) {
		return s
	}
	return strconv.Quote(s)
}

func isLiteral(s string) bool {
	_, err := strconv.Unquote(s)
	return err == nil
}

// Unsafe reports whether r must not reach a terminal as it is: a control
// character other than the tab (which only moves to the next tab stop),
// or a rune that does not show as itself (unicode.IsPrint is false: C1
// controls, bidi and other format characters, non-ASCII spaces, ...).
func Unsafe(r rune) bool {
	if r < utf8.RuneSelf {
		return r < 0x20 && r != '\t' || r == 0x7f
	}
	return !unicode.IsPrint(r)
}

// Clean reports whether s is UTF-8 without an Unsafe rune: it prints as
// itself.
func Clean(s string) bool {
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 || Unsafe(r) {
			return false
		}
		i += n
	}
	return true
}

// JSON makes the output of encoding/json safe to print: the encoder
// escapes C0 controls but leaves DEL, C1 controls, bidi overrides and the
// like as they are; each is written here as a JSON \uNNNN escape (a
// surrogate pair above U+FFFF), so the text stays JSON that decodes to the
// same value.
func JSON(b []byte) string {
	s := string(b)
	if Clean(s) {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			out.WriteString(`\ufffd`) // as encoding/json writes a byte that is not UTF-8
		case !Unsafe(r):
			out.WriteString(s[i : i+n])
		case r > 0xffff:
			r1, r2 := utf16.EncodeRune(r)
			writeU(&out, r1)
			writeU(&out, r2)
		default:
			writeU(&out, r)
		}
		i += n
	}
	return out.String()
}

func writeU(b *strings.Builder, r rune) {
	const hex = "0123456789abcdef"
	b.WriteString(`\u`)
	for shift := 12; shift >= 0; shift -= 4 {
		b.WriteByte(hex[r>>shift&0xf])
	}
}
