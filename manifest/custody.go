package manifest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/amber-forensics/amber/hashing"
)

// Event is one line of a custody log. Prev is the SHA-256 of the previous
// line's exact bytes (without its newline), so editing, removing or
// reordering any line breaks the chain from there on.
type Event struct {
	Seq     int               `json:"seq"`
	Time    time.Time         `json:"time"`
	Actor   string            `json:"actor"`
	Host    string            `json:"host"`
	Action  string            `json:"action"`
	Details map[string]string `json:"details,omitempty"`
	Prev    hashing.Digest    `json:"prev,omitzero"`
}

// ErrChainBroken reports a custody log whose hash chain does not hold.
var ErrChainBroken = errors.New("manifest: custody chain broken")

// Chain builds a custody log.
type Chain struct {
	lines [][]byte
	head  hashing.Digest
	seq   int
}

// NewChain starts a chain after head (zero for a new log) whose next event
// has number seq.
func NewChain(head hashing.Digest, seq int) *Chain { return &Chain{head: head, seq: seq} }

// Append adds an event, filling in Seq and Prev, and returns its line.
func (c *Chain) Append(e Event) ([]byte, error) {
	e.Seq = c.seq
	e.Prev = c.head
	e.Time = e.Time.UTC()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, fmt.Errorf("encoding custody event: %w", err)
	}
	line := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	c.lines = append(c.lines, line)
	c.head = hashing.Sum(line)
	c.seq++
	return line, nil
}

// Head is the hash of the last line (what the next event's Prev will be).
func (c *Chain) Head() hashing.Digest { return c.head }

// Len is the number of events appended.
func (c *Chain) Len() int { return len(c.lines) }

// Bytes is the log as JSON lines.
func (c *Chain) Bytes() []byte {
	var b bytes.Buffer
	for _, l := range c.lines {
		b.Write(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// ParseCustody reads a custody log and checks its chain starting from head
// (zero for the sealed log inside an archive) and sequence number seq. It
// returns the events read so far together with the first break found.
func ParseCustody(r io.Reader, head hashing.Digest, seq int) ([]Event, hashing.Digest, error) {
	sc := bufio.NewScanner(io.LimitReader(r, MaxCustodySize+1))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var evs []Event
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		var e Event
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return evs, head, fmt.Errorf("%w: line %d is not a custody event: %v", ErrChainBroken, n, err)
		}
		if e.Prev != head {
			return evs, head, fmt.Errorf("%w: line %d (seq %d, %s) does not follow the line before it (prev %s, expected %s)", ErrChainBroken, n, e.Seq, e.Action, short(e.Prev), short(head))
		}
		if e.Seq != seq {
			return evs, head, fmt.Errorf("%w: line %d has seq %d, expected %d", ErrChainBroken, n, e.Seq, seq)
		}
		evs = append(evs, e)
		head = hashing.Digest(sha256.Sum256(line))
		seq++
	}
	if err := sc.Err(); err != nil {
		return evs, head, fmt.Errorf("%w: line %d: %v", ErrChainBroken, n+1, err)
	}
	return evs, head, nil
}

func short(d hashing.Digest) string {
	if d.IsZero() {
		return "none"
	}
	return d.Hex()[:16]
}

// AppendCustody appends one event to the custody sidecar at path, chained
// from the last line there, or from sealedHead when the file does not exist
// yet. The file is opened O_APPEND and synced, so events are never lost or
// interleaved between processes.
func AppendCustody(path string, sealedHead hashing.Digest, sealedEvents int, e Event) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("opening custody log: %w", err)
	}
	defer f.Close()
	// Two amber processes on one archive (a mount and a verify) must not
	// both chain from the same line.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("locking custody log: %w", err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("custody log: %w", err)
	}
	evs, head, err := ParseCustody(io.NewSectionReader(f, 0, st.Size()), sealedHead, sealedEvents)
	if err != nil {
		return fmt.Errorf("custody log %s: %w", path, err)
	}
	c := NewChain(head, sealedEvents+len(evs))
	line, err := c.Append(e)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("writing custody log: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing custody log: %w", err)
	}
	return nil
}

// ParseCustodyFile is ParseCustody on a file.
func ParseCustodyFile(path string, head hashing.Digest, seq int) ([]Event, hashing.Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, head, err
	}
	defer f.Close()
	return ParseCustody(f, head, seq)
}
