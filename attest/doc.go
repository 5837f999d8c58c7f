// Package attest signs sealed archives and timestamps them: who sealed
// the evidence (a DSSE envelope over an in-toto Statement) and when (an
// RFC 3161 token from a time-stamping authority), both stored beside the
// archive, and both checked again by verify.
//
// # The signature
//
// NAME.intoto.jsonl holds one DSSE envelope per line
// (https://github.com/secure-systems-lab/dsse, payloadType
// application/vnd.in-toto+json); a countersignature (amber sign by a
// second examiner) appends a line, so every signature is kept as made.
// The payload is an in-toto Statement v1 (https://in-toto.io/Statement/v1)
// whose one subject is the archive file: its name and its SHA-256 (the
// digest of NAME.sha256, recomputed from the file before signing). Its
// predicateType is PredicateType, https://amber-forensics.dev/acquisition/v1,
// and its predicate the acquisition record, every field read from the
// archive's sealed amber/manifest.json, never typed again:
//
//	case, exhibit, examiner, notes   the case metadata given at capture
//	tool {name, version}             the program that sealed the archive
//	host {name, os, kernel, user, uid}
//	command_line                     the capture's argv
//	started, finished                UTC, RFC 3339
//	sources [{kind, path, sha256, size}]  what the capture read
//	engine {runtime, name, version, api_version, host}  when from a runtime
//	artifacts [{kind, name, refs, image_id, merkle_root, files, layers}]
//	manifest {name: "amber/manifest.json", digest: {sha256: HEX}}
//	custody {head: "sha256:HEX", events: N}  the sealed custody log's head
//
// The signature is over the DSSE pre-authentication encoding
// PAE(type, payload) = "DSSEv1 " + len(type) + " " + type + " " +
// len(payload) + " " + payload: Ed25519 signs it as is (pure Ed25519), an
// ECDSA P-256 key signs its SHA-256 (ASN.1 DER signature), so openssl
// checks both without amber (README.md shows the commands). Keys are
// PKCS#8 PEM, as openssl genpkey writes them. A signature's keyid is the
// hex SHA-256 of the public key's DER SubjectPublicKeyInfo
// (openssl pkey -pubout -outform DER | sha256sum).
//
// An X.509 certificate chain (PEM, leaf first) is carried in the
// signature's "extension" field: DSSE 1.1's signature extension
// (protocol.md: EXTENSION, an unauthenticated object identified by its
// kind; envelope.proto: extension {kind, ext}), the extension point the
// specification defines, of kind CertChainKind with ext
// {"certificates": [PEM...]}. The "cert" field some tools read was
// proposed to DSSE (dsse PR 50) and never merged. As DSSE requires of an
// unauthenticated chain, it never supplies the trust: the root comes
// only from verify --ca (certificates of the chain serve as
// intermediates), and the leaf's key must be the key that signed.
//
// # The timestamps
//
// A token is requested (SHA-256, a random nonce, certReq) over the raw
// signature bytes of a new signature, or over the archive itself (its
// SHA-256) when amber sign is given only --tsa; the reply is checked
// (granted, the imprint, the nonce, the TSA's signature) and stored as
// returned (a DER TimeStampResp, what openssl ts -verify -in reads):
// NAME.<first 16 hex digits of the keyid>.tsr for a signature's,
// NAME.tsr for the archive's. The name binds the token to what it is
// over: verify checks a NAME.<keyid16>.tsr against that key's signature
// only, so a token moved to another name fails.
package attest
