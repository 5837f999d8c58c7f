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
	"strings"
	"time"

	"github.com/amber-forensics/amber/hashing"
)

// Event is one line of a custody log. Prev is the SHA-256 of the previous
// line's exact bytes (without its newline), so editing, removing or
// reordering any line breaks the chain from there on. In the sidecar,
// details "sha256" (and "md5", "sha1") are always the whole archive's, as
// the event's actor found it: verify checks every one against the file.
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
// interleaved between processes. A new file is created 0600 (the umask can
// only narrow it): the log names the examiner, hosts and paths.
func AppendCustody(path string, sealedHead hashing.Digest, sealedEvents int, e Event) error {
	_, _, err := AppendCustodyHead(path, sealedHead, sealedEvents, e)
	return err
}

// AppendCustodyHead is AppendCustody, returning the log's new head (the
// SHA-256 of the line it wrote) and the event's seq.
//
// The event is dated when it is written, under the lock: a process that
// took its time before waiting for another's append would otherwise write
// an event dated before the one it follows, which verify reports.
func AppendCustodyHead(path string, sealedHead hashing.Digest, sealedEvents int, e Event) (hashing.Digest, int, error) {
	return AppendCustodyAt(path, sealedHead, sealedEvents, e, nil)
}

// AppendCustodyAt is AppendCustodyHead with the clock that dates the event
// (nil: time.Now): a reproducible capture passes a fixed one.
func AppendCustodyAt(path string, sealedHead hashing.Digest, sealedEvents int, e Event, now func() time.Time) (hashing.Digest, int, error) {
	if now == nil {
		now = time.Now
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return hashing.Digest{}, 0, fmt.Errorf("opening custody log: %w", err)
	}
	defer f.Close()
	// Two amber processes on one archive (a mount and a verify) must not
	// both chain from the same line.
	if err := lockFile(f); err != nil {
		return hashing.Digest{}, 0, fmt.Errorf("locking custody log: %w", err)
	}
	defer unlockFile(f)
	st, err := f.Stat()
	if err != nil {
		return hashing.Digest{}, 0, fmt.Errorf("custody log: %w", err)
	}
	evs, head, err := ParseCustody(io.NewSectionReader(f, 0, st.Size()), sealedHead, sealedEvents)
	if err != nil {
		return hashing.Digest{}, 0, fmt.Errorf("custody log %s: %w", path, err)
	}
	seq := sealedEvents + len(evs)
	e.Time = now()
	c := NewChain(head, seq)
	line, err := c.Append(e)
	if err != nil {
		return hashing.Digest{}, 0, err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		return hashing.Digest{}, 0, fmt.Errorf("writing custody log: %w", err)
	}
	if err := f.Sync(); err != nil {
		return hashing.Digest{}, 0, fmt.Errorf("syncing custody log: %w", err)
	}
	return c.Head(), seq, nil
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

// The custody sidecar's last line is covered by no later prev: anyone who
// can write the file can edit it (a "verified result=FAILED" made
// "intact") and the chain still holds. What protects it is its hash, the
// chain's head, noted outside the archive (case notes) and given back
// later: HeadSeq finds it in the chain.

// HeadSeq finds want among the lines of a checked chain, whose events are
// evs (the sealed ones first) and whose last line hashes to head. It
// returns the index in evs of the line whose SHA-256 is want. A line can
// only be found if it and every line before it are as they were when the
// head was noted.
func HeadSeq(evs []Event, head, want hashing.Digest) (int, bool) {
	for i := range evs {
		h := head
		if i+1 < len(evs) {
			h = evs[i+1].Prev // a checked chain: the next line's prev is this line's hash
		}
		if h == want {
			return i, true
		}
	}
	return -1, false
}

// HeadMissing is the problem of a head noted earlier that HeadSeq did not
// find; chainOK says whether the whole chain was searched, or only the
// lines before a break.
func HeadMissing(want hashing.Digest, chainOK bool) Problem {
	d := fmt.Sprintf("the head noted earlier, %s, is no line of the log: the event it was noted after, or one before it, was edited or removed", want)
	if !chainOK {
		d = fmt.Sprintf("the head noted earlier, %s, is none of the lines before the break in the chain", want)
	}
	return Problem{Where: "custody log head", Detail: d, Custody: true}
}

// CustodyWhere names an event for a report: its seq and action, and
// whether it is sealed inside the archive or in the sidecar.
func CustodyWhere(e Event, sealed bool) string {
	w := fmt.Sprintf("custody log seq %d (%s, %s)", e.Seq, e.Action, e.Time.UTC().Format(time.RFC3339))
	if sealed {
		return "sealed " + w
	}
	return w
}

// TimeOrder reports each event dated before the event it follows, by seq:
// a time edited, or a clock set wrong where the event was recorded. No
// skew is allowed: amber writes the events of one log in order. evs are
// the sealed events (the first sealed of them) then the sidecar's.
func TimeOrder(evs []Event, sealed int) []Problem {
	var out []Problem
	for i := 1; i < len(evs); i++ {
		if evs[i].Time.Before(evs[i-1].Time) {
			p := evs[i-1]
			out = append(out, Problem{Where: CustodyWhere(evs[i], i < sealed), Custody: true,
				Detail: fmt.Sprintf("is dated %s, before seq %d (%s) that it follows, dated %s: the events are out of time order (a time was edited, or a clock was wrong)",
					evs[i].Time.UTC().Format(time.RFC3339Nano), p.Seq, p.Action, p.Time.UTC().Format(time.RFC3339Nano))})
		}
	}
	return out
}

// Renamed reports an archive whose custody log records it written under
// another name than base, its file name now: the output of
// acquisition-started (sealed inside the archive) and the archive of the
// sidecar's sealed event. Renaming changes no byte, so it is a warning,
// not a failure.
func Renamed(evs []Event, base string) (Problem, bool) {
	var names, where []string
	seen := map[string]bool{}
	for _, e := range evs {
		n := ""
		switch e.Action {
		case "acquisition-started":
			n = e.Details["output"]
		case "sealed":
			n = e.Details["archive"]
		}
		if n == "" || n == base {
			continue
		}
		where = append(where, fmt.Sprintf("seq %d %s", e.Seq, e.Action))
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return Problem{}, false
	}
	return Problem{Where: "archive name", Custody: true,
		Detail: fmt.Sprintf("sealed as %s (custody log %s); this file is %s: renamed after capture (its hashes are checked all the same)",
			strings.Join(names, ", "), strings.Join(where, ", "), base)}, true
}

// Problem is one verification failure: where, and what is wrong.
type Problem struct {
	Where  string `json:"where"`
	Detail string `json:"detail"`
	// Custody marks a finding about the custody log (its chain, its
	// events' times, the archive hashes they record, the head noted
	// earlier), not about the archive's own bytes and hashes.
	Custody bool `json:"custody,omitempty"`
}

func (p Problem) String() string { return p.Where + ": " + p.Detail }
