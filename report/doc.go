// Package report builds the examiner's report of an amber archive: what an
// imaging tool's report gives (Guymager's .info, FTK Imager's report), to
// attach to an affidavit.
//
// # One model, two renderings
//
// Build reads everything the report says from the archive (its manifest,
// custody log, file indexes, image configs), its sidecars and a
// verification run made by the caller just before: no figure is written
// by hand. The Report it returns is the data (amber report --json prints
// it as is), and WriteHTML renders it as one self-contained HTML page:
// inline CSS, no script, no network access, a print stylesheet so that
// printing it (or headless Chromium's --print-to-pdf) gives a clean
// document. Every string of the evidence goes through html/template, and
// through internal/textsafe first, so that a file name holding markup,
// newlines or bidi controls shows as text, and as itself quoted.
//
// # What it holds
//
// The case header; the acquisition record (tool, host, OS and kernel,
// runtime and API version, command line, UTC start and end, sources); the
// archive's hashes and the sidecars that record them; the signatures the
// caller found (Signature); the verification run, its date and result,
// each failure named; the custody log with its chain status; each
// artifact with its layers (digest, size, created-by, Merkle root, file
// count); the findings: each container's changes against its image (A, C,
// D, content-only changes marked), the engine's disagreements, the
// anomalies, the memory dumps; and, with Input.Files, every file of every
// layer with its SHA-256, from the file indexes (no content is read).
package report
