package bufpool

import (
	"testing"
)

// A frame evicted while a reader holds it is recycled only once let go;
// a closed cache recycles what it held and loads nothing more.
func TestFrameCacheHolds(t *testing.T) {
	var recycled [][]byte
	c := NewCache(1)
	c.Recycle = func(b []byte) { recycled = append(recycled, b) }
	load := func(s string) func() ([]byte, error) { return func() ([]byte, error) { return []byte(s), nil } }
	a, err := c.Acquire(1, load("one"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := c.Acquire(2, load("two")) // evicts 1, still held
	if len(recycled) != 0 || string(a.Bytes()) != "one" {
		t.Fatalf("frame 1 recycled while held: %q, %q", recycled, a.Bytes())
	}
	c.Release(a)
	if len(recycled) != 1 || string(recycled[0]) != "one" {
		t.Fatalf("frame 1 not recycled once let go: %q", recycled)
	}
	c.Release(b)
	if len(recycled) != 1 {
		t.Fatalf("frame 2 is cached, not to be recycled: %q", recycled)
	}
	c.Close()
	if len(recycled) != 2 || string(recycled[1]) != "two" {
		t.Fatalf("close did not recycle the cached frame: %q", recycled)
	}
	if _, err := c.Acquire(3, load("three")); err == nil {
		t.Fatal("a closed cache loaded a frame")
	}
}
