package export

import (
	"bufio"
	"strings"
	"unicode/utf8"
)

// XML 1.0 cannot carry every byte string a tar name holds: no C0 control
// character other than TAB, LF and CR may appear, not even as a character
// reference, and the document must be UTF-8. DFXML has no convention for
// such names, so amber writes them with one documented, reversible escape
// (the one GNU tools use for names): a backslash is written \\, and each
// byte XML cannot carry (a C0 control other than TAB/LF/CR, DEL, a byte
// of invalid UTF-8, the bytes of U+FFFE and U+FFFF) is written \xNN in
// lowercase hex. TAB, LF and CR go in as character references (&#x9;
// &#xA; &#xD;), so that a parser returns them as they are instead of
// normalising them; < > & " as entities. Undoing \\ and \xNN then gives
// the name's exact bytes back.

const hexdigits = "0123456789abcdef"

// Escape returns s as amber writes it in DFXML text, before XML escaping:
// backslash doubled, bytes XML cannot carry as \xNN.
func Escape(s string) string {
	var b strings.Builder
	escapeTo(&b, s, false)
	return b.String()
}

// Unescape undoes Escape (for readers of amber's DFXML and for tests).
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			switch {
			case s[i+1] == '\\':
				b.WriteByte('\\')
				i++
				continue
			case s[i+1] == 'x' && i+3 < len(s) && unhex(s[i+2]) >= 0 && unhex(s[i+3]) >= 0:
				b.WriteByte(byte(unhex(s[i+2])<<4 | unhex(s[i+3])))
				i += 3
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// byteWriter is what the escapes write to (a strings.Builder or the
// document's bufio.Writer).
type byteWriter interface {
	WriteByte(byte) error
	WriteString(string) (int, error)
}

var (
	_ byteWriter = (*strings.Builder)(nil)
	_ byteWriter = (*bufio.Writer)(nil)
)

// escapeTo writes s escaped; with xml, also escaped for XML text and
// attribute values.
func escapeTo(w byteWriter, s string, xml bool) {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case c == '\\':
				w.WriteString(`\\`)
			case xml && c == '<':
				w.WriteString("&lt;")
			case xml && c == '>':
				w.WriteString("&gt;")
			case xml && c == '&':
				w.WriteString("&amp;")
			case xml && c == '"':
				w.WriteString("&quot;")
			case xml && c == '\t':
				w.WriteString("&#x9;")
			case xml && c == '\n':
				w.WriteString("&#xA;")
			case xml && c == '\r':
				w.WriteString("&#xD;")
			case c == '\t' || c == '\n' || c == '\r':
				w.WriteByte(c)
			case c < 0x20 || c == 0x7f:
				escByte(w, c)
			default:
				w.WriteByte(c)
			}
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || r == 0xFFFE || r == 0xFFFF {
			for j := 0; j < n; j++ {
				escByte(w, s[i+j])
			}
		} else {
			w.WriteString(s[i : i+n])
		}
		i += n
	}
}

func escByte(w byteWriter, c byte) {
	w.WriteString(`\x`)
	w.WriteByte(hexdigits[c>>4])
	w.WriteByte(hexdigits[c&15])
}
