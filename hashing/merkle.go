package hashing

import "crypto/sha256"

// Merkle roots follow RFC 6962 (Certificate Transparency): a leaf is
// SHA-256(0x00 || data), an inner node SHA-256(0x01 || left || right), and a
// tree of n leaves splits at the largest power of two below n. The empty tree
// is SHA-256 of nothing. Any single changed, added, removed or reordered leaf
// changes the root.

// LeafHash returns the RFC 6962 hash of one leaf's data.
func LeafHash(data []byte) Digest {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(data)
	return FromHash(h)
}

func nodeHash(l, r Digest) Digest {
	var buf [1 + 2*sha256.Size]byte
	buf[0] = 1
	copy(buf[1:], l[:])
	copy(buf[1+sha256.Size:], r[:])
	return Digest(sha256.Sum256(buf[:]))
}

// MerkleRoot returns the root over leaf hashes (already passed through LeafHash).
func MerkleRoot(leaves []Digest) Digest {
	if len(leaves) == 0 {
		return Digest(sha256.Sum256(nil))
	}
	// Iterative form of the RFC 6962 recursion: pair neighbours level by
	// level, carrying an odd last node up unchanged. For RFC 6962's split
	// rule this yields the same root as the recursive definition.
	// Each level is written over the one below (node i/2 from nodes i and
	// i+1), in a copy so the caller's leaves stay as they were.
	level := append([]Digest(nil), leaves...)
	for n := len(level); n > 1; n = (n + 1) / 2 {
		for i := 0; i+1 < n; i += 2 {
			level[i/2] = nodeHash(level[i], level[i+1])
		}
		if n%2 == 1 {
			level[n/2] = level[n-1]
		}
	}
	return level[0]
}

// Merkle computes MerkleRoot over leaves given one at a time, holding one
// node per level: the root of a million leaves without a slice of them.
type Merkle struct {
	// stack holds the roots of complete subtrees, largest first; sizes[i]
	// is the number of leaves under stack[i] (a power of two, decreasing).
	stack []Digest
	sizes []int
	n     int
}

// Add appends a leaf hash (already passed through LeafHash).
func (m *Merkle) Add(leaf Digest) {
	m.n++
	m.stack = append(m.stack, leaf)
	m.sizes = append(m.sizes, 1)
	for k := len(m.stack) - 1; k > 0 && m.sizes[k-1] == m.sizes[k]; k-- {
		m.stack[k-1] = nodeHash(m.stack[k-1], m.stack[k])
		m.sizes[k-1] *= 2
		m.stack, m.sizes = m.stack[:k], m.sizes[:k]
	}
}

// Len is the number of leaves added.
func (m *Merkle) Len() int { return m.n }

// Root is MerkleRoot of the leaves added: RFC 6962 splits n leaves at the
// largest power of two below n, so the root folds the complete subtrees
// from the smallest up.
func (m *Merkle) Root() Digest {
	if m.n == 0 {
		return MerkleRoot(nil)
	}
	acc := m.stack[len(m.stack)-1]
	for k := len(m.stack) - 2; k >= 0; k-- {
		acc = nodeHash(m.stack[k], acc)
	}
	return acc
}
