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
