package kube

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"
)

// The CRI log format, one line per write of the runtime:
//
//	<RFC3339Nano time> <stdout|stderr> <tags> <text>\n
//
// tags is ":"-separated; its first is "P" for a fragment of a longer line
// (the runtime splits lines at its max_container_log_line_size, 16 KiB by
// default) or "F" for the last fragment. A line of the container is the
// texts of its stream's P fragments, then the F one, joined.

// DefaultMaxLine bounds a joined line: the rest of a longer one is
// skipped and the line flagged Truncated. Kubernetes' own limit on a line
// is 16 KiB per fragment but unbounded in fragments.
const DefaultMaxLine = 1 << 20

// maxProblems bounds the malformed lines a reader remembers; it counts
// them all.
const maxProblems = 100

// LogLine is one line a container wrote, its fragments joined.
type LogLine struct {
	Time   time.Time // of its first fragment: when the line began
	Stream string    // "stdout" or "stderr"
	Text   []byte    // without its newline
	// Truncated: the line was longer than the reader's bound; Text is its
	// beginning.
	Truncated bool
	// Unterminated: the file ended before the line's last fragment (the
	// container was still writing it, or the file was cut).
	Unterminated bool
}

// LogProblem is a malformed line of a log file, skipped.
type LogProblem struct {
	Line   int64  // its number in the file, from 1
	Reason string // what is wrong, with a bounded, quoted excerpt
}

// LogReader reads a CRI log file line by line, with bounded memory
// whatever the file holds: a malformed line is recorded (Problems) and
// skipped, never fatal.
type LogReader struct {
	br       *bufio.Reader
	maxLine  int
	line     int64
	pending  map[string]*LogLine // stream -> the line its P fragments began
	order    []string            // streams with a pending line, first begun first
	problems []LogProblem
	nProblem int64
	eof      bool
}

// NewLogReader reads the CRI log in r; maxLine bounds a joined line
// (DefaultMaxLine when not positive).
func NewLogReader(r io.Reader, maxLine int) *LogReader {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	return &LogReader{br: bufio.NewReaderSize(r, 64<<10), maxLine: maxLine, pending: map[string]*LogLine{}}
}

// Problems are the first malformed lines met so far; MalformedLines
// counts them all.
func (r *LogReader) Problems() []LogProblem { return r.problems }

// MalformedLines is how many lines were malformed and skipped.
func (r *LogReader) MalformedLines() int64 { return r.nProblem }

// Next returns the next complete line, io.EOF after the last; at the end
// of the file, lines whose last fragment never came are returned
// Unterminated. Other errors are the underlying reader's.
func (r *LogReader) Next() (LogLine, error) {
	for !r.eof {
		raw, over, err := r.readRaw()
		if err == io.EOF {
			r.eof = true
			if len(raw) == 0 && !over {
				break
			}
		} else if err != nil {
			return LogLine{}, err
		}
		r.line++
		if l, ok := r.fragment(raw, over); ok {
			return l, nil
		}
	}
	if len(r.order) > 0 {
		s := r.order[0]
		r.order = r.order[1:]
		l := r.pending[s]
		delete(r.pending, s)
		l.Unterminated = true
		return *l, nil
	}
	return LogLine{}, io.EOF
}

// readRaw reads one line of the file without its newline, keeping at most
// a fragment header and maxLine bytes: over says more was skipped.
func (r *LogReader) readRaw() (raw []byte, over bool, err error) {
	limit := r.maxLine + 128 // room for the time, stream and tags
	var buf []byte
	for {
		chunk, err := r.br.ReadSlice('\n')
		if room := limit - len(buf); len(chunk) > room {
			buf = append(buf, chunk[:room]...)
			over = true
		} else {
			buf = append(buf, chunk...)
		}
		switch {
		case err == nil:
			if !over {
				buf = buf[:len(buf)-1]
			}
			return buf, over, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return buf, over, err
		}
	}
}

// fragment takes one raw line: a complete line when it ends one.
func (r *LogReader) fragment(raw []byte, over bool) (LogLine, bool) {
	ts, rest, ok1 := bytes.Cut(raw, []byte{' '})
	stream, rest, ok2 := bytes.Cut(rest, []byte{' '})
	tags, text, ok3 := bytes.Cut(rest, []byte{' '})
	if !ok3 && ok2 && len(rest) > 0 {
		// "<time> <stream> F" with no text at all: an empty line.
		tags, text, ok3 = rest, nil, true
	}
	if !ok1 || !ok2 || !ok3 {
		r.problem(raw, "not <time> <stream> <tags> <text>")
		return LogLine{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		r.problem(raw, "bad time")
		return LogLine{}, false
	}
	s := string(stream)
	if s != "stdout" && s != "stderr" {
		r.problem(raw, "bad stream")
		return LogLine{}, false
	}
	tag, _, _ := bytes.Cut(tags, []byte{':'})
	var partial bool
	switch string(tag) {
	case "P":
		partial = true
	case "F":
	default:
		r.problem(raw, "bad tag")
		return LogLine{}, false
	}
	l := r.pending[s]
	if l == nil {
		l = &LogLine{Time: t, Stream: s}
	}
	if over {
		l.Truncated = true
	}
	if room := r.maxLine - len(l.Text); len(text) > room {
		text = text[:room]
		l.Truncated = true
	}
	l.Text = append(l.Text, text...)
	if partial {
		if r.pending[s] == nil {
			r.pending[s] = l
			r.order = append(r.order, s)
		}
		return LogLine{}, false
	}
	if r.pending[s] != nil {
		delete(r.pending, s)
		for i, o := range r.order {
			if o == s {
				r.order = append(r.order[:i], r.order[i+1:]...)
				break
			}
		}
	}
	return *l, true
}

func (r *LogReader) problem(raw []byte, why string) {
	r.nProblem++
	if len(r.problems) < maxProblems {
		ex := raw
		if len(ex) > 80 {
			ex = ex[:80]
		}
		r.problems = append(r.problems, LogProblem{Line: r.line, Reason: fmt.Sprintf("%s: %q", why, ex)})
	}
}

// timeLayout is Docker's timestamp of a log line (RFC 3339, nanoseconds
// always written), so that a pod's logs/ read like a Docker container's.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// CopyLog writes each line of the CRI log to stdout or stderr as a Docker
// capture stores logs: "<time> <text>\n", the time in UTC. A writer's
// error is returned as the writer gave it.
func (r *LogReader) CopyLog(stdout, stderr io.Writer) error {
	var b []byte
	for {
		l, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading a CRI log: %w", err)
		}
		b = l.Time.UTC().AppendFormat(b[:0], timeLayout)
		b = append(b, ' ')
		b = append(b, l.Text...)
		b = append(b, '\n')
		w := stdout
		if l.Stream == "stderr" {
			w = stderr
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
}
