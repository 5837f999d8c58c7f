package hashing

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"testing"
)

// rfc6962 is the recursive definition, as a reference.
func rfc6962(leaves []Digest) Digest {
	n := len(leaves)
	if n == 0 {
		return Digest(sha256.Sum256(nil))
	}
	if n == 1 {
		return leaves[0]
	}
	k := 1
	for k*2 < n {
		k *= 2
	}
	return nodeHash(rfc6962(leaves[:k]), rfc6962(leaves[k:]))
}

func TestMerkleMatchesRFC6962(t *testing.T) {
	for n := 0; n < 70; n++ {
		var leaves []Digest
		for i := 0; i < n; i++ {
			leaves = append(leaves, LeafHash([]byte(fmt.Sprint(i))))
		}
		if got, want := MerkleRoot(leaves), rfc6962(leaves); got != want {
			t.Fatalf("n=%d: root %s, RFC 6962 gives %s", n, got, want)
		}
		var m Merkle
		for _, l := range leaves {
			m.Add(l)
		}
		if got, want := m.Root(), rfc6962(leaves); got != want || m.Len() != n {
			t.Fatalf("n=%d: streamed root %s (%d leaves), RFC 6962 gives %s", n, got, m.Len(), want)
		}
	}
}

func TestMerkleDetectsChanges(t *testing.T) {
	leaves := []Digest{LeafHash([]byte("a")), LeafHash([]byte("b")), LeafHash([]byte("c"))}
	root := MerkleRoot(leaves)
	swapped := []Digest{leaves[1], leaves[0], leaves[2]}
	if MerkleRoot(swapped) == root {
		t.Fatal("reordering leaves kept the root")
	}
	if MerkleRoot(leaves[:2]) == root {
		t.Fatal("dropping a leaf kept the root")
	}
	// Leaf data cannot pose as an inner node: the 0x00/0x01 prefixes keep
	// them apart (second-preimage resistance).
	if LeafHash(append(leaves[0][:], leaves[1][:]...)) == nodeHash(leaves[0], leaves[1]) {
		t.Fatal("leaf hash equals inner node hash")
	}
}

func TestDigestText(t *testing.T) {
	d := Sum([]byte("amber"))
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var back Digest
	if err := json.Unmarshal(b, &back); err != nil || back != d {
		t.Fatalf("round trip: %v %s", err, back)
	}
	for _, bad := range []string{"sha256:xyz", "sha256:" + d.Hex()[:63], "SHA256:" + d.Hex(), "sha256:" + fmt.Sprintf("%X", d[:])} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestMulti(t *testing.T) {
	m := NewMulti(true, true)
	m.Write([]byte("abc"))
	if m.SHA256().Hex() != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" ||
		m.MD5Hex() != "900150983cd24fb0d6963f7d28e17f72" || m.SHA1Hex() != "a9993e364706816aba3e25717850c26c9cd0d89d" || m.Size() != 3 {
		t.Fatalf("digests of abc wrong: %s %s %s", m.SHA256().Hex(), m.MD5Hex(), m.SHA1Hex())
	}
}
