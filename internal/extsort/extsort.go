package extsort

import (
	"bufio"
	"bytes"
	"cmp"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/amber-forensics/amber/internal/tmpfile"
)

// Config says where a Sorter or Spool keeps its temp files and how much
// it holds in memory. Zero fields take the defaults; tests make them tiny
// so that every path spills.
type Config struct {
	// Dir holds the temp files ("": the system's temp directory).
	Dir string
	// SortBudget is the memory a Sorter gathers items in before it writes
	// them out, sorted, as a run (default 8 MiB).
	SortBudget int
	// SpoolBudget is what a Spool holds before it moves to a file (default
	// 4 MiB).
	SpoolBudget int
	// FanIn is how many runs one merge reads at once (default 64; at least
	// 2).
	FanIn int
}

func (c Config) sortBudget() int  { return cmp.Or(c.SortBudget, 8<<20) }
func (c Config) spoolBudget() int { return cmp.Or(c.SpoolBudget, 4<<20) }
func (c Config) fanIn() int       { return max(cmp.Or(c.FanIn, 64), 2) }

// ErrCorrupt reports temp data that does not read back as written.
var ErrCorrupt = errors.New("manifest: index build's temp data is corrupt")

// ErrTempSpace reports that an index build could not write its temp files
// (a full disk, no such directory): a fault of the machine, not of the
// evidence.
var ErrTempSpace = errors.New("index build's temp space")

// TempFile makes a temp file in dir with no name (TempFile): nothing is
// left behind whatever ends the process; no room for it is ErrTempSpace.
func TempFile(dir string) (*os.File, error) {
	f, err := tmpfile.TempFile(dir, ".amber-index-*")
	if err != nil {
		return nil, fmt.Errorf("%w (in %s): %w", ErrTempSpace, dir, err)
	}
	return f, nil
}

// Sorter sorts items, each a key and a payload, by key (bytes.Compare;
// keys are unique) in bounded memory: items gather in a buffer; a full
// buffer is sorted and written as a run to a temp file, and the runs are
// merged as the items are read. Items that fit in one buffer never touch
// a file. Once read, a Sorter can be read again, until it is closed.
type Sorter struct {
	cfg   Config
	buf   []byte
	spans []span
	f     *os.File
	w     *bufio.Writer
	end   int64 // of what was written to f
	runs  []run
	done  bool
	n     int64
}

type span struct{ off, klen, plen uint32 }

type run struct{ off, n int64 }

// New makes an empty Sorter.
func New(cfg Config) *Sorter { return &Sorter{cfg: cfg} }

// NewSpool makes an empty Spool.
func NewSpool(cfg Config) *Spool { return &Spool{cfg: cfg} }

// Add copies an item in.
func (s *Sorter) Add(key, payload []byte) error {
	if s.done {
		return errors.New("manifest: Sorter: add after read")
	}
	if len(s.buf)+len(key)+len(payload) > 1<<31 {
		return fmt.Errorf("manifest: Sorter: item of %d bytes", len(key)+len(payload))
	}
	s.spans = append(s.spans, span{uint32(len(s.buf)), uint32(len(key)), uint32(len(payload))})
	s.buf = append(s.buf, key...)
	s.buf = append(s.buf, payload...)
	s.n++
	if len(s.buf)+len(s.spans)*12 >= s.cfg.sortBudget() {
		return s.spill()
	}
	return nil
}

func (s *Sorter) key(sp span) []byte { return s.buf[sp.off : sp.off+sp.klen] }

func (s *Sorter) sortBuf() {
	slices.SortFunc(s.spans, func(a, b span) int { return bytes.Compare(s.key(a), s.key(b)) })
}

// spill writes the buffer as a sorted run.
func (s *Sorter) spill() error {
	if len(s.spans) == 0 {
		return nil
	}
	if s.f == nil {
		f, err := TempFile(s.cfg.Dir)
		if err != nil {
			return err
		}
		s.f, s.w = f, bufio.NewWriterSize(f, 256<<10)
	}
	s.sortBuf()
	start := s.end
	for _, sp := range s.spans {
		s.write(s.key(sp), s.buf[sp.off+sp.klen:sp.off+sp.klen+sp.plen])
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("%w: %w", ErrTempSpace, err)
	}
	s.runs = append(s.runs, run{start, s.end - start})
	s.buf, s.spans = s.buf[:0], s.spans[:0]
	return nil
}

// write appends an item to the run being written (errors show at Flush).
func (s *Sorter) write(key, payload []byte) {
	var hdr [2 * binary.MaxVarintLen32]byte
	h := binary.AppendUvarint(hdr[:0], uint64(len(key)))
	h = binary.AppendUvarint(h, uint64(len(payload)))
	s.w.Write(h)
	s.w.Write(key)
	s.w.Write(payload)
	s.end += int64(len(h) + len(key) + len(payload))
}

// Finish ends the adding: the last run written, and runs merged until
// one merge can read them all at once.
func (s *Sorter) Finish() error {
	if s.done {
		return nil
	}
	s.done = true
	if s.f == nil {
		s.sortBuf()
		return nil
	}
	if err := s.spill(); err != nil {
		return err
	}
	s.buf, s.spans = nil, nil
	for len(s.runs) > s.cfg.fanIn() {
		m := s.merger(s.runs[:s.cfg.fanIn()])
		start := s.end
		for {
			k, p, ok := m.next()
			if !ok {
				break
			}
			s.write(k, p)
		}
		if m.err != nil {
			return m.err
		}
		if err := s.w.Flush(); err != nil {
			return fmt.Errorf("%w: %w", ErrTempSpace, err)
		}
		s.runs = append(s.runs[s.cfg.fanIn():], run{start, s.end - start})
	}
	return nil
}

// Iter reads the items in key order.
func (s *Sorter) Iter() (*Iterator, error) {
	if err := s.Finish(); err != nil {
		return nil, err
	}
	if s.f == nil {
		return &Iterator{mem: s, i: -1}, nil
	}
	return &Iterator{m: s.merger(s.runs)}, nil
}

// Each calls fn with the items in key order (the slices valid during the
// call), stopping at fn's first error.
func (s *Sorter) Each(fn func(key, payload []byte) error) error {
	it, err := s.Iter()
	if err != nil {
		return err
	}
	for {
		k, p, ok := it.Next()
		if !ok {
			return it.Err()
		}
		if err := fn(k, p); err != nil {
			return err
		}
	}
}

// Close lets the Sorter's memory and temp file go.
func (s *Sorter) Close() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	s.buf, s.spans, s.runs = nil, nil, nil
}

// Iterator reads a Sorter's items in order. The slices Next returns are
// valid until it is called again.
type Iterator struct {
	mem *Sorter
	i   int
	m   *merger
}

func (it *Iterator) Next() (key, payload []byte, ok bool) {
	if it.m != nil {
		return it.m.next()
	}
	it.i++
	if it.i >= len(it.mem.spans) {
		return nil, nil, false
	}
	sp := it.mem.spans[it.i]
	return it.mem.buf[sp.off : sp.off+sp.klen], it.mem.buf[sp.off+sp.klen : sp.off+sp.klen+sp.plen], true
}

// err is what stopped the reading early, if anything did.
func (it *Iterator) Err() error {
	if it.m != nil {
		return it.m.err
	}
	return nil
}

// merger merges sorted runs.
type merger struct {
	h    runHeap
	last *runReader // advanced on the next call
	err  error
}

type runReader struct {
	r    *bufio.Reader
	k, p []byte
	buf  []byte
}

func (s *Sorter) merger(runs []run) *merger {
	m := &merger{}
	for _, r := range runs {
		rr := &runReader{r: bufio.NewReaderSize(io.NewSectionReader(s.f, r.off, r.n), 64<<10)}
		if m.advance(rr) {
			m.h = append(m.h, rr)
		}
	}
	heap.Init(&m.h)
	return m
}

// advance reads rr's next item; false at its end or on an error.
func (m *merger) advance(rr *runReader) bool {
	kl, err := binary.ReadUvarint(rr.r)
	if err == io.EOF {
		return false
	}
	pl, err2 := binary.ReadUvarint(rr.r)
	if err != nil || err2 != nil || kl > 1<<31 || pl > 1<<31 {
		m.fail(fmt.Errorf("%w: a run's item header: %v %v", ErrCorrupt, err, err2))
		return false
	}
	n := int(kl + pl)
	if cap(rr.buf) < n {
		rr.buf = make([]byte, n, max(n, 2*cap(rr.buf)))
	}
	rr.buf = rr.buf[:n]
	if _, err := io.ReadFull(rr.r, rr.buf); err != nil {
		m.fail(fmt.Errorf("%w: reading a run: %v", ErrCorrupt, err))
		return false
	}
	rr.k, rr.p = rr.buf[:kl], rr.buf[kl:]
	return true
}

func (m *merger) fail(err error) {
	if m.err == nil {
		m.err = err
	}
}

func (m *merger) next() (key, payload []byte, ok bool) {
	if m.last != nil {
		if m.advance(m.last) {
			heap.Fix(&m.h, 0)
		} else {
			heap.Pop(&m.h)
		}
		m.last = nil
	}
	if m.err != nil || len(m.h) == 0 {
		return nil, nil, false
	}
	rr := m.h[0]
	m.last = rr
	return rr.k, rr.p, true
}

type runHeap []*runReader

func (h runHeap) Len() int           { return len(h) }
func (h runHeap) Less(i, j int) bool { return bytes.Compare(h[i].k, h[j].k) < 0 }
func (h runHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)        { *h = append(*h, x.(*runReader)) }
func (h *runHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Spool holds bytes written once and read back whole, any number of
// times: in memory up to s.cfg.spoolBudget(), past it in a temp file.
type Spool struct {
	cfg Config
	mem []byte
	f   *os.File
	w   *bufio.Writer
	n   int64
	err error
}

func (s *Spool) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	s.n += int64(len(p))
	if s.f == nil && len(s.mem)+len(p) <= s.cfg.spoolBudget() {
		s.mem = append(s.mem, p...)
		return len(p), nil
	}
	if s.f == nil {
		f, err := TempFile(s.cfg.Dir)
		if err != nil {
			s.err = err
			return 0, err
		}
		s.f, s.w = f, bufio.NewWriterSize(f, 256<<10)
		if _, err := s.w.Write(s.mem); err != nil {
			s.err = fmt.Errorf("%w: %w", ErrTempSpace, err)
			return 0, s.err
		}
		s.mem = nil
	}
	if _, err := s.w.Write(p); err != nil {
		s.err = fmt.Errorf("%w: %w", ErrTempSpace, err)
		return 0, s.err
	}
	return len(p), nil
}

func (s *Spool) WriteString(p string) (int, error) {
	if s.f == nil && len(s.mem)+len(p) <= s.cfg.spoolBudget() {
		s.n += int64(len(p))
		s.mem = append(s.mem, p...)
		return len(p), nil
	}
	return s.Write([]byte(p))
}

// Finish flushes what was written.
func (s *Spool) Finish() error {
	if s.err == nil && s.w != nil {
		if err := s.w.Flush(); err != nil {
			s.err = fmt.Errorf("%w: %w", ErrTempSpace, err)
		}
	}
	return s.err
}

// Reader reads it all from the start.
func (s *Spool) Reader() io.Reader {
	if s.f == nil {
		return bytes.NewReader(s.mem)
	}
	return io.NewSectionReader(s.f, 0, s.n)
}

// Close lets the Spool's memory and temp file go.
func (s *Spool) Close() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	s.mem = nil
}

// Len is how many items were added.
func (s *Sorter) Len() int64 { return s.n }

// Len is how many bytes were written.
func (s *Spool) Len() int64 { return s.n }
