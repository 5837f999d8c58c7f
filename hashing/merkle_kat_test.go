package hashing

import (
	"encoding/hex"
	"testing"
)

// The RFC 6962 known answers of Certificate Transparency's reference
// implementations, copied from them, not computed here: the eight leaf
// inputs and the root of each prefix of them from
// google/certificate-transparency cpp/merkletree/merkle_tree_test.cc
// (kInputs, kSHA256EmptyTreeHash, kSHA256Roots), the same values as
// transparency-dev/merkle testonly/constants.go (LeafInputs, RootHashes),
// which also gives the hash of every complete subtree (NodeHashes). The
// single-hash answers are from transparency-dev/merkle
// rfc6962/rfc6962_test.go. A tree built by a rule other than RFC 6962's
// (Bitcoin's duplicated odd node, a split other than the largest power of
// two below n, other prefixes) gives other roots.
var (
	ctInputs = []string{
		"",
		"00",
		"10",
		"2021",
		"3031",
		"40414243",
		"5051525354555657",
		"606162636465666768696a6b6c6d6e6f",
	}
	// ctRoots[n] is the root of the first n inputs.
	ctRoots = []string{
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
		"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
		"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
		"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
		"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
		"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
		"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
		"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
	}
	// ctNodes[level][i] is the hash of the i-th complete subtree of
	// 2^level leaves (level 0: the leaf hashes).
	ctNodes = [][]string{{
		"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
		"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
		"0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
		"07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
		"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
		"4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
		"b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
		"46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
	}, {
		"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
		"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
		"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
		"ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
	}, {
		"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
		"6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
	}, {
		"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
	}}
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad test vector %q: %v", s, err)
	}
	return b
}

func ctLeaves(t *testing.T) []Digest {
	var leaves []Digest
	for _, in := range ctInputs {
		leaves = append(leaves, LeafHash(unhex(t, in)))
	}
	return leaves
}

// TestLeafHashKnownAnswers: MTH of one entry, RFC 6962 section 2.1:
// SHA-256(0x00 || d).
func TestLeafHashKnownAnswers(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"},               // echo -n 00 | xxd -r -p | sha256sum
		{"4c313233343536", "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"}, // "L123456"
	} {
		if got := LeafHash(unhex(t, tt.in)).Hex(); got != tt.want {
			t.Errorf("LeafHash(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
	for i, in := range ctInputs {
		if got, want := LeafHash(unhex(t, in)).Hex(), ctNodes[0][i]; got != want {
			t.Errorf("LeafHash(%s) = %s, want %s", in, got, want)
		}
	}
}

// TestNodeHashKnownAnswers: every complete subtree of the eight leaves,
// level by level, is SHA-256(0x01 || left || right) of the level below.
func TestNodeHashKnownAnswers(t *testing.T) {
	for level := 1; level < len(ctNodes); level++ {
		for i, want := range ctNodes[level] {
			var l, r Digest
			copy(l[:], unhex(t, ctNodes[level-1][2*i]))
			copy(r[:], unhex(t, ctNodes[level-1][2*i+1]))
			if got := nodeHash(l, r).Hex(); got != want {
				t.Errorf("level %d node %d = %s, want %s", level, i, got, want)
			}
		}
	}
}

// TestMerkleRootKnownAnswers: the root of every prefix of the eight
// inputs, 0 to 8 leaves, from the slice and from the streaming form, and
// from the streaming form asked at every step (its Root must not disturb
// what follows).
func TestMerkleRootKnownAnswers(t *testing.T) {
	leaves := ctLeaves(t)
	var running Merkle
	for n := 0; n <= len(leaves); n++ {
		want := ctRoots[n]
		if got := MerkleRoot(leaves[:n]).Hex(); got != want {
			t.Errorf("MerkleRoot of %d leaves = %s, want %s", n, got, want)
		}
		var m Merkle
		for _, l := range leaves[:n] {
			m.Add(l)
		}
		if got := m.Root().Hex(); got != want || m.Len() != n {
			t.Errorf("Merkle of %d leaves = %s (Len %d), want %s", n, got, m.Len(), want)
		}
		if n > 0 {
			running.Add(leaves[n-1])
		}
		if got := running.Root().Hex(); got != want {
			t.Errorf("Merkle asked after each of %d leaves = %s, want %s", n, got, want)
		}
	}
	// MerkleRoot works in a copy: the caller's leaves are unchanged.
	for i, l := range leaves {
		if l.Hex() != ctNodes[0][i] {
			t.Fatalf("MerkleRoot changed leaf %d to %s", i, l.Hex())
		}
	}
}
