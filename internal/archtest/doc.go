// Package archtest holds the architecture test: imports point one way,
// cmd -> {snapshot, view, ...} -> manifest -> hashing (DESIGN.md).
package archtest
