//go:build !cgo || amber_purego

package cgozstd

import "github.com/amber-forensics/amber/archive"

// Encoder is nil in a build without cgo (or with -tags amber_purego): the
// writer keeps its pure-Go encoder.
func Encoder() *archive.Encoder { return nil }
