//go:build cgo && !amber_purego

package cgozstd

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"

	czstd "github.com/DataDog/zstd"
	"github.com/amber-forensics/amber/archive"
	"github.com/klauspost/compress/zstd"
)

// failingCtx is a libzstd context whose compression fails as libzstd can
// (an error, as on an allocation failure) or as it must not (no error, and
// fewer bytes than a frame).
type failingCtx struct {
	czstd.Ctx
	out []byte
	err error
}

func (c failingCtx) CompressLevel(dst, src []byte, level int) ([]byte, error) { return c.out, c.err }

// TestCEncoderFailure: when libzstd fails on a frame, the frame is still
// written, by the pure-Go encoder, and reads back with its checksum. Before,
// an error panicked, and a short output with no error dereferenced the nil
// error.
func TestCEncoderFailure(t *testing.T) {
	src := make([]byte, 200<<10) // incompressible: more than one block
	rand.Read(src)
	src = append(src, bytes.Repeat([]byte("amber "), 1000)...)
	for _, c := range []failingCtx{
		{err: errors.New("Allocation error : not enough memory")},
		{out: []byte{0x28, 0xb5}},
		{out: nil},
	} {
		t.Run(fmt.Sprintf("out %d bytes, err %v", len(c.out), c.err), func(t *testing.T) {
			enc, err := newEncoder(archive.DefaultLevel)
			if err != nil {
				t.Fatal(err)
			}
			ce := enc.(*cEncoder)
			ce.ctxs = sync.Pool{New: func() any { return c }}
			var frame []byte
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("EncodeAll panicked: %v", r)
					}
				}()
				frame = enc.EncodeAll(src, make([]byte, 0, 16))
			}()
			d, err := zstd.NewReader(nil)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			got, err := d.DecodeAll(frame, nil)
			if err != nil || !bytes.Equal(got, src) {
				t.Fatalf("the frame does not read back: %v (%d of %d bytes)", err, len(got), len(src))
			}
			var h zstd.Header
			if err := h.Decode(frame); err != nil || !h.HasCheckSum {
				t.Fatalf("the frame has no content checksum (the seek table and zstd -t expect one): %v %+v", err, h)
			}
		})
	}
}

// TestCEncoderTightDst: an incompressible frame with an output buffer
// smaller than libzstd's bound still makes one whole frame.
func TestCEncoderTightDst(t *testing.T) {
	src := make([]byte, archive.FrameMax)
	rand.Read(src)
	enc, err := newEncoder(archive.DefaultLevel)
	if err != nil {
		t.Fatal(err)
	}
	frame := enc.EncodeAll(src, make([]byte, 0, 64))
	d, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got, err := d.DecodeAll(frame, nil); err != nil || !bytes.Equal(got, src) {
		t.Fatalf("the frame does not read back: %v (%d of %d bytes)", err, len(got), len(src))
	}
}
