package bufpool

import (
	"sync"
	"unsafe"
)

// Decoded frames and the compressed bytes they come from pass through
// buffers recycled in one process-wide pool: a sequential read of a large
// file or a grep over a layer decodes hundreds of frames, and fresh memory
// for each (a page fault per 4 KiB) cost as much as the decoding. The
// pool's buffers come from a slab mapped once with huge pages (see
// mapSlab), up to slabSize; past it (or where there is no slab) from the
// Go heap, of which at most heapFree bytes are kept for reuse.
const (
	poolMinShift = 16 // 64 KiB
	poolClasses  = 6  // up to 2 MiB
	slabSize     = 64 << 20
	heapFree     = 8 << 20
)

type bufPool struct {
	mu   sync.Mutex
	free [poolClasses][][]byte
	// heapHeld is how many bytes of heap buffers are in free.
	heapHeld int
	slab     []byte // what is left of the slab
	slabOnce bool
	slabLo   uintptr
	slabHi   uintptr
}

var bufs bufPool

func addr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

func poolClass(n int) (int, bool) {
	for k := 0; k < poolClasses; k++ {
		if n <= 1<<(poolMinShift+k) {
			return k, true
		}
	}
	return 0, false
}

// get returns a buffer of length n, reused when one is free.
func (p *bufPool) get(n int) []byte {
	k, ok := poolClass(n)
	if !ok {
		return make([]byte, n)
	}
	size := 1 << (poolMinShift + k)
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := len(p.free[k]); l > 0 {
		b := p.free[k][l-1]
		p.free[k] = p.free[k][:l-1]
		if !p.fromSlab(b) {
			p.heapHeld -= cap(b)
		}
		return b[:n]
	}
	if !p.slabOnce {
		p.slabOnce = true
		p.slab = mapSlab(slabSize)
		if p.slab != nil {
			p.slabLo = addr(p.slab)
			p.slabHi = p.slabLo + uintptr(len(p.slab))
		}
	}
	// Carve from the slab, aligned to the buffer's size (a power of
	// two), so that buffers do not straddle huge pages needlessly.
	if p.slab != nil {
		skip := int((uintptr(size) - addr(p.slab)%uintptr(size)) % uintptr(size))
		if skip+size <= len(p.slab) {
			b := p.slab[skip : skip+size : skip+size]
			p.slab = p.slab[skip+size:]
			return b[:n]
		}
	}
	return make([]byte, n, size)
}

func (p *bufPool) fromSlab(b []byte) bool {
	a := addr(b[:1])
	return a >= p.slabLo && a < p.slabHi
}

// put gives b back for reuse; the caller no longer refers to it, nor to
// any slice of it.
func (p *bufPool) put(b []byte) {
	k, ok := poolClass(cap(b))
	if !ok || cap(b) != 1<<(poolMinShift+k) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fromSlab(b) {
		// Slab buffers are always kept: the slab is never unmapped.
		p.free[k] = append(p.free[k], b[:0])
		return
	}
	if p.heapHeld+cap(b) <= heapFree {
		p.free[k] = append(p.free[k], b[:0])
		p.heapHeld += cap(b)
	}
}

// Get returns a buffer of length n from the process-wide pool (reused when
// one of its size class is free; made fresh past the largest class).
func Get(n int) []byte { return bufs.get(n) }

// Put returns a buffer got from Get for reuse; the caller keeps no
// reference to it.
func Put(b []byte) { bufs.put(b) }
