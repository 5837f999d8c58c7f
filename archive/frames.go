package archive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	seekable "github.com/SaveTheRbtz/zstd-seekable-format-go/pkg"
	"github.com/amber-forensics/amber/manifest"
	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"
)

const (
	seekableMagic      = 0x8F92EAB1
	seekSkippableMagic = 0x184D2A5E
	zstdMagic          = 0xFD2FB528
	// MaxFrameSize bounds the decompressed size of one frame read from an
	// archive. amber writes at most FrameMax; a larger claim is damage.
	MaxFrameSize = 64 << 20
)

// SeekTable is the parsed seek table and where it lies in the file.
type SeekTable struct {
	*seekable.SeekTable
	// Offset and Size of the seek-table skippable frame in the file.
	Offset, Size int64
}

// ReadSeekTable reads and checks the seek table at the end of a file of the
// given size: its frames must tile the file exactly up to the table.
func ReadSeekTable(r io.ReaderAt, size int64) (*SeekTable, error) {
	var head [4]byte
	if size < 4 {
		return nil, fmt.Errorf("%w: file is only %d bytes", manifest.ErrNotArchive, size)
	}
	if _, err := r.ReadAt(head[:], 0); err != nil {
		return nil, fmt.Errorf("reading archive: %w", err)
	}
	if binary.LittleEndian.Uint32(head[:]) != zstdMagic {
		return nil, fmt.Errorf("%w: it does not start with a zstd frame", manifest.ErrNotArchive)
	}
	if size < 17 {
		return nil, fmt.Errorf("%w: the file ends before a seek table (truncated?)", manifest.ErrCorrupt)
	}
	var foot [9]byte
	if _, err := r.ReadAt(foot[:], size-9); err != nil {
		return nil, fmt.Errorf("reading seek table footer: %w", err)
	}
	if binary.LittleEndian.Uint32(foot[5:]) != seekableMagic {
		return nil, fmt.Errorf("%w: no seek table footer in the last 9 bytes (bytes %d-%d): the file is truncated or its end is damaged", manifest.ErrCorrupt, size-9, size-1)
	}
	n := int64(binary.LittleEndian.Uint32(foot[0:]))
	desc := foot[4]
	// Bits 6-0 are reserved or unused, and amber writes them zero: a
	// decoder ignores the unused ones, so a flipped one would change the
	// file and nothing it decodes to.
	if desc&0x7f != 0 {
		return nil, fmt.Errorf("%w: seek table descriptor (byte %d) is %#02x: reserved or unused bits set", manifest.ErrCorrupt, size-5, desc)
	}
	es := int64(8)
	if desc&0x80 != 0 {
		es = 12
	}
	tsize := 8 + n*es + 9
	if tsize > size-4 {
		return nil, fmt.Errorf("%w: seek table footer (bytes %d-%d) claims %d frames, more than the file can hold", manifest.ErrCorrupt, size-9, size-1, n)
	}
	buf := make([]byte, tsize)
	if _, err := r.ReadAt(buf, size-tsize); err != nil {
		return nil, fmt.Errorf("reading seek table: %w", err)
	}
	if binary.LittleEndian.Uint32(buf) != seekSkippableMagic {
		return nil, fmt.Errorf("%w: seek table at bytes %d-%d has a bad skippable-frame magic", manifest.ErrCorrupt, size-tsize, size-1)
	}
	st, err := seekable.NewSeekTable(buf)
	if err != nil {
		return nil, fmt.Errorf("%w: seek table at bytes %d-%d: %v", manifest.ErrCorrupt, size-tsize, size-1, err)
	}
	var sum int64
	for i := int64(0); i < st.NumFrames(); i++ {
		e, _ := st.EntryByID(i)
		if e.DecompressedSize > MaxFrameSize {
			return nil, fmt.Errorf("%w: seek table entry %d claims a frame of %d bytes", manifest.ErrCorrupt, i, e.DecompressedSize)
		}
		sum += int64(e.CompressedSize)
	}
	if sum != size-tsize {
		return nil, fmt.Errorf("%w: seek table at bytes %d-%d describes %d bytes of frames, but %d precede it", manifest.ErrCorrupt, size-tsize, size-1, sum, size-tsize)
	}
	if !st.HasChecksums() {
		return nil, fmt.Errorf("%w: seek table has no frame checksums", manifest.ErrCorrupt)
	}
	return &SeekTable{SeekTable: st, Offset: size - tsize, Size: tsize}, nil
}

// Frame is one frame's place in the file and in the tar stream.
type Frame = seekable.FrameOffsetEntry

// FrameError names a frame that failed to decode or check.
type FrameError struct {
	Frame Frame
	Err   error
}

func (e *FrameError) Error() string { return e.Where() + ": " + e.Err.Error() }

// Where names the frame and the bytes it covers in the file and the tar.
func (e *FrameError) Where() string {
	return fmt.Sprintf("frame %d (file bytes %d-%d, tar bytes %d-%d)", e.Frame.ID,
		e.Frame.CompressedOffset, e.Frame.CompressedOffset+uint64(e.Frame.CompressedSize)-1,
		e.Frame.DecompressedOffset, e.Frame.DecompressedOffset+uint64(e.Frame.DecompressedSize)-1)
}

func (e *FrameError) Unwrap() error { return manifest.ErrCorrupt }

var decoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(MaxFrameSize), zstd.WithDecoderMaxWindow(MaxFrameSize))
})

// DecodeFrame reads and decompresses one frame, checking zstd's content
// checksum, the size and the seek table's checksum.
func DecodeFrame(r io.ReaderAt, fr Frame, dst []byte) ([]byte, error) {
	src := make([]byte, fr.CompressedSize)
	if _, err := r.ReadAt(src, int64(fr.CompressedOffset)); err != nil {
		return nil, &FrameError{fr, fmt.Errorf("reading: %w", err)}
	}
	return decodeFrameBytes(src, fr, dst)
}

func decodeFrameBytes(src []byte, fr Frame, dst []byte) ([]byte, error) {
	if fr.DecompressedSize > MaxFrameSize {
		return nil, &FrameError{fr, fmt.Errorf("claims %d bytes, more than a frame may hold (%d)", fr.DecompressedSize, MaxFrameSize)}
	}
	out, err := decodeAll(src, dst, int(fr.DecompressedSize))
	if err != nil {
		return nil, &FrameError{fr, fmt.Errorf("does not decompress: %w", err)}
	}
	if len(out) != int(fr.DecompressedSize) {
		return nil, &FrameError{fr, fmt.Errorf("decompresses to %d bytes, seek table says %d", len(out), fr.DecompressedSize)}
	}
	if uint32(xxhash.Sum64(out)) != fr.Checksum {
		return nil, &FrameError{fr, errors.New("content does not match the seek table's checksum")}
	}
	return out, nil
}
