package kube

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

func readAll(t *testing.T, r *LogReader) []LogLine {
	t.Helper()
	var out []LogLine
	for {
		l, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
}

const t0 = "2026-12-02T02:46:07.139127829Z"

func TestLogReaderJoinsPartials(t *testing.T) {
	in := t0 + " stdout P hel\n" +
		"2026-12-02T02:46:08Z stderr F oops\n" +
		"2026-12-02T02:46:09.5+01:00 stdout P lo \n" +
		"2026-12-02T02:46:10Z stdout F:x world\n" +
		"2026-12-02T02:46:11Z stdout F\n" +
		"2026-12-02T02:46:12Z stderr P never ended"
	r := NewLogReader(strings.NewReader(in), 0)
	got := readAll(t, r)
	want := []struct {
		stream, text string
		unterminated bool
	}{{"stderr", "oops", false}, {"stdout", "hello world", false}, {"stdout", "", false}, {"stderr", "never ended", true}}
	if len(got) != len(want) {
		t.Fatalf("got %d lines %+v", len(got), got)
	}
	for i, w := range want {
		if got[i].Stream != w.stream || string(got[i].Text) != w.text || got[i].Unterminated != w.unterminated || got[i].Truncated {
			t.Errorf("line %d: %+v, want %+v", i, got[i], w)
		}
	}
	if first, _ := time.Parse(time.RFC3339Nano, t0); !got[1].Time.Equal(first) {
		t.Errorf("a joined line has the time %v, want its first fragment's %v", got[1].Time, first)
	}
	if r.MalformedLines() != 0 {
		t.Errorf("problems %v", r.Problems())
	}
}

// TestLogReaderHostileLines: malformed lines are flagged with their line
// number and skipped; the lines around them are read.
func TestLogReaderHostileLines(t *testing.T) {
	in := t0 + " stdout F before\n" +
		"yesterday stdout F bad time\n" +
		t0 + " stdin F bad stream\n" +
		t0 + " stdout X bad tag\n" +
		"nospaces\n" +
		"\n" +
		t0 + " stdout\n" +
		"\x00\xff\xfe binary\n" +
		t0 + " stdout F after\n"
	r := NewLogReader(strings.NewReader(in), 0)
	got := readAll(t, r)
	if len(got) != 2 || string(got[0].Text) != "before" || string(got[1].Text) != "after" {
		t.Fatalf("lines %+v", got)
	}
	if r.MalformedLines() != 7 {
		t.Fatalf("malformed %d: %v", r.MalformedLines(), r.Problems())
	}
	for i, want := range []string{"bad time", "bad stream", "bad tag", "not <time>", "not <time>", "not <time>", "not <time>"} {
		p := r.Problems()[i]
		if p.Line != int64(i+2) || !strings.HasPrefix(p.Reason, want) {
			t.Errorf("problem %d: %+v, want line %d %q", i, p, i+2, want)
		}
	}
}

// TestLogReaderHugeLines: a line far over the bound, with or without a
// newline, with or without a header, and a line of endless fragments are
// cut at the bound (flagged), and the reader goes on after them.
func TestLogReaderHugeLines(t *testing.T) {
	const max = 1000
	huge := strings.Repeat("A", 5<<20)
	var in bytes.Buffer
	in.WriteString(t0 + " stdout F " + huge + "\n")
	in.WriteString(huge + "\n") // no header at all
	for i := 0; i < 50; i++ {
		in.WriteString(t0 + " stderr P " + strings.Repeat("b", 100) + "\n")
	}
	in.WriteString(t0 + " stderr F end\n")
	in.WriteString(t0 + " stdout F ok\n")
	in.WriteString(t0 + " stdout F " + huge) // no newline at the end
	r := NewLogReader(&in, max)
	got := readAll(t, r)
	if len(got) != 4 {
		t.Fatalf("%d lines", len(got))
	}
	for i, l := range got {
		if i == 2 {
			if string(l.Text) != "ok" || l.Truncated {
				t.Errorf("line after the huge ones: %q truncated %v", l.Text, l.Truncated)
			}
			continue
		}
		if len(l.Text) != max || !l.Truncated {
			t.Errorf("line %d: %d bytes, truncated %v; want %d, true", i, len(l.Text), l.Truncated, max)
		}
	}
	if got[1].Stream != "stderr" || got[1].Text[0] != 'b' {
		t.Errorf("joined fragments: %s %.10q", got[1].Stream, got[1].Text)
	}
	if r.MalformedLines() != 1 || !strings.Contains(r.Problems()[0].Reason, "AAAA") || len(r.Problems()[0].Reason) > 200 {
		t.Errorf("problems %v", r.Problems())
	}
}

func TestLogReaderProblemsBounded(t *testing.T) {
	var in strings.Builder
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&in, "garbage %d\n", i)
	}
	r := NewLogReader(strings.NewReader(in.String()), 0)
	if got := readAll(t, r); len(got) != 0 {
		t.Fatalf("lines %v", got)
	}
	if r.MalformedLines() != 1000 || len(r.Problems()) != maxProblems {
		t.Errorf("counted %d, kept %d", r.MalformedLines(), len(r.Problems()))
	}
}

// TestCopyLog: lines go to their stream with Docker's timestamp, in UTC.
func TestCopyLog(t *testing.T) {
	in := "2026-12-02T03:46:07.1+01:00 stdout F one\n" + t0 + " stderr F two\n" + t0 + " stdout P th\n" + t0 + " stdout F ree\n"
	var out, errs bytes.Buffer
	if err := NewLogReader(strings.NewReader(in), 0).CopyLog(&out, &errs); err != nil {
		t.Fatal(err)
	}
	if want := "2026-12-02T02:46:07.100000000Z one\n" + t0 + " three\n"; out.String() != want {
		t.Errorf("stdout %q, want %q", out.String(), want)
	}
	if want := t0 + " two\n"; errs.String() != want {
		t.Errorf("stderr %q, want %q", errs.String(), want)
	}
}

func FuzzLogReader(f *testing.F) {
	f.Add([]byte(t0 + " stdout P a\n" + t0 + " stdout F b\nbad\n" + t0 + " stderr P x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewLogReader(bytes.NewReader(b), 64)
		for n := 0; ; n++ {
			l, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil || len(l.Text) > 64 || n > len(b) {
				t.Fatalf("line %d: %+v %v", n, l, err)
			}
		}
	})
}
