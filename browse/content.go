package browse

// A file's content, checked against its SHA-256 before it is shown, and
// the diff of a modified file against its version below.

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/textsafe"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/view"
)

// maxName is how much of an escaped name is kept: a 4,000-byte name is
// cut, with a mark saying how long it was.
const maxName = 1024

// showBytes is how much of a file is shown; all of it is hashed.
const showBytes = 1 << 20

// safe is an evidence string as it may reach the terminal: escaped by
// textsafe (a tab too: it would break the columns), and cut when long.
func safe(s string) string {
	e := textsafe.Escape(s)
	if strings.ContainsRune(e, '\t') {
		e = strconv.Quote(s)
	}
	if len(e) > maxName {
		cut := maxName
		for cut > 0 && !utf8.RuneStart(e[cut]) {
			cut--
		}
		e = e[:cut] + fmt.Sprintf("…[%d bytes]", len(s))
	}
	return e
}

// readVerified reads a row's file, hashing all of it, and returns its
// first showBytes; a content that does not match its recorded SHA-256 is
// an error, and nothing of it is returned.
func (t *tree) readVerified(r row) ([]byte, int64, error) {
	var rd io.Reader
	var want hashing.Digest
	switch {
	case r.view != "":
		en, err := t.art.v.Stat(r.view)
		if err != nil {
			return nil, 0, err
		}
		if en.Type != fileindex.TypeReg {
			return nil, 0, fmt.Errorf("%s is not a regular file", safe(r.view))
		}
		if rd, err = t.art.v.Open(en); err != nil {
			return nil, 0, err
		}
		want = en.SHA256()
	case r.layer >= 0 && r.rec.Type == fileindex.TypeReg:
		var err error
		if rd, err = t.art.v.A.Content(t.art.a.Layers[r.layer].Digest, &r.rec); err != nil {
			return nil, 0, err
		}
		want = r.rec.SHA256
	default:
		return nil, 0, errors.New("no content: not a regular file")
	}
	h := sha256.New()
	var head bytes.Buffer
	n, err := io.Copy(h, io.TeeReader(rd, &limitWriter{&head, showBytes}))
	if err != nil {
		return nil, 0, fmt.Errorf("reading /%s: %w", safe(r.rel), err)
	}
	if got := hashing.FromHash(h); got != want {
		return nil, n, fmt.Errorf("%w: /%s has SHA-256 %s, its index says %s; not shown", manifest.ErrCorrupt, safe(r.rel), got.Hex(), want.Hex())
	}
	return head.Bytes(), n, nil
}

// limitWriter keeps the first max bytes written to it.
type limitWriter struct {
	b   *bytes.Buffer
	max int
}

func (w *limitWriter) Write(p []byte) (int, error) {
	if room := w.max - w.b.Len(); room > 0 {
		w.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func isText(b []byte) bool { return bytes.IndexByte(b, 0) < 0 && utf8.Valid(b) }

// textLines numbers the lines of a text, each escaped when it holds
// what a terminal would act on (tabs are expanded).
func textLines(b []byte) []string {
	var out []string
	s := strings.TrimSuffix(string(b), "\n")
	for i, l := range strings.Split(s, "\n") {
		out = append(out, fmt.Sprintf("%6d  %s", i+1, safeLine(l)))
	}
	return out
}

func safeLine(l string) string {
	l = expandTabs(l)
	if textsafe.Clean(l) {
		return l
	}
	return textsafe.Escape(l)
}

func expandTabs(s string) string {
	if !strings.ContainsRune(s, '\t') {
		return s
	}
	var b strings.Builder
	col := 0
	for _, r := range s {
		if r == '\t' {
			n := 8 - col%8
			b.WriteString(strings.Repeat(" ", n))
			col += n
			continue
		}
		b.WriteRune(r)
		col++
	}
	return b.String()
}

// hexLines is a hex dump with offsets, as hexdump -C prints it.
func hexLines(b []byte) []string {
	var out []string
	for off := 0; off < len(b); off += 16 {
		chunk := b[off:min(off+16, len(b))]
		var hx, asc strings.Builder
		for i := 0; i < 16; i++ {
			if i == 8 {
				hx.WriteByte(' ')
			}
			if i < len(chunk) {
				fmt.Fprintf(&hx, "%02x ", chunk[i])
				c := chunk[i]
				if c < 0x20 || c > 0x7e {
					c = '.'
				}
				asc.WriteByte(c)
			} else {
				hx.WriteString("   ")
			}
		}
		out = append(out, fmt.Sprintf("%08x  %s |%s|", off, hx.String(), asc.String()))
	}
	return out
}

// showContent opens the content overlay of row r: a modified file shows
// its diff against the version below.
func (m *Model) showContent(t *tree, r row) {
	if r.rec.Type == fileindex.TypeSymlink {
		m.status = "symlink to " + safe(r.rec.Linkname) + ": amber never follows links"
		return
	}
	if r.rec.Type != fileindex.TypeReg {
		m.status = "no content: a " + view.TypeName(r.rec.Type) + ", not a regular file"
		if r.isDir() {
			m.status = "a directory: space unfolds it"
		}
		return
	}
	b, size, err := t.readVerified(r)
	if err != nil {
		m.status = "error: " + safe(err.Error())
		return
	}
	name, removed := "/"+safe(r.rel), ""
	if r.view != "" {
		name = safe(r.view)
	}
	if r.mark == markRemoved {
		removed = fmt.Sprintf("  (removed; this is the version of layer %d)", r.layer)
	}
	title := fmt.Sprintf("%s  %d bytes%s  verified sha256:%s", name, size, removed, r.rec.SHA256.Hex())
	if r.view != "" {
		title = fmt.Sprintf("%s  %d bytes  verified", name, size)
	}
	if r.mark == markModified && t.below != nil && r.layer == t.layer {
		if lines, ok := m.diffLines(t, r, b, size); ok {
			m.overlay = &overlay{title: "diff " + title, lines: lines}
			return
		}
	}
	var lines []string
	if isText(b) {
		lines = textLines(b)
	} else {
		lines = hexLines(b)
	}
	if size > int64(len(b)) {
		lines = append(lines, fmt.Sprintf("... %d more bytes not shown (all %d hashed and verified)", size-int64(len(b)), size))
	}
	m.overlay = &overlay{title: title, lines: lines}
}

// diffLines compares r with the version the layers below show.
func (m *Model) diffLines(t *tree, r row, b []byte, size int64) ([]string, bool) {
	n, ok, err := t.below.Lookup(r.rel)
	if err != nil || !ok {
		return nil, false
	}
	prev := row{rel: r.rel, rec: n.Rec, layer: n.Layer}
	lines := []string{fmt.Sprintf("against layer %d's version (%s, %d bytes)", n.Layer, view.TypeName(n.Rec.Type), n.Rec.Size)}
	if n.Rec.Type != fileindex.TypeReg {
		return append(lines, "it was a "+view.TypeName(n.Rec.Type)+": no content to compare"), true
	}
	pb, psize, err := t.readVerified(prev)
	if err != nil {
		return append(lines, "error: "+safe(err.Error())), true
	}
	if n.Rec.SHA256 == r.rec.SHA256 {
		return append(lines, "same content; only metadata changed"), true
	}
	lines = append(lines, "")
	whole := size <= int64(len(b)) && psize <= int64(len(pb))
	if whole && isText(b) && isText(pb) {
		la, lb := safe(fmt.Sprintf("layers/%d/%s", n.Layer, r.rel)), safe(fmt.Sprintf("layers/%d/%s", r.layer, r.rel))
		var out []byte
		if m.opts.Diff != nil {
			out = m.opts.Diff(la, lb, pb, b)
		}
		if len(out) > 0 {
			for _, l := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
				// The mark of the line stays in front of its escaped body.
				if l != "" && strings.IndexByte(" +-@", l[0]) >= 0 {
					lines = append(lines, l[:1]+safeLine(l[1:]))
				} else {
					lines = append(lines, safeLine(l))
				}
			}
			return lines, true
		}
		return append(lines, fmt.Sprintf("text, %d lines before, %d now", strings.Count(string(pb), "\n"), strings.Count(string(b), "\n"))), true
	}
	differ := int64(0)
	for i := 0; i < min(len(b), len(pb)); i++ {
		if b[i] != pb[i] {
			differ++
		}
	}
	differ += max(size, psize) - int64(min(len(b), len(pb)))
	what := "binary"
	if isText(b) && isText(pb) {
		what = "text over 1 MiB"
	}
	return append(lines, fmt.Sprintf("%s, %d bytes differ (%d bytes before, %d now)", what, differ, psize, size)), true
}
