package archive

import (
	"errors"
	"hash"
	"io"
	"os"
	"sync"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/bufpool"
)

// sink receives the tar stream, hashes its structure bytes (everything
// that is not member content) and hands it to the framer.
type sink struct {
	fr        *framer
	pos       int64
	content   bool
	structure hash.Hash
	progress  func(int64)
	lastProg  int64
}

func (s *sink) Write(p []byte) (int, error) {
	if !s.content {
		s.structure.Write(p)
	}
	if err := s.fr.write(p); err != nil {
		return 0, err
	}
	s.pos += int64(len(p))
	if s.progress != nil && s.pos-s.lastProg > 8<<20 {
		s.lastProg = s.pos
		s.progress(s.pos)
	}
	return len(p), nil
}

// framer cuts the tar stream into frames at hinted entry boundaries.
type framer struct {
	buf     []byte
	start   int64
	pending int64
	out     chan<- []byte
	done    <-chan struct{}
	err     func() error
	sink    *frameSink
	emitted int
}

func (f *framer) end() int64 { return f.start + int64(len(f.buf)) }

func (f *framer) write(p []byte) error {
	for len(p) > 0 {
		room := FrameMax - len(f.buf)
		k := min(room, len(p))
		if f.buf == nil {
			f.buf = (*framePool.Get().(*[]byte))[:0]
		}
		f.buf = append(f.buf, p[:k]...)
		p = p[k:]
		if f.pending >= 0 && f.pending <= f.end() {
			at := f.pending
			f.pending = -1
			if err := f.cutAt(at); err != nil {
				return err
			}
		}
		if len(f.buf) >= FrameMax {
			if err := f.emit(FrameMax); err != nil {
				return err
			}
		}
	}
	return nil
}

// hint says a frame may end at absolute tar offset at.
func (f *framer) hint(at int64) error {
	if at > f.end() {
		f.pending = at
		return nil
	}
	return f.cutAt(at)
}

func (f *framer) cutAt(at int64) error {
	k := at - f.start
	if k >= FrameTarget && k <= int64(len(f.buf)) {
		return f.emit(int(k))
	}
	return nil
}

func (f *framer) emit(k int) error {
	if k == 0 {
		return nil
	}
	frame := f.buf[:k]
	rest := f.buf[k:]
	f.buf = append((*framePool.Get().(*[]byte))[:0], rest...)
	f.start += int64(k)
	f.emitted++
	f.sink.push(frame)
	select {
	case f.out <- frame:
		return nil
	case <-f.done:
		if err := f.err(); err != nil {
			return err
		}
		return errors.New("archive writer stopped")
	}
}

// Frame buffers and compressed buffers are recycled: allocating (and
// zeroing) a fresh MiB per frame cost more than hashing it.
var (
	framePool = sync.Pool{New: func() any { b := make([]byte, 0, FrameMax); return &b }}
	dstPool   = sync.Pool{New: func() any { b := make([]byte, 0, FrameMax+FrameMax/8); return &b }}
)

// dstEncoder gives the encoder a recycled output buffer.
type dstEncoder struct{ e FrameEncoder }

func (d *dstEncoder) EncodeAll(src, dst []byte) []byte {
	if dst == nil {
		dst = (*dstPool.Get().(*[]byte))[:0]
	}
	return d.e.EncodeAll(src, dst)
}

// frameSink writes compressed frames to the file, hashing them, and
// recycles each frame's buffers once it is written (frames are written in
// the order they were cut, so the oldest source buffer is the one done).
type frameSink struct {
	w io.Writer
	f *os.File
	// synced is how far writeback has been started.
	synced int64
	h      io.Writer
	n      *int64
	mu     sync.Mutex
	src    [][]byte
	// digests are the SHA-256 of each compressed frame written, by frame
	// number; written counts them; stopped says the writer goroutine is
	// gone. cond signals both.
	digests []hashing.Digest
	stopped bool
	cond    *sync.Cond
}

func (f *frameSink) push(b []byte) {
	f.mu.Lock()
	f.src = append(f.src, b)
	f.mu.Unlock()
}

func (f *frameSink) WriteFrame(p []byte) (int, error) {
	n, err := f.w.Write(p)
	f.h.Write(p[:n])
	if err == nil {
		d := hashing.Sum(p)
		f.mu.Lock()
		f.digests = append(f.digests, d)
		f.cond.Broadcast()
		f.mu.Unlock()
	}
	*f.n += int64(n)
	if f.f != nil && *f.n-f.synced >= 8<<20 {
		bufpool.StartWriteback(f.f, f.synced, *f.n-f.synced)
		f.synced = *f.n
	}
	if err == nil {
		d := p[:0]
		dstPool.Put(&d)
		f.mu.Lock()
		if len(f.src) > 0 {
			b := f.src[0][:0]
			f.src = f.src[1:]
			framePool.Put(&b)
		}
		f.mu.Unlock()
	}
	return n, err
}

func (f *frameSink) WriteSeekTable(p []byte) (int, error) {
	n, err := f.w.Write(p)
	f.h.Write(p[:n])
	*f.n += int64(n)
	return n, err
}

// waitFrames waits until n frames are written, or the writer stopped.
func (f *frameSink) waitFrames(n int) ([]hashing.Digest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.digests) < n && !f.stopped {
		f.cond.Wait()
	}
	if len(f.digests) < n {
		return nil, errors.New("archive writer stopped")
	}
	return append([]hashing.Digest(nil), f.digests[:n]...), nil
}
