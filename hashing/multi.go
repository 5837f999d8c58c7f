package hashing

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
)

// Multi computes SHA-256 and, when asked, MD5 and SHA-1 of the same bytes in
// one pass. Legacy forensic tooling still asks for MD5 and SHA-1; SHA-256 is
// the one amber trusts.
type Multi struct {
	sha256 hash.Hash
	md5    hash.Hash
	sha1   hash.Hash
	w      io.Writer
	n      int64
}

// NewMulti returns a Multi; md5 and sha1 add those algorithms.
func NewMulti(withMD5, withSHA1 bool) *Multi {
	m := &Multi{sha256: sha256.New()}
	ws := []io.Writer{m.sha256}
	if withMD5 {
		m.md5 = md5.New()
		ws = append(ws, m.md5)
	}
	if withSHA1 {
		m.sha1 = sha1.New()
		ws = append(ws, m.sha1)
	}
	if len(ws) == 1 {
		m.w = m.sha256
	} else {
		m.w = io.MultiWriter(ws...)
	}
	return m
}

// Write implements io.Writer.
func (m *Multi) Write(p []byte) (int, error) {
	m.n += int64(len(p))
	return m.w.Write(p)
}

// Size is the number of bytes written.
func (m *Multi) Size() int64 { return m.n }

// SHA256 is the SHA-256 digest so far.
func (m *Multi) SHA256() Digest { return FromHash(m.sha256) }

// MD5Hex is the MD5 in hex, or "" when not requested.
func (m *Multi) MD5Hex() string {
	if m.md5 == nil {
		return ""
	}
	return hex.EncodeToString(m.md5.Sum(nil))
}

// SHA1Hex is the SHA-1 in hex, or "" when not requested.
func (m *Multi) SHA1Hex() string {
	if m.sha1 == nil {
		return ""
	}
	return hex.EncodeToString(m.sha1.Sum(nil))
}
