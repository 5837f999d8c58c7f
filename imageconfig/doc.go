// Package imageconfig reads what an examiner wants from an image config:
// the build history paired with the layers it made, a reconstructed
// Dockerfile (legacy builder and BuildKit forms; what cannot be recovered
// is marked, never guessed) and the runtime settings. Configs come from
// evidence: unknown fields are ignored, sizes bounded.
package imageconfig
