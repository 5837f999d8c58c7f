// Package cgozstd is the libzstd frame encoder for the archive writer,
// through cgo (github.com/DataDog/zstd), measured 1.3x faster than the pure
// Go encoder at the same level. Only the command line chooses it
// (archive.WriterOptions.Encoder); without cgo, or with -tags amber_purego,
// Encoder is nil and the writer keeps klauspost's.
package cgozstd
