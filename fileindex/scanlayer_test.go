package fileindex

import "io"

// ScanLayer is ScanLayerWith without bounds: how the tests index a layer.
func ScanLayer(r io.Reader, b *IndexBuilder, hint func(off int64)) (size int64, err error) {
	return ScanLayerWith(r, b, hint, ScanOptions{})
}
