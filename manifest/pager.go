package manifest

import (
	"container/list"
	"fmt"
	"io"
	"sync"
)

// PagedIndexMin is the index size from which an archive's file index is
// read in pages, through the frames (each checked against its sealed
// digest as it is decoded), instead of whole into memory: a layer of a
// million files has an index of about 200 MB.
var PagedIndexMin int64 = 32 << 20

// indexPageSize and indexPages bound a paged index's memory: 16 MiB.
const (
	indexPageSize = 64 << 10
	indexPages    = 256
)

// pager reads an index member in pages, keeping the most recently used.
type pager struct {
	r    io.ReaderAt // the archive's tar stream
	off  int64       // the member's offset in it
	size int64

	mu    sync.Mutex
	pages map[int64]*list.Element // page number -> element of lru (*page)
	lru   *list.List
}

type page struct {
	n int64
	b []byte
}

func newPager(r io.ReaderAt, off, size int64) *pager {
	return &pager{r: r, off: off, size: size, pages: map[int64]*list.Element{}, lru: list.New()}
}

// read returns a fresh copy of n bytes at off of the member.
func (p *pager) read(off, n int64) ([]byte, error) {
	if off < 0 || n < 0 || off+n > p.size {
		return nil, fmt.Errorf("%w: read of %d bytes at %d past the index's %d", ErrBadIndex, n, off, p.size)
	}
	out := make([]byte, n)
	for k := int64(0); k < n; {
		pn := (off + k) / indexPageSize
		pg, err := p.page(pn)
		if err != nil {
			return nil, err
		}
		k += int64(copy(out[k:], pg[off+k-pn*indexPageSize:]))
	}
	return out, nil
}

func (p *pager) page(pn int64) ([]byte, error) {
	p.mu.Lock()
	if el, ok := p.pages[pn]; ok {
		p.lru.MoveToFront(el)
		b := el.Value.(*page).b
		p.mu.Unlock()
		return b, nil
	}
	p.mu.Unlock()
	start := pn * indexPageSize
	b := make([]byte, min(indexPageSize, p.size-start))
	if _, err := p.r.ReadAt(b, p.off+start); err != nil {
		return nil, fmt.Errorf("reading index bytes %d-%d: %w", start, start+int64(len(b))-1, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if el, ok := p.pages[pn]; ok { // read meanwhile by another reader
		return el.Value.(*page).b, nil
	}
	p.pages[pn] = p.lru.PushFront(&page{pn, b})
	for p.lru.Len() > indexPages {
		old := p.lru.Back()
		p.lru.Remove(old)
		delete(p.pages, old.Value.(*page).n)
	}
	return b, nil
}

// openPagedIndex reads the header of the index member e of a and returns
// an index that reads the rest in pages.
func openPagedIndex(a *Archive, e Entry) (*Index, error) {
	pg := newPager(a, e.Offset, e.Size)
	h, err := pg.read(0, min(indexHeaderSize, e.Size))
	if err != nil {
		return nil, err
	}
	ix, err := parseIndexHeader(h, e.Size)
	if err != nil {
		return nil, err
	}
	ix.pg = pg
	return ix, nil
}
