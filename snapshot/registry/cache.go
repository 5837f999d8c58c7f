package registry

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ChunkSize is the unit a blob is fetched and cached in: small enough
// that a file's frame or two costs little more than themselves, large
// enough that a cache of a few GiB holds a few thousand files.
const ChunkSize = 256 << 10

// DefaultCacheMax bounds the on-disk cache when CacheOptions say nothing.
const DefaultCacheMax = 1 << 30

// CacheOptions say where fetched bytes are kept.
type CacheOptions struct {
	// Dir is the cache directory (DefaultCacheDir when empty).
	Dir string
	// MaxBytes bounds what the cache holds (DefaultCacheMax when 0): the
	// chunks used longest ago go first.
	MaxBytes int64
}

// DefaultCacheDir is $XDG_CACHE_HOME/amber, or ~/.cache/amber.
func DefaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory (set XDG_CACHE_HOME or HOME, or give --cache): %w", err)
	}
	return filepath.Join(d, "amber"), nil
}

// cache keeps chunks of blobs on disk, one file a chunk, at
// DIR/blobs/sha256/HEX/OFFSET (OFFSET in decimal; "full" for a blob
// downloaded whole from a server that ignores Range). Files are 0600, the
// directories 0700: evidence stays the examiner's. Nothing read from it
// is trusted: the archive reader checks every frame against its sealed
// digest, whatever the bytes came from, and makes the blob forget chunks
// that fail.
type cache struct {
	dir string
	max int64
	mu  sync.Mutex
	// used is an estimate of the bytes held (measured at open, kept up
	// by puts); eviction measures again.
	used int64
	// recent are the last chunks put or read, in memory, oldest first: a
	// frame spanning two chunks and the frames after it read them again
	// at once, and a chunk just fetched is read back at once.
	recent []recentChunk
}

// recentChunks is how many chunks the cache keeps in memory (4 MiB).
const recentChunks = 16

type recentChunk struct {
	path string
	b    []byte
}

// remembered returns the chunk at path if it is among the recent ones.
func (c *cache) remembered(path string, n int) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, r := range c.recent {
		if r.path == path && len(r.b) == n {
			c.recent = append(append(c.recent[:i:i], c.recent[i+1:]...), r)
			return r.b, true
		}
	}
	return nil, false
}

// remember keeps b (not retained: copied) as the newest recent chunk.
func (c *cache) remember(path string, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recent = slices.DeleteFunc(c.recent, func(r recentChunk) bool { return r.path == path })
	if len(c.recent) >= recentChunks {
		c.recent = slices.Delete(c.recent, 0, 1)
	}
	c.recent = append(c.recent, recentChunk{path, bytes.Clone(b)})
}

// unremember drops the chunk at path from the recent ones.
func (c *cache) unremember(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recent = slices.DeleteFunc(c.recent, func(r recentChunk) bool { return r.path == path })
}

func openCache(o CacheOptions) (*cache, error) {
	if o.Dir == "" {
		d, err := DefaultCacheDir()
		if err != nil {
			return nil, err
		}
		o.Dir = d
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultCacheMax
	}
	c := &cache{dir: o.Dir, max: o.MaxBytes}
	if err := os.MkdirAll(c.blobsDir(), 0o700); err != nil {
		return nil, fmt.Errorf("cache %s: %w", o.Dir, err)
	}
	for _, d := range []string{o.Dir, filepath.Join(o.Dir, "blobs"), c.blobsDir()} {
		// A directory made before (by an older umask or a user) is
		// narrowed: chunks of evidence are nobody else's to read.
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("cache %s: %w", o.Dir, err)
		}
	}
	c.used = c.measure(nil)
	return c, nil
}

func (c *cache) blobsDir() string { return filepath.Join(c.dir, "blobs", "sha256") }

func (c *cache) chunkPath(hex string, off int64) string {
	return filepath.Join(c.blobsDir(), hex, strconv.FormatInt(off, 10))
}

func (c *cache) fullPath(hex string) string { return filepath.Join(c.blobsDir(), hex, "full") }

// get returns the chunk of blob hex at off, of length n, if it is held
// whole; a short or unreadable file is dropped.
func (c *cache) get(hex string, off int64, n int) ([]byte, bool) {
	p := c.chunkPath(hex, off)
	if b, ok := c.remembered(p, n); ok {
		return b, true
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, false
	}
	if len(b) != n {
		os.Remove(p)
		return nil, false
	}
	now := time.Now()
	_ = os.Chtimes(p, now, now) // used now: last to be evicted
	c.remember(p, b)
	return b, true
}

// has reports whether the chunk is held, without reading it.
func (c *cache) has(hex string, off int64) bool {
	_, err := os.Stat(c.chunkPath(hex, off))
	return err == nil
}

// put stores a chunk (written aside, then renamed: a reader never sees a
// part of one) and evicts when the cache is over its bound.
func (c *cache) put(hex string, off int64, b []byte) error {
	dir := filepath.Join(c.blobsDir(), hex)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	_, werr := f.Write(b)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("cache: %w", err)
	}
	if err := os.Rename(f.Name(), c.chunkPath(hex, off)); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("cache: %w", err)
	}
	c.remember(c.chunkPath(hex, off), b)
	c.grew(int64(len(b)), dir)
	return nil
}

// grew accounts for n more bytes and evicts, sparing keep (the blob
// being written), when over the bound.
func (c *cache) grew(n int64, keep string) {
	c.mu.Lock()
	c.used += n
	over := c.used > c.max
	c.mu.Unlock()
	if over {
		c.evict(keep)
	}
}

// forget drops the chunks of blob hex overlapping [off, off+n), and the
// whole download.
func (c *cache) forget(hex string, off, n int64) {
	for o := off / ChunkSize * ChunkSize; o < off+n; o += ChunkSize {
		os.Remove(c.chunkPath(hex, o))
		c.unremember(c.chunkPath(hex, o))
	}
	os.Remove(c.fullPath(hex))
}

type cached struct {
	path string
	size int64
	mod  time.Time
}

// measure walks the cache: its size, and its files when list is given.
func (c *cache) measure(list *[]cached) int64 {
	var total int64
	_ = filepath.WalkDir(c.blobsDir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".tmp-") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		total += info.Size()
		if list != nil {
			*list = append(*list, cached{p, info.Size(), info.ModTime()})
		}
		return nil
	})
	return total
}

// evict removes the files used longest ago until the cache is at 90 % of
// its bound, keeping, when it can, the blob directory keep.
func (c *cache) evict(keep string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var files []cached
	total := c.measure(&files)
	sort.Slice(files, func(i, j int) bool {
		ki, kj := filepath.Dir(files[i].path) == keep, filepath.Dir(files[j].path) == keep
		if ki != kj {
			return kj
		}
		return files[i].mod.Before(files[j].mod)
	})
	for _, f := range files {
		if total <= c.max/10*9 {
			break
		}
		if os.Remove(f.path) == nil {
			total -= f.size
		}
	}
	c.used = total
}
