// Package extsort sorts key/payload records larger than memory: records
// are buffered, sorted and spilled to an unnamed temp file in runs, then
// merged; a Spool holds a stream that is written once and read back once.
// The file index builder (package fileindex) uses it so that a layer of
// millions of files is indexed in bounded memory.
package extsort
