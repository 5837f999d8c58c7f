package registry

import (
	"bytes"
	"os"
	"testing"
)

// The chunks kept in memory are the disk cache's, never other bytes: a
// chunk forgotten (its frame failed its digest) is read from neither; a
// chunk is copied when put (fetch reuses its buffer); at most recentChunks
// are kept.
func TestCacheRecentChunks(t *testing.T) {
	c, err := openCache(CacheOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	const hex = "ab"
	buf := bytes.Repeat([]byte{1}, 10)
	if err := c.put(hex, 0, buf); err != nil {
		t.Fatal(err)
	}
	copy(buf, bytes.Repeat([]byte{2}, 10)) // fetch's buffer, reused
	if err := os.Remove(c.chunkPath(hex, 0)); err != nil {
		t.Fatal(err)
	}
	if b, ok := c.get(hex, 0, 10); !ok || !bytes.Equal(b, bytes.Repeat([]byte{1}, 10)) {
		t.Fatalf("the chunk just put: %v %v", b, ok)
	}
	c.forget(hex, 0, 10)
	if b, ok := c.get(hex, 0, 10); ok {
		t.Fatalf("a forgotten chunk was read: %v", b)
	}
	for i := range int64(recentChunks + 4) {
		if err := c.put(hex, i*ChunkSize, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(c.recent); n != recentChunks {
		t.Errorf("%d chunks in memory, want %d", n, recentChunks)
	}
	// The oldest went from memory, not from disk.
	if b, ok := c.get(hex, 0, 1); !ok || b[0] != 0 {
		t.Errorf("chunk 0 from disk: %v %v", b, ok)
	}
}
