package fileindex

import (
	"fmt"
	"io"

	"github.com/amber-forensics/amber/internal/bufpool"
)

// indexPageSize and indexPages bound a paged index's memory: 16 MiB.
const (
	indexPageSize = 64 << 10
	indexPages    = 256
)

// pager reads an index member in pages, keeping the most recently used
// (the same small LRU as decoded frames, keyed by page number).
type pager struct {
	r     io.ReaderAt // the archive's tar stream
	off   int64       // the member's offset in it
	size  int64
	pages *bufpool.Cache
}

func newPager(r io.ReaderAt, off, size int64) *pager {
	return &pager{r: r, off: off, size: size, pages: bufpool.NewCache(indexPages)}
}

// read returns a fresh copy of n bytes at off of the member.
func (p *pager) read(off, n int64) ([]byte, error) {
	if off < 0 || n < 0 || off+n > p.size {
		return nil, fmt.Errorf("%w: read of %d bytes at %d past the index's %d", ErrBadIndex, n, off, p.size)
	}
	out := make([]byte, n)
	for k := int64(0); k < n; {
		pn := (off + k) / indexPageSize
		pg, err := p.pages.Get(pn, func() ([]byte, error) { return p.load(pn) })
		if err != nil {
			return nil, err
		}
		k += int64(copy(out[k:], pg[off+k-pn*indexPageSize:]))
	}
	return out, nil
}

// load reads page pn from the archive.
func (p *pager) load(pn int64) ([]byte, error) {
	start := pn * indexPageSize
	b := make([]byte, min(indexPageSize, p.size-start))
	if _, err := p.r.ReadAt(b, p.off+start); err != nil {
		return nil, fmt.Errorf("reading index bytes %d-%d: %w", start, start+int64(len(b))-1, err)
	}
	return b, nil
}

// OpenPaged returns the index of size bytes at off of r (an archive's tar
// stream), read in pages as it is used: at most 16 MiB of it in memory.
func OpenPaged(r io.ReaderAt, off, size int64) (*Index, error) {
	pg := newPager(r, off, size)
	h, err := pg.read(0, min(indexHeaderSize, size))
	if err != nil {
		return nil, err
	}
	ix, err := parseIndexHeader(h, size)
	if err != nil {
		return nil, err
	}
	ix.pg = pg
	return ix, nil
}
