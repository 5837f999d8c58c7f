package source

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Compression names a layer's compression by its first bytes: "gzip",
// "zstd", or "" (a tar as it is). Media types are the source's word;
// capture believes the bytes.
func Compression(b []byte) string {
	switch {
	case len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b:
		return "gzip"
	case len(b) >= 4 && bytes.Equal(b[:4], []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "zstd"
	}
	return ""
}

// Decompressor reads kind ("", "gzip" or "zstd", as Compression names it)
// from r; close releases the decoder. Bound what comes out with
// LimitExpansion: a layer is hostile input.
func Decompressor(r io.Reader, kind string) (_ io.Reader, close func(), _ error) {
	if kind == "" {
		return r, func() {}, nil
	}
	br := bufio.NewReaderSize(r, 1<<20)
	switch kind {
	case "gzip":
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		zr.Multistream(true)
		return zr, func() {}, nil
	case "zstd":
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<30))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	}
	return nil, nil, fmt.Errorf("unknown compression %q", kind)
}

// LimitExpansion fails a read with ErrBomb once more than Max bytes have
// come out of R (0: no bound); N counts them.
type LimitExpansion struct {
	R      io.Reader
	N, Max int64
}

func (l *LimitExpansion) Read(p []byte) (int, error) {
	n, err := l.R.Read(p)
	l.N += int64(n)
	if l.Max > 0 && l.N > l.Max {
		return n, ErrBomb
	}
	return n, err
}
