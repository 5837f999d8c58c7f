package source

import (
	"bytes"
	"fmt"
	"io"

	"github.com/amber-forensics/amber/fileindex"
)

// StreamStore holds the small members of a save stream read once (an
// engine's `docker save`), and the sizes of the layers already stored from
// it: the stream cannot be read again, so its layers go into the archive as
// they arrive and only its manifests are read from here.
type StreamStore struct {
	files  map[string][]byte
	layers map[string]int64  // streamed layer members: their size
	links  map[string]string // symlinked members (legacy layout): target
}

// NewStreamStore returns an empty store.
func NewStreamStore() *StreamStore {
	return &StreamStore{files: map[string][]byte{}, layers: map[string]int64{}, links: map[string]string{}}
}

// AddFile keeps a small member (a manifest, a config) whole.
func (m *StreamStore) AddFile(name string, b []byte) { m.files[name] = b }

// AddLayer records a layer member already stored elsewhere, by its size.
func (m *StreamStore) AddLayer(name string, size int64) { m.layers[name] = size }

// AddLink records a symlinked member (name and target cleaned by the caller).
func (m *StreamStore) AddLink(name, target string) { m.links[name] = target }

func (m *StreamStore) resolve(name string) string {
	name, _ = fileindex.CleanName(name)
	for i := 0; i < 8; i++ {
		t, ok := m.links[name]
		if !ok {
			break
		}
		name = t
	}
	return name
}

// Open returns a small member's bytes; a layer member reads as empty (it
// is already in the archive) with its size.
func (m *StreamStore) Open(name string) (io.ReadCloser, int64, error) {
	name = m.resolve(name)
	if b, ok := m.files[name]; ok {
		return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
	}
	if n, ok := m.layers[name]; ok {
		// Already stored in the archive; the reader only measures it.
		return io.NopCloser(bytes.NewReader(nil)), n, nil
	}
	return nil, 0, fmt.Errorf("%w: the engine's save stream has no member %q: %w", ErrSource, name, ErrNoMember)
}

// Key is the member a name resolves to.
func (m *StreamStore) Key(name string) string { return m.resolve(name) }

// Exists reports a member the stream held.
func (m *StreamStore) Exists(name string) bool {
	name = m.resolve(name)
	_, a := m.files[name]
	_, b := m.layers[name]
	return a || b
}
