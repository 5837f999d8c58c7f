package hashing

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// ErrBadDigest is returned when a digest string is malformed.
var ErrBadDigest = errors.New("hashing: malformed digest")

// Digest is a SHA-256 digest. The zero value is "no digest".
type Digest [sha256.Size]byte

// Sum returns the SHA-256 digest of b.
func Sum(b []byte) Digest { return Digest(sha256.Sum256(b)) }

// FromHash returns the digest accumulated in h, which must be a SHA-256.
func FromHash(h hash.Hash) Digest {
	var d Digest
	h.Sum(d[:0])
	return d
}

// Parse reads "sha256:<64 hex>" or a bare 64-hex string.
func Parse(s string) (Digest, error) {
	var d Digest
	hexPart := strings.TrimPrefix(s, "sha256:")
	if len(hexPart) != 64 {
		return d, fmt.Errorf("%w: %q", ErrBadDigest, s)
	}
	if strings.ToLower(hexPart) != hexPart {
		return d, fmt.Errorf("%w: %q is not lower-case hex", ErrBadDigest, s)
	}
	if _, err := hex.Decode(d[:], []byte(hexPart)); err != nil {
		return d, fmt.Errorf("%w: %q", ErrBadDigest, s)
	}
	return d, nil
}

// IsZero reports whether d is unset.
func (d Digest) IsZero() bool { return d == Digest{} }

// Hex is the bare lower-case hex form, as sha256sum prints it.
func (d Digest) Hex() string { return hex.EncodeToString(d[:]) }

// String is the OCI form "sha256:<hex>".
func (d Digest) String() string { return "sha256:" + d.Hex() }

// Short is the first 12 hex digits, as docker prints image IDs.
func (d Digest) Short() string { return d.Hex()[:12] }

// MarshalText implements encoding.TextMarshaler.
func (d Digest) MarshalText() ([]byte, error) {
	if d.IsZero() {
		return []byte(""), nil
	}
	return []byte(d.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Digest) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*d = Digest{}
		return nil
	}
	p, err := Parse(string(b))
	if err != nil {
		return err
	}
	*d = p
	return nil
}
