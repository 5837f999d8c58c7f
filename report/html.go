package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/textsafe"
)

//go:embed report.html.tmpl
var pageText string

// page is parsed once: the template is part of the program.
var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"esc":     textsafe.Escape,
	"utc":     utc,
	"bytes":   humanBytes,
	"cmdline": cmdline,
	"keys":    sortedKeys,
	"join":    strings.Join,
	"digest":  digestText,
	"add":     func(a, b int) int { return a + b },
	"seconds": func(s float64) string { return fmt.Sprintf("%.1f s", s) },
}).Parse(pageText))

// WriteHTML renders r as one self-contained HTML page: inline CSS, no
// script, nothing fetched. html/template escapes every value for where it
// lands; evidence strings are first made visible with textsafe.Escape
// (a newline in a name shows as \n inside quotes, not as a line break).
func WriteHTML(w io.Writer, r *Report) error {
	if err := page.Execute(w, r); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	return nil
}

// utc formats a time as ISO 8601 in UTC, to the second.
func utc(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02T15:04:05Z")
}

// humanBytes gives the exact count and, from a KiB up, a rounded size.
func humanBytes(n int64) string {
	s := fmt.Sprintf("%d bytes", n)
	units := []string{"KiB", "MiB", "GiB", "TiB"}
	f, u := float64(n), ""
	for _, x := range units {
		if f < 1024 {
			break
		}
		f, u = f/1024, x
	}
	if u != "" {
		s += fmt.Sprintf(" (%.1f %s)", f, u)
	}
	return s
}

// cmdline shows a command line as one line a shell would take back: each
// argument escaped as evidence is, then quoted when it holds a space or
// a shell character.
func cmdline(args []string) string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		e := textsafe.Escape(a)
		if e == a && (a == "" || strings.ContainsAny(a, " \t'\"\\$`|&;<>()*?[]{}!#~")) {
			e = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out = append(out, e)
	}
	return strings.Join(out, " ")
}

// digestText is a digest as amber prints it, or a dash for none.
func digestText(d hashing.Digest) string {
	if d.IsZero() {
		return "—"
	}
	return d.String()
}
