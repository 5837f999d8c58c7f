//go:build !cgo || amber_purego

package manifest

import (
	"runtime"

	"github.com/klauspost/compress/zstd"
)

// EncoderName says which zstd encoder writes frames.
const EncoderName = "klauspost"

func newFrameEncoder(level int) (frameEncoder, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)), zstd.WithEncoderCRC(true),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithZeroFrames(true))
	if err != nil {
		return nil, err
	}
	return pooledEncoder{enc}, nil
}

type pooledEncoder struct{ e *zstd.Encoder }

func (p pooledEncoder) EncodeAll(src, dst []byte) []byte { return p.e.EncodeAll(src, dst) }
