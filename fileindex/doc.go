// Package fileindex is the per-layer file index of an amber archive
// (amber/index/<layer>): fixed-size records of every path of a layer tar,
// in tree order with resolved hard links, whiteouts and opaque markers
// flagged; the builder that makes it from a tar scan in bounded memory
// (an external sort, internal/extsort); ScanLayerWith, which reads a layer
// tar once and feeds the builder; and the paged index that reads a large
// index from the archive a page at a time.
//
// Records are evidence: the builder flags what is unsafe (names with ..,
// links out of the tree, entries under a non-directory) as anomalies and
// never resolves a path outside the layer.
package fileindex
