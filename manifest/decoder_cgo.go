//go:build cgo && !amber_purego

package manifest

import (
	"errors"

	czstd "github.com/DataDog/zstd"
)

// With cgo, frames are decompressed by the reference C library too:
// about twice klauspost's speed on a frame, which is what a cold
// sequential read through the mount waits on. The output buffer is
// exactly the size the seek table gives: a frame claiming more fails
// instead of allocating what it claims. zstd's content checksum is
// checked by the library; amber checks the seek table's checksum and the
// size afterwards either way.
func decodeAll(src, dst []byte, size int) ([]byte, error) {
	if len(src) == 0 || size == 0 {
		return nil, errors.New("empty frame")
	}
	if cap(dst) < size {
		dst = make([]byte, size)
	}
	n, err := czstd.DecompressInto(dst[:size], src)
	if err != nil {
		return nil, err
	}
	return dst[:n], nil
}
