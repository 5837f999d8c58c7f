// Package archive is amber's evidence container (format v1): the reader
// and writer of the sealed NAME.tar.zst archive, its frames and frame
// cache, the trailer, the sidecars' checks, and Verify.
//
// # Layout
//
// An archive is a PAX tar stream cut into independent zstd frames, followed
// by a seek table in the zstd seekable format. Inside the tar is an OCI image
// layout (oci-layout, index.json, blobs/sha256/...) with uncompressed layers,
// then amber/index/<layer> file indexes (package fileindex),
// amber/custody.jsonl, amber/manifest.json (package manifest), and a
// fixed-size amber/trailer that points at the manifest. Open reads the seek
// table and the trailer at the end, then the manifest and only the indexes
// it needs: no scan of the data.
//
// # Trust
//
// Every tar member's content is named by its SHA-256 in the manifest, the
// manifest's SHA-256 is in the trailer, the bytes between members (headers,
// padding) are hashed into the trailer too, and every frame carries zstd's
// checksum and the seek table's. Verify recomputes all of them.
//
// # Encoders
//
// Readers are pure Go (klauspost's zstd decoder). The writer compresses
// with klauspost's encoder unless WriterOptions.Encoder names another: the
// command line passes libzstd (package archive/cgozstd, cgo) where it is
// built in, measured 1.3x faster. Nothing that only reads links cgo.
package archive
