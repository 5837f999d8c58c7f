package archive

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
)

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
