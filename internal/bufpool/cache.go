package bufpool

import (
	"container/list"
	"errors"
	"sync"
)

// Cache is a small LRU of decoded frames, shared by all readers of an
// archive; each frame is decoded once even when many readers want it.
// A reader holds a frame (acquire) while it copies from it; a frame
// evicted while held is recycled (recycle, when set) once the last holder
// lets go, so that buffers are reused rather than freshly allocated: on
// these machines faulting in a fresh page costs more than decoding it.
type Cache struct {
	mu       sync.Mutex
	max      int
	ll       *list.List
	m        map[int64]*list.Element
	inflight map[int64]*flight
	// Recycle, when set, takes the buffers of evicted items once nobody
	// holds them.
	Recycle func([]byte)
	closed  bool
}

// ErrClosed is what a closed cache answers.
var ErrClosed = errors.New("archive closed")

type flight struct {
	done chan struct{}
	c    *Item
	err  error
	// waiters joined while the frame was being loaded: each holds it.
	waiters int
}

// Item is a cached buffer, held by whoever acquired it until released.
type Item struct {
	id      int64
	b       []byte
	refs    int
	evicted bool
}

// NewCache makes a cache of at most max items.
func NewCache(max int) *Cache {
	return &Cache{max: max, ll: list.New(), m: map[int64]*list.Element{}, inflight: map[int64]*flight{}}
}

// Has tells whether id is cached or being loaded.
func (c *Cache) Has(id int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.m[id]
	_, busy := c.inflight[id]
	return ok || busy
}

// Get returns frame id's bytes, loading it if needed. The bytes are never
// recycled: for caches without recycle.
func (c *Cache) Get(id int64, load func() ([]byte, error)) ([]byte, error) {
	e, err := c.Acquire(id, load)
	if err != nil {
		return nil, err
	}
	b := e.b
	c.Release(e)
	return b, nil
}

// Acquire returns frame id, loading it if needed, held until release.
func (c *Cache) Acquire(id int64, load func() ([]byte, error)) (*Item, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if el, ok := c.m[id]; ok {
		c.ll.MoveToFront(el)
		e := el.Value.(*Item)
		e.refs++
		c.mu.Unlock()
		return e, nil
	}
	if f, ok := c.inflight[id]; ok {
		f.waiters++
		c.mu.Unlock()
		<-f.done
		return f.c, f.err
	}
	f := &flight{done: make(chan struct{})}
	c.inflight[id] = f
	c.mu.Unlock()
	b, err := load()
	c.mu.Lock()
	delete(c.inflight, id)
	f.err = err
	if err == nil {
		f.c = &Item{id: id, b: b, refs: 1 + f.waiters, evicted: c.closed}
	}
	if err == nil && !c.closed {
		c.m[id] = c.ll.PushFront(f.c)
		for c.ll.Len() > c.max {
			old := c.ll.Back()
			c.ll.Remove(old)
			oc := old.Value.(*Item)
			delete(c.m, oc.id)
			oc.evicted = true
			c.free(oc)
		}
	}
	c.mu.Unlock()
	close(f.done)
	return f.c, f.err
}

// Close empties the cache, recycling what nobody holds (the rest when it
// is let go); it loads nothing afterwards.
func (c *Cache) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for el := c.ll.Front(); el != nil; el = el.Next() {
		e := el.Value.(*Item)
		e.evicted = true
		c.free(e)
	}
	c.ll.Init()
	clear(c.m)
}

// Release lets go of a frame returned by acquire.
func (c *Cache) Release(e *Item) {
	c.mu.Lock()
	e.refs--
	c.free(e)
	c.mu.Unlock()
}

// free recycles e's buffer if it is out of the cache and nobody holds it.
// Called with c.mu held.
func (c *Cache) free(e *Item) {
	if e.evicted && e.refs == 0 && c.Recycle != nil && e.b != nil {
		c.Recycle(e.b)
		e.b = nil
	}
}

// Bytes is the item's buffer, valid while it is held.
func (e *Item) Bytes() []byte { return e.b }
