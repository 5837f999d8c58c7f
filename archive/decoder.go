package archive

// decodeAll decompresses one frame with klauspost's decoder (libzstd
// through cgo was measured slower here: a context and a zeroed buffer per
// frame). The decoder's memory is bounded by MaxFrameSize.
func decodeAll(src, dst []byte, size int) ([]byte, error) {
	dec, err := decoder()
	if err != nil {
		return nil, err
	}
	return dec.DecodeAll(src, dst[:0])
}
