package podman

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// Logs opens the log file of podman's k8s-file log driver,
// <graphroot>/overlay-containers/<id>/userdata/ctr.log (its default
// place). With the journald driver the logs are in the journal
// (journalctl CONTAINER_ID_FULL=<id>), not read here: the error says so.
// The file is read up to its size when opened: the container may go on
// writing.
func (s *Storage) Logs(ctx context.Context, id string, tty bool) (engine.LogStream, error) {
	if !fullID.MatchString(id) {
		return nil, engine.Claimf("container ID %q is not 64 hex digits", id)
	}
	rel := filepath.Join(s.driver+"-containers", id, "userdata", "ctr.log")
	if s.offline {
		// libpod's record names the log file: it must lie in the
		// graph root (the dead host's path), read beneath it.
		m, _ := s.loadLibpod()
		if c := m[id]; c != nil && c.LogPath != "" {
			if c.LogDriver != "" && c.LogDriver != "k8s-file" {
				return nil, fmt.Errorf("container %s logs with podman's %s driver: only k8s-file logs are read offline", id, c.LogDriver)
			}
			r, ok := s.inGraph(c.LogPath)
			if !ok {
				return nil, engine.Claimf("libpod's database places the log of container %s at %s, outside the graph root %s: refused", id, c.LogPath, s.graphGiven)
			}
			rel = r
		}
	}
	f, err := openBeneath(s.root, rel, true)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no k8s-file log at %s: podman's log driver for this container is journald (journalctl CONTAINER_ID_FULL=%s), none, or a --log-opt path amber does not read", filepath.Join(s.root, rel), id)
	}
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &logStream{ctx: ctx, f: f, size: st.Size()}, nil
}

type logStream struct {
	ctx  context.Context
	f    *os.File
	size int64
}

func (l *logStream) Close() error { return l.f.Close() }

// Copy turns k8s-file lines ("<RFC 3339 time> stdout|stderr F|P <text>",
// P for a line the runtime cut) into docker logs --timestamps lines
// ("<time> <text>") on their stream. A line in no such form is passed to
// stdout as it is.
func (l *logStream) Copy(stdout, stderr io.Writer) error {
	br := bufio.NewReaderSize(engine.ContextReader(l.ctx, io.LimitReader(l.f, l.size)), 64<<10)
	// open: the stream whose line was cut (P), to be continued without
	// a timestamp.
	var open io.Writer
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if werr := l.line(line, err == bufio.ErrBufferFull, br, &open, stdout, stderr); werr != nil {
				return werr
			}
		}
		switch err {
		case nil, bufio.ErrBufferFull:
			continue
		case io.EOF:
			return nil
		}
		return err
	}
}

// line writes one line (its first chunk when long: the rest follows to
// the same stream).
func (l *logStream) line(line []byte, more bool, br *bufio.Reader, open *io.Writer, stdout, stderr io.Writer) error {
	w, text, partial := io.Writer(stdout), line, false
	var ts []byte
	f := bytes.SplitN(line, []byte(" "), 4)
	if len(f) == 4 && (string(f[2]) == "F" || string(f[2]) == "P") && (string(f[1]) == "stdout" || string(f[1]) == "stderr") {
		if _, err := time.Parse(time.RFC3339Nano, string(f[0])); err == nil {
			ts, text, partial = f[0], f[3], string(f[2]) == "P"
			if string(f[1]) == "stderr" {
				w = stderr
			}
		}
	}
	if ts != nil && *open != w {
		if _, err := fmt.Fprintf(w, "%s ", ts); err != nil {
			return err
		}
	}
	if partial {
		text = bytes.TrimSuffix(text, []byte("\n"))
		*open = w
	} else {
		*open = nil
	}
	if _, err := w.Write(text); err != nil {
		return err
	}
	for more {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			if partial && err == nil {
				chunk = bytes.TrimSuffix(chunk, []byte("\n"))
			}
			if _, werr := w.Write(chunk); werr != nil {
				return werr
			}
		}
		if err != bufio.ErrBufferFull {
			break
		}
	}
	return nil
}
