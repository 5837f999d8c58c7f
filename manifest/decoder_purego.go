//go:build !cgo || amber_purego

package manifest

func decodeAll(src, dst []byte, size int) ([]byte, error) {
	dec, err := decoder()
	if err != nil {
		return nil, err
	}
	return dec.DecodeAll(src, dst[:0])
}
