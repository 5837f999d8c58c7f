// Package export writes what an archive holds in the exchange formats of
// the forensic field, for case tools that do not read amber archives:
//
//   - DFXML (Digital Forensics XML 1.x, as the dfxml_schema project's
//     dfxml.xsd defines it): every file of every image layer, container
//     changes layer and volume, with its metadata and SHA-256, one
//     <volume> per layer. Streamed from the file indexes: no file content
//     is read, and the document is never held in memory.
//   - CASE/UCO (JSON-LD, CASE 1.x / UCO 1.x): the acquisition as an
//     InvestigativeAction (performer, instrument, times, source), its
//     result the archive File with its hashes, and each custody event as
//     an action of its own.
//
// Names and other strings in the evidence are hostile: Escape says how
// the bytes XML cannot carry are written.
package export
