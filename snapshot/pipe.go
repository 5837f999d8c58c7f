package snapshot

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/fileindex"
)

// The layer pipeline keeps both cores busy: one goroutine reads the source,
// one parses the layer tar and hashes each file (and learns where entries
// begin), one writes the blob into the archive and hashes it whole, while
// the archive's encoders compress frames. Chunks flow reader -> scanner ->
// archiver, so each chunk reaches the archiver with the entry boundaries
// inside it already known, and frames end on them.

const chunkSize = 1 << 20

type chunk struct {
	b     []byte
	hints []int64 // offsets in the layer where a frame may end
}

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// chunkReader hands the scanner the reader's chunks and passes each one on
// to the archiver once the scanner has consumed it.
type chunkReader struct {
	in     <-chan *chunk
	out    chan<- *chunk
	cur    *chunk
	off    int
	hints  []int64
	ctx    context.Context
	srcErr *error
}

// next makes sure a chunk with unread bytes is current.
func (c *chunkReader) next() error {
	for c.cur == nil || c.off == len(c.cur.b) {
		if c.cur != nil {
			c.forward()
		}
		select {
		case ch, ok := <-c.in:
			if !ok {
				if *c.srcErr != nil {
					return fileindex.SourceError(*c.srcErr)
				}
				return io.EOF
			}
			c.cur, c.off = ch, 0
		case <-c.ctx.Done():
			return fileindex.SourceError(c.ctx.Err())
		}
	}
	return nil
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if err := c.next(); err != nil {
		return 0, err
	}
	n := copy(p, c.cur.b[c.off:])
	c.off += n
	return n, nil
}

// Skip passes n bytes to fn where they lie, without copying them.
func (c *chunkReader) Skip(n int64, fn func([]byte)) (int64, error) {
	var done int64
	for done < n {
		if err := c.next(); err != nil {
			return done, err
		}
		k := min(int64(len(c.cur.b)-c.off), n-done)
		fn(c.cur.b[c.off : c.off+int(k)])
		c.off += int(k)
		done += k
	}
	return done, nil
}

func (c *chunkReader) forward() {
	c.cur.hints = c.hints
	c.hints = nil
	select {
	case c.out <- c.cur:
	case <-c.ctx.Done():
	}
	c.cur = nil
}

// pipeLayer streams exactly size bytes of r into the open archive member of
// w, while scanning them into b.
// onScanned runs once the scan is complete, while the archive still writes
// the layer's last bytes: the index is built in that time.
func pipeLayer(parent context.Context, r io.Reader, size int64, w *archive.Writer, b *fileindex.IndexBuilder, maxExpanded int64, onScanned func()) (scanned int64, err error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	toScan := make(chan *chunk, 4)
	toArchive := make(chan *chunk, 4)
	var readErr error
	// Reader.
	go func() {
		defer close(toScan)
		var total int64
		for {
			bp := chunkPool.Get().(*[]byte)
			n, err := io.ReadFull(r, *bp)
			total += int64(n)
			if n > 0 {
				select {
				case toScan <- &chunk{b: (*bp)[:n]}:
				case <-ctx.Done():
					readErr = context.Cause(ctx)
					return
				}
			}
			if total > size {
				readErr = fmt.Errorf("%w: layer is longer than measured (%d bytes)", ErrDigestMismatch, size)
				return
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return
			}
			if err != nil {
				readErr = err
				return
			}
		}
	}()
	// Archiver.
	archDone := make(chan error, 1)
	go func() {
		var off int64
		var err error
		for ch := range toArchive {
			if err == nil {
				err = writeChunk(w, ch, off)
				if err != nil {
					cancel()
				}
			}
			off += int64(len(ch.b))
			bp := ch.b[:cap(ch.b)]
			chunkPool.Put(&bp)
		}
		archDone <- err
	}()
	cr := &chunkReader{in: toScan, out: toArchive, ctx: ctx, srcErr: &readErr}
	scanned, err = fileindex.ScanLayerWith(cr, b, func(off int64) {
		cr.hints = append(cr.hints, off)
	}, fileindex.ScanOptions{Ctx: ctx, MaxExpanded: maxExpanded})
	if cr.cur != nil {
		cr.forward()
	}
	close(toArchive)
	if err == nil && onScanned != nil {
		onScanned()
	}
	aerr := <-archDone
	if cerr := parent.Err(); cerr != nil {
		return scanned, cerr
	}
	if aerr != nil {
		return scanned, aerr
	}
	if readErr != nil {
		return scanned, readErr
	}
	return scanned, err
}

// writeChunk writes a chunk that starts at layer offset off, telling the
// archive about each entry boundary where it falls.
func writeChunk(w *archive.Writer, ch *chunk, off int64) error {
	b := ch.b
	pos := off
	for _, h := range ch.hints {
		if h < pos {
			if err := w.Hint(h); err != nil {
				return err
			}
			continue
		}
		k := h - pos
		if k > int64(len(b)) {
			k = int64(len(b))
		}
		if _, err := w.Write(b[:k]); err != nil {
			return err
		}
		b = b[k:]
		pos += k
		if err := w.Hint(h); err != nil {
			return err
		}
	}
	_, err := w.Write(b)
	return err
}
