//go:build linux

package dockerroot

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/internal/layerstore"
)

// Bounds of the logs: a json-file line holds at most 16 KiB of the
// container's output (Docker cuts longer ones), so a line of more than
// maxLogLine is not one of Docker's and is skipped; a rotated, compressed
// file is read up to maxLogInflate (Docker's max-size bounds the files
// it writes).
const (
	maxLogLine    = 1 << 20
	maxLogInflate = 4 << 30
	maxRotated    = 10000
)

// rfc3339NanoFixed is docker logs --timestamps's time: nine digits always.
const rfc3339NanoFixed = "2006-01-02T15:04:05.000000000Z07:00"

// Logs opens the container's json-file logs: the rotated files oldest
// first (<id>-json.log.N, compressed ones decompressed, ... .1) then the
// live one, each line as docker logs --timestamps prints it. Another log
// driver's logs are not read: the error names it.
func (s *Store) Logs(ctx context.Context, id string, tty bool) (engine.LogStream, error) {
	if !hex64.MatchString(id) {
		return nil, engine.Claimf("container ID %q is not 64 hex digits", id)
	}
	dir := path.Join("containers", id)
	if b, err := s.readFile(path.Join(dir, "hostconfig.json"), maxJSON); err == nil {
		var hc struct{ LogConfig struct{ Type string } }
		if json.Unmarshal(b, &hc) == nil && hc.LogConfig.Type != "" && hc.LogConfig.Type != "json-file" {
			return nil, &engine.Unavailable{Why: "the container's log driver is " + hc.LogConfig.Type + ": only json-file logs are read offline"}
		}
	}
	f, err := layerstore.OpenAt(s.dfd, s.real, dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, fmt.Errorf("container %s's logs: %w", id, err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("container %s's logs: %w", id, err)
	}
	live := id + "-json.log"
	type rotated struct {
		n    int
		name string
	}
	var files []rotated
	hasLive := false
	for _, n := range names {
		if n == live {
			hasLive = true
			continue
		}
		rest, ok := strings.CutPrefix(n, live+".")
		if !ok {
			continue
		}
		num := strings.TrimSuffix(rest, ".gz")
		if k, err := strconv.Atoi(num); err == nil && k > 0 && strconv.Itoa(k) == num {
			files = append(files, rotated{k, n})
		}
	}
	if !hasLive && len(files) == 0 {
		return nil, fmt.Errorf("container %s has no json-file log in %s/%s", id, s.real, dir)
	}
	if len(files) > maxRotated {
		return nil, fmt.Errorf("container %s has %d rotated log files, over the bound of %d: refused", id, len(files), maxRotated)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].n > files[j].n })
	l := &logStream{ctx: ctx, s: s, tty: tty}
	for _, r := range files {
		l.files = append(l.files, path.Join(dir, r.name))
	}
	if hasLive {
		l.files = append(l.files, path.Join(dir, live))
	}
	return l, nil
}

// logStream reads a container's log files in order.
type logStream struct {
	ctx   context.Context
	s     *Store
	tty   bool
	files []string
	// Skipped counts the lines that were not json-file records.
	Skipped int
}

func (l *logStream) Close() error { return nil }

// Copy writes each record as "<time> <text>" to its stream (stdout alone
// with a terminal).
func (l *logStream) Copy(stdout, stderr io.Writer) error {
	for _, name := range l.files {
		if err := l.copyFile(name, stdout, stderr); err != nil {
			return err
		}
	}
	return nil
}

func (l *logStream) copyFile(name string, stdout, stderr io.Writer) error {
	f, err := l.s.open(name)
	if err != nil {
		return fmt.Errorf("reading logs: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(name, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("reading logs %s: %w", f.Name(), err)
		}
		defer zr.Close()
		r = &boundedReader{r: zr, left: maxLogInflate, what: f.Name()}
	} else if fi, err := f.Stat(); err == nil {
		// The size when opened: a file still written ends there.
		r = io.LimitReader(f, fi.Size())
	}
	br := bufio.NewReaderSize(engine.ContextReader(l.ctx, r), 64<<10)
	var rec struct {
		Log    string    `json:"log"`
		Stream string    `json:"stream"`
		Time   time.Time `json:"time"`
	}
	for {
		line, long, err := readLine(br)
		if len(line) > 0 {
			rec.Log, rec.Stream, rec.Time = "", "", time.Time{}
			if long || json.Unmarshal(line, &rec) != nil || (rec.Stream != "stdout" && rec.Stream != "stderr") {
				l.Skipped++
			} else {
				w := stdout
				if rec.Stream == "stderr" && !l.tty {
					w = stderr
				}
				if _, werr := io.WriteString(w, rec.Time.UTC().Format(rfc3339NanoFixed)+" "+rec.Log); werr != nil {
					return werr
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if l.ctx.Err() != nil {
				return l.ctx.Err()
			}
			return fmt.Errorf("reading logs %s: %w", f.Name(), err)
		}
	}
}

// readLine reads one line of at most maxLogLine bytes; a longer one is
// consumed and reported long.
func readLine(br *bufio.Reader) ([]byte, bool, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) <= maxLogLine {
			buf = append(buf, chunk...)
		} else {
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			if err != nil && err != io.EOF {
				return nil, true, err
			}
			return []byte{'x'}, true, err
		}
		if err != bufio.ErrBufferFull {
			return buf, false, err
		}
	}
}

// boundedReader ends a decompression past its bound with an error.
type boundedReader struct {
	r    io.Reader
	left int64
	what string
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("%s decompresses to more than %d bytes: refused", b.what, int64(maxLogInflate))
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}
