// Package hashing holds the digests amber records: a typed SHA-256 digest
// with text marshalling, a writer that computes SHA-256, SHA-1 and MD5 in one
// pass, and the Merkle tree that binds per-file hashes into one root.
//
// It uses only the standard library, so its results can be reproduced by
// anyone with sha256sum and a page of code.
package hashing
