package archive

import (
	"runtime"

	"github.com/klauspost/compress/zstd"
)

// FrameEncoder compresses src into one whole zstd frame, with its content
// checksum, appended to dst. It has no error to return (the seekable
// writer's interface): an encoder that can fail falls back to one that
// cannot rather than leave a frame out.
type FrameEncoder interface {
	EncodeAll(src, dst []byte) []byte
}

// Encoder is a zstd frame encoder the writer can use: its name (recorded
// in the manifest's tool.compression) and how to make it at a level.
type Encoder struct {
	Name string
	New  func(level int) (FrameEncoder, error)
}

// Klauspost is the pure-Go encoder (github.com/klauspost/compress/zstd),
// the writer's default. Frames are standard zstd frames whichever encoder
// writes them; reading always uses klauspost's decoder.
func Klauspost() *Encoder { return &Encoder{Name: "klauspost", New: newKlauspost} }

func newKlauspost(level int) (FrameEncoder, error) {
	enc, err := NewKlauspost(level, runtime.GOMAXPROCS(0))
	if err != nil {
		return nil, err
	}
	return pooledEncoder{enc}, nil
}

// NewKlauspost is klauspost's encoder as the archive's frames need it:
// the zstd level, the content checksum, a frame even for no bytes, and
// concurrency encodings at once (another encoder's fallback uses one).
func NewKlauspost(level, concurrency int) (*zstd.Encoder, error) {
	return zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)), zstd.WithEncoderCRC(true),
		zstd.WithEncoderConcurrency(concurrency), zstd.WithZeroFrames(true))
}

type pooledEncoder struct{ e *zstd.Encoder }

func (p pooledEncoder) EncodeAll(src, dst []byte) []byte { return p.e.EncodeAll(src, dst) }
