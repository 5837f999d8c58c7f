// Package manifest is amber's evidence model: amber/manifest.json (what was
// captured, from where, by whom, and where each piece lies in the archive),
// the hash-chained custody log and the Recorder that appends to it, the
// host record of an acquisition, and the names of members.
//
// The archive container that holds the model is package archive; the
// per-layer file index is package fileindex. This package knows neither:
// it is the vocabulary both speak.
package manifest
