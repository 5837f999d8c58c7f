package attest

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
)

// CheckOptions says what signatures and timestamps are checked with.
// With none of them, Check lists what it finds and checks nothing: its
// findings are warnings.
type CheckOptions struct {
	// Keys: each must have signed the archive.
	Keys []PublicKey
	// Roots: a signature's certificate chain must lead to one of them,
	// and at least one signature must carry such a chain. RootsName
	// names them in the report (the --ca file).
	Roots     *x509.CertPool
	RootsName string
	// TSARoots: each timestamp's TSA must chain to one of them, and at
	// least one token must be over the archive or a verified signature.
	TSARoots *x509.CertPool
	// Custody are the archive's custody events: a signed event that
	// names a line's SHA-256 dates its signature (a claim of the log, not
	// a trusted time).
	Custody []manifest.Event
}

// Checking says whether anything is checked (findings are failures).
func (o CheckOptions) Checking() bool {
	return len(o.Keys) > 0 || o.Roots != nil || o.TSARoots != nil
}

// Signature states.
const (
	StatusVerified   = "verified"
	StatusFailed     = "FAILED"
	StatusNotChecked = "not checked"
)

// SigResult is one signature found and what became of it.
type SigResult struct {
	Line      int    `json:"line"`
	KeyID     string `json:"keyid"`
	Algorithm string `json:"algorithm,omitempty"`
	// Signer is the subject of the certificate the signature carries.
	Signer string `json:"signer_certificate,omitempty"`
	// Examiner and Subject are what the signed statement says (read
	// whether or not the signature is checked).
	Examiner string `json:"examiner,omitempty"`
	Subject  string `json:"subject,omitempty"`
	Status   string `json:"status"`
	// Signed is when the custody log's signed event for this line says
	// it was made, and by whom (actor@host).
	Signed   time.Time `json:"signed,omitzero"`
	SignedBy string    `json:"signed_by,omitempty"`
	// By is what it was checked with: a key file, or the --ca root.
	By     string `json:"verified_with,omitempty"`
	Detail string `json:"detail,omitempty"`
	raw    []byte
}

// TSResult is one timestamp found and what became of it.
type TSResult struct {
	File   string    `json:"file"`
	Time   time.Time `json:"time,omitzero"`
	Over   string    `json:"over"`
	TSA    string    `json:"tsa,omitempty"`
	Serial string    `json:"serial,omitempty"`
	Status string    `json:"status"`
	Detail string    `json:"detail,omitempty"`
}

// Result is what Check found.
type Result struct {
	Signatures []SigResult `json:"signatures"`
	Timestamps []TSResult  `json:"timestamps"`
	// Problems fail verification (only when checking); Warnings do not.
	Problems []manifest.Problem `json:"-"`
	Warnings []manifest.Problem `json:"-"`
}

// Check reads the signatures and timestamps beside the archive at path
// (its file SHA-256 sum, its manifest's msum) and checks them as o asks.
func Check(ctx context.Context, path string, sum, msum hashing.Digest, o CheckOptions) (*Result, error) {
	res := &Result{Signatures: []SigResult{}, Timestamps: []TSResult{}}
	sigPath := SignaturesPath(path)
	sigName := filepath.Base(sigPath)
	finding := func(where, format string, args ...any) {
		p := manifest.Problem{Where: where, Detail: fmt.Sprintf(format, args...)}
		if o.Checking() {
			res.Problems = append(res.Problems, p)
		} else {
			res.Warnings = append(res.Warnings, p)
		}
	}
	lines, err := ReadEnvelopes(sigPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if len(o.Keys) > 0 || o.Roots != nil {
			finding("signature", "%s not found: the archive is not signed", sigName)
		}
	case err != nil:
		finding("signature", "%v", err)
	}
	for _, l := range lines {
		where := fmt.Sprintf("signature %s line %d", sigName, l.N)
		if l.Err != nil {
			finding(where, "%v", l.Err)
			continue
		}
		e := l.Envelope
		// What the statement says is checked whatever the signature: a
		// valid signature over another archive is no signature of this one.
		var stmtErr string
		var st *ParsedStatement
		payload, perr := base64Decode(e.Payload)
		switch {
		case e.PayloadType != PayloadType:
			stmtErr = fmt.Sprintf("payload type %q, not %s", e.PayloadType, PayloadType)
		case perr != nil:
			stmtErr = "its payload is not base64"
		default:
			if st, err = ParseStatement(payload); err != nil {
				stmtErr = err.Error()
			} else if st.SubjectSHA256 != sum.Hex() {
				stmtErr = fmt.Sprintf("it signs a file of sha256 %s; this archive's is %s", st.SubjectSHA256, sum.Hex())
			} else if msum.IsZero() {
				stmtErr = "the archive's manifest could not be read to compare with the statement's"
			} else if got := st.Predicate.Manifest.Digest["sha256"]; got != msum.Hex() {
				stmtErr = fmt.Sprintf("its statement's manifest sha256 is %s; this archive's manifest is %s", got, msum.Hex())
			}
		}
		if stmtErr != "" {
			finding(where, "%s", stmtErr)
		} else if st.SubjectName != filepath.Base(path) {
			res.Warnings = append(res.Warnings, manifest.Problem{Where: where, Detail: fmt.Sprintf("signed as %q: the archive was renamed since", st.SubjectName)})
		}
		for _, s := range e.Signatures {
			r := SigResult{Line: l.N, KeyID: s.KeyID, Status: StatusNotChecked}
			for _, ev := range o.Custody {
				if ev.Action == "signed" && ev.Details["envelope_sha256"] == l.SHA256.Hex() && ev.Details["keyid"] == s.KeyID {
					r.Signed, r.SignedBy = ev.Time.UTC(), ev.Actor+"@"+ev.Host
				}
			}
			if st != nil {
				r.Examiner, r.Subject = st.Predicate.Examiner, st.SubjectName
			}
			raw, rerr := s.RawSig()
			r.raw = raw
			chain, cerr := s.Chain()
			if len(chain) > 0 {
				r.Signer = chain[0].Subject.String()
				r.Algorithm = algorithm(chain[0].PublicKey)
			}
			fail := func(format string, args ...any) {
				r.Status, r.Detail = StatusFailed, fmt.Sprintf(format, args...)
				res.Problems = append(res.Problems, manifest.Problem{Where: fmt.Sprintf("%s (key %s)", where, short16(s.KeyID)), Detail: r.Detail})
			}
			var key *PublicKey
			for i := range o.Keys {
				if o.Keys[i].ID == s.KeyID {
					key = &o.Keys[i]
				}
			}
			if cerr != nil {
				// Junk where a chain should be: said, whatever checks the
				// signature.
				finding(where, "%v", cerr)
			}
			useChain := o.Roots != nil && len(chain) > 0
			switch {
			case key == nil && !useChain:
			case rerr != nil:
				fail("its sig is not base64")
			default:
				// With both a key and a root for it, both must hold.
				var by []string
				if key != nil {
					r.Algorithm = algorithm(key.Key)
					if err := verifySig(ctx, e, s, *key); err != nil {
						fail("the signature does not verify with %s: the envelope or its statement was altered, or it was signed with another key", key.Path)
						break
					}
					by = append(by, key.Path)
				}
				if useChain {
					how, err := checkChain(ctx, path, e, s, chain, raw, o)
					if err != nil {
						fail("%v", err)
						break
					}
					by = append(by, how)
				}
				if stmtErr != "" {
					fail("the signature holds, over a statement that is not about this archive: %s", stmtErr)
					break
				}
				r.Status, r.By = StatusVerified, strings.Join(by, " and ")
			}
			res.Signatures = append(res.Signatures, r)
		}
	}
	// Every key given must have signed, and a root must have a signer.
	for _, k := range o.Keys {
		found := false
		for _, r := range res.Signatures {
			found = found || (r.KeyID == k.ID && r.Status == StatusVerified)
		}
		if !found && !hasFailed(res.Signatures, k.ID) {
			res.Problems = append(res.Problems, manifest.Problem{Where: "signature", Detail: fmt.Sprintf("no signature by the key of %s (keyid %s) in %s", k.Path, k.ID, sigName)})
		}
	}
	if o.Roots != nil {
		found := false
		for _, r := range res.Signatures {
			found = found || (r.Status == StatusVerified && strings.Contains(r.By, "certificate chain to "))
		}
		if !found && !hasFailed(res.Signatures, "") {
			res.Problems = append(res.Problems, manifest.Problem{Where: "signature", Detail: fmt.Sprintf("no signature carries a certificate that chains to %s", o.RootsName)})
		}
	}
	checkTimestamps(path, sum, res, o, finding)
	return res, nil
}

// checkChain checks signature s of e with the leaf of its chain, and the
// chain up to one of --ca's roots: at the time of a trusted token over
// the signature (an examiner's certificate outlives few archives), else
// today. It says how it was checked.
func checkChain(ctx context.Context, path string, e *Envelope, s Signature, chain []*x509.Certificate, raw []byte, o CheckOptions) (string, error) {
	subject := chain[0].Subject.String()
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	how := "certificate chain to " + o.RootsName
	at, ok := trustedTime(path, s.KeyID, raw, o)
	if ok {
		how += " at its timestamp's time " + at.UTC().Format(time.RFC3339)
	} else {
		at = time.Now()
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: o.Roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: at}); err != nil {
		return "", fmt.Errorf("its certificate %q does not chain to %s: %v", subject, o.RootsName, err)
	}
	id, err := KeyID(chain[0].PublicKey)
	if err != nil || id != s.KeyID {
		return "", fmt.Errorf("its certificate %q is not for the key that signed (keyid %s)", subject, s.KeyID)
	}
	if err := verifySig(ctx, e, s, PublicKey{Key: chain[0].PublicKey, ID: id}); err != nil {
		return "", fmt.Errorf("the signature does not verify with the key of its certificate %q: the envelope or its statement was altered", subject)
	}
	return how, nil
}

// trustedTime is the time of the token over the signature raw by keyid
// (NAME.<keyid16>.tsr), when its TSA chains to --tsa-ca.
func trustedTime(path, keyid string, raw []byte, o CheckOptions) (time.Time, bool) {
	// The keyid is the envelope's: a name only when it is hex.
	if o.TSARoots == nil || raw == nil || len(keyid) != 64 || strings.Trim(keyid, "0123456789abcdef") != "" {
		return time.Time{}, false
	}
	tok, err := ReadToken(TimestampPath(path, keyid))
	if err != nil || !tok.Over(raw, nil) || tok.CheckChain(o.TSARoots) != nil {
		return time.Time{}, false
	}
	return tok.TS.Time, true
}

// hasFailed: a signature of keyid (any, when empty) already failed, so
// "missing" would say it twice.
func hasFailed(rs []SigResult, keyid string) bool {
	for _, r := range rs {
		if r.Status == StatusFailed && (keyid == "" || r.KeyID == keyid) {
			return true
		}
	}
	return false
}

func short16(id string) string { return id[:min(16, len(id))] }

// checkTimestamps reads each .tsr beside the archive: NAME.tsr must be
// over the archive's SHA-256, NAME.<keyid16>.tsr over a signature by
// that key.
func checkTimestamps(path string, sum hashing.Digest, res *Result, o CheckOptions, finding func(where, format string, args ...any)) {
	base := filepath.Base(path)
	for _, f := range timestampFiles(path) {
		name := filepath.Base(f)
		where := "timestamp " + name
		k, _ := timestampKey(base, name)
		r := TSResult{File: name, Status: StatusNotChecked}
		tok, err := ReadToken(f)
		if err != nil {
			r.Status, r.Detail = StatusFailed, err.Error()
			finding(where, "%v", err)
			res.Timestamps = append(res.Timestamps, r)
			continue
		}
		r.Time = tok.TS.Time.UTC()
		if tok.TS.SerialNumber != nil {
			r.Serial = tok.TS.SerialNumber.String()
		}
		if s := tok.Signer(); s != nil {
			r.TSA = s.Subject.String()
		}
		over := false
		// A token over a signature dates the archive only through that
		// signature: over bytes nothing checked (or that failed), it
		// dates those bytes alone.
		var sig *SigResult
		if k == "" {
			r.Over = "the archive (sha256 " + sum.Hex() + ")"
			over = tok.Over(nil, sum[:])
		} else {
			r.Over = "a signature by a key " + k + "... (none in " + SignaturesPath(base) + ")"
			for i, s := range res.Signatures {
				if strings.HasPrefix(s.KeyID, k) && s.raw != nil {
					r.Over = fmt.Sprintf("the signature of line %d (key %s)", s.Line, short16(s.KeyID))
					if tok.Over(s.raw, nil) {
						over, sig = true, &res.Signatures[i]
						break
					}
				}
			}
		}
		switch {
		case !over:
			r.Status, r.Detail = StatusFailed, "the token is over another message, not "+r.Over
			finding(where, "%s", r.Detail)
		case o.TSARoots != nil:
			if err := tok.CheckChain(o.TSARoots); err != nil {
				r.Status, r.Detail = StatusFailed, "the TSA's certificate does not hold: "+err.Error()
				finding(where, "%s", r.Detail)
			} else if sig != nil && sig.Status == StatusFailed {
				r.Status, r.Detail = StatusFailed, "the TSA's chain leads to --tsa-ca, over a signature that does not hold"
				finding(where, "%s", r.Detail)
			} else if sig != nil && sig.Status != StatusVerified {
				r.Detail = "the TSA's chain leads to --tsa-ca, over a signature not checked (give --key or --ca): it dates those bytes, not the archive"
				res.Warnings = append(res.Warnings, manifest.Problem{Where: where, Detail: r.Detail})
			} else {
				r.Status, r.Detail = StatusVerified, "the TSA's chain leads to --tsa-ca"
			}
		default:
			r.Detail = "its imprint matches and its signature holds; the TSA's certificate is not checked (give --tsa-ca)"
		}
		res.Timestamps = append(res.Timestamps, r)
	}
	// --tsa-ca asks for a trusted time, as --ca asks for a signer.
	if o.TSARoots != nil {
		found, failed := false, false
		for _, t := range res.Timestamps {
			found = found || t.Status == StatusVerified
			failed = failed || t.Status == StatusFailed
		}
		if !found && !failed {
			res.Problems = append(res.Problems, manifest.Problem{Where: "timestamp", Detail: "no timestamp of the archive, or of a signature that holds, chains to --tsa-ca"})
		}
	}
}

func base64Decode(s string) ([]byte, error) { return Signature{Sig: s}.RawSig() }
