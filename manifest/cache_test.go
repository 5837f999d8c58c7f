package manifest

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
)

// A frame evicted while a reader holds it is recycled only once let go;
// a closed cache recycles what it held and loads nothing more.
func TestFrameCacheHolds(t *testing.T) {
	var recycled [][]byte
	c := newFrameCache(1)
	c.recycle = func(b []byte) { recycled = append(recycled, b) }
	load := func(s string) func() ([]byte, error) { return func() ([]byte, error) { return []byte(s), nil } }
	a, err := c.acquire(1, load("one"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := c.acquire(2, load("two")) // evicts 1, still held
	if len(recycled) != 0 || string(a.b) != "one" {
		t.Fatalf("frame 1 recycled while held: %q, %q", recycled, a.b)
	}
	c.release(a)
	if len(recycled) != 1 || string(recycled[0]) != "one" {
		t.Fatalf("frame 1 not recycled once let go: %q", recycled)
	}
	c.release(b)
	if len(recycled) != 1 {
		t.Fatalf("frame 2 is cached, not to be recycled: %q", recycled)
	}
	c.close()
	if len(recycled) != 2 || string(recycled[1]) != "two" {
		t.Fatalf("close did not recycle the cached frame: %q", recycled)
	}
	if _, err := c.acquire(3, load("three")); err == nil {
		t.Fatal("a closed cache loaded a frame")
	}
}

// Many readers of random ranges, copying them out or holding them, through
// a cache of two frames, buffers recycled all the while, each get exactly
// the bytes written.
func TestRecycledFramesConcurrentReaders(t *testing.T) {
	big := make([]byte, 6<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(r.IntN(16)) // compressible, and every offset tells
	}
	_, a := sealedBlob(t, big)
	a.SetCache(2, 2)
	e, _ := a.Blob("blobs/sha256/big")
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 7))
			buf := make([]byte, 300<<10)
			for range 200 {
				off := r.Int64N(int64(len(big)))
				n := min(int64(r.IntN(len(buf))+1), int64(len(big))-off)
				if g%2 == 0 {
					// Half the readers hold the frames instead of copying.
					h, err := a.Hold(e.Offset+off, n)
					if err != nil {
						errs <- err.Error()
						return
					}
					got := bytes.Join(h.Bufs, nil)
					if h.Len() != int(n) {
						errs <- "held the wrong length"
						return
					}
					runtime.Gosched() // let the others cycle the cache meanwhile
					if !bytes.Equal(got, big[off:off+n]) || !bytes.Equal(bytes.Join(h.Bufs, nil), got) {
						errs <- "wrong bytes held"
						return
					}
					h.Release()
					continue
				}
				if _, err := a.ReadAt(buf[:n], e.Offset+off); err != nil {
					errs <- err.Error()
					return
				}
				if !bytes.Equal(buf[:n], big[off:off+n]) {
					errs <- "wrong bytes"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for s := range errs {
		t.Fatal(s)
	}
	if n, _ := a.FramesDecoded(); n < 20 {
		t.Fatalf("only %d frames decoded: the cache did not cycle", n)
	}
}
