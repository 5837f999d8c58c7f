package timeline

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

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
	case manifest.TypeDir:
		t = "d"
	case manifest.TypeSymlink:
		t = "l"
	case manifest.TypeChar:
		t = "c"
	case manifest.TypeBlock:
		t = "b"
	case manifest.TypeFifo:
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
}

// Write writes the body file of a to w.
func Write(w io.Writer, a *manifest.Archive, opts Options) error {
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
			if err := writeLayer(bw, a, l, prefix); err != nil {
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
		fmt.Fprintf(bw, "0|%s|0|-/----------|0|0|0|%d|%d|%d|%d\n", Escape(name), t, t, t, t)
	}
	return bw.Flush()
}

func writeLayer(w io.Writer, a *manifest.Archive, l manifest.Layer, prefix string) error {
	ix, err := a.Index(l.Digest)
	if err != nil {
		return err
	}
	for i := uint32(1); i < ix.TreeLen(); i++ {
		r, err := ix.Record(i)
		if err != nil {
			return err
		}
		if r.Has(manifest.FlagImplicit) {
			continue // no tar entry: no times of its own
		}
		name := prefix + "/" + r.Path
		if r.Type == manifest.TypeSymlink {
			name += " -> " + r.Linkname
		}
		size := r.Size
		if r.Type != manifest.TypeReg {
			size = 0
		}
		fmt.Fprintf(w, "0|%s|%d|%s|%d|%d|%d|%d|%d|%d|0\n", Escape(name), r.Ino+2, ModeString(r.Type, r.Mode), r.UID, r.GID, size,
			secs(r.AccessTime), secs(r.ModTime), secs(r.ChangeTime))
	}
	return nil
}
