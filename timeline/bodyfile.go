package timeline

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/view"
)

// Escape makes a name safe for one body-file field: '%' as %25 and '|' as
// %7C (mactime decodes %XX); control bytes as C escapes (\n, \t, \xNN:
// mactime would decode a %0A into a newline and lose the row), a
// backslash doubled. Other bytes, non-UTF-8 ones included, are kept.
func Escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			b.WriteString("%25")
		case c == '|':
			b.WriteString("%7C")
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\r':
			b.WriteString(`\r`)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// ModeString is the body file's mode: a type letter, '/', and ls's mode
// string with the same letter ("r/rrw-r--r--", "d/drwxr-xr-x").
func ModeString(typ byte, mode uint32) string {
	t := "r"
	switch typ {
	case fileindex.TypeDir:
		t = "d"
	case fileindex.TypeSymlink:
		t = "l"
	case fileindex.TypeChar:
		t = "c"
	case fileindex.TypeBlock:
		t = "b"
	case fileindex.TypeFifo:
		t = "p"
	}
	return t + "/" + t + view.ModeString(typ, mode)[1:]
}

func secs(t time.Time) int64 {
	if t.IsZero() || t.Unix() < 0 {
		return 0
	}
	return t.Unix()
}

// Options select what goes into the body file.
type Options struct {
	// Custody events to add as rows (sealed and sidecar).
	Custody []manifest.Event
	// JSON writes one JSON object per row instead of body-file lines.
	JSON bool
}

// Row is one body-file row.
type Row struct {
	MD5        string `json:"md5"`
	Name       string `json:"name"`
	NameBase64 string `json:"name_base64,omitempty"`
	Inode      uint64 `json:"inode"`
	Mode       string `json:"mode"`
	UID        uint32 `json:"uid"`
	GID        uint32 `json:"gid"`
	Size       int64  `json:"size"`
	Atime      int64  `json:"atime"`
	Mtime      int64  `json:"mtime"`
	Ctime      int64  `json:"ctime"`
	Crtime     int64  `json:"crtime"`
}

// write emits one row in the chosen form.
func write(w io.Writer, r Row, asJSON bool) {
	if !asJSON {
		fmt.Fprintf(w, "%s|%s|%d|%s|%d|%d|%d|%d|%d|%d|%d\n", r.MD5, Escape(r.Name), r.Inode, r.Mode, r.UID, r.GID, r.Size, r.Atime, r.Mtime, r.Ctime, r.Crtime)
		return
	}
	if !utf8.ValidString(r.Name) {
		r.NameBase64 = base64.StdEncoding.EncodeToString([]byte(r.Name))
		r.Name = strings.ToValidUTF8(r.Name, "\uFFFD")
	}
	b, _ := json.Marshal(r)
	w.Write(append(b, '\n'))
}

// Write writes the body file of a to w.
func Write(w io.Writer, a *archive.Archive, opts Options) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	m := a.Manifest
	done := map[string]bool{}
	for _, art := range m.Artifacts {
		for i, l := range art.Layers {
			var prefix string
			switch art.Kind {
			case manifest.KindImage:
				prefix = fmt.Sprintf("images/%s/layers/%d", art.Name, i)
			case manifest.KindContainer:
				if i < len(art.Layers)-1 {
					continue // its image's layers are under images/
				}
				prefix = "containers/" + art.Name + "/changes"
			case manifest.KindVolume:
				prefix = "volumes/" + art.Name
			default:
				continue
			}
			if done[prefix] {
				continue
			}
			done[prefix] = true
			if err := writeLayer(bw, a, l, prefix, opts.JSON); err != nil {
				return fmt.Errorf("%s: %w", prefix, err)
			}
		}
	}
	evs := append([]manifest.Event(nil), opts.Custody...)
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	for _, ev := range evs {
		keys := make([]string, 0, len(ev.Details))
		for k := range ev.Details {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var d []string
		for _, k := range keys {
			d = append(d, k+"="+ev.Details[k])
		}
		name := fmt.Sprintf("custody: %s by %s on %s", ev.Action, ev.Actor, ev.Host)
		if len(d) > 0 {
			name += " (" + strings.Join(d, " ") + ")"
		}
		t := secs(ev.Time)
		write(bw, Row{MD5: "0", Name: name, Mode: "-/----------", Atime: t, Mtime: t, Ctime: t, Crtime: t}, opts.JSON)
	}
	return bw.Flush()
}

func writeLayer(w io.Writer, a *archive.Archive, l manifest.Layer, prefix string, asJSON bool) error {
	ix, err := a.Index(l.Digest)
	if err != nil {
		return err
	}
	for i := uint32(1); i < ix.TreeLen(); i++ {
		r, err := ix.Record(i)
		if err != nil {
			return err
		}
		if r.Has(fileindex.FlagImplicit) {
			continue // no tar entry: no times of its own
		}
		name := prefix + "/" + r.Path
		if r.Type == fileindex.TypeSymlink {
			name += " -> " + r.Linkname
		}
		size := r.Size
		if r.Type != fileindex.TypeReg {
			size = 0
		}
		write(w, Row{MD5: "0", Name: name, Inode: uint64(r.Ino) + 2, Mode: ModeString(r.Type, r.Mode), UID: r.UID, GID: r.GID, Size: size,
			Atime: secs(r.AccessTime), Mtime: secs(r.ModTime), Ctime: secs(r.ChangeTime)}, asJSON)
	}
	return nil
}
