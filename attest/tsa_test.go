package attest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/digitorus/timestamp"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
)

// fakeTSA answers time-stamp requests, signed with a key of its own,
// after alter has had its way with the token (another imprint, another
// nonce) or with the reply (a rejection).
func fakeTSA(t *testing.T, alter func(ts *timestamp.Timestamp) []byte) string {
	url, _ := fakeTSAWithCert(t, alter)
	return url
}

// fakeTSAWithCert is fakeTSA, and its (self-signed) certificate.
func fakeTSAWithCert(t *testing.T, alter func(ts *timestamp.Timestamp) []byte) (string, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake TSA"},
		NotBefore: time.Now().Add(-24 * time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		req, err := timestamp.ParseRequest(b)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ts := &timestamp.Timestamp{HashAlgorithm: req.HashAlgorithm, HashedMessage: req.HashedMessage, Time: time.Now(),
			Nonce: req.Nonce, Policy: []int{1, 2, 3, 4, 1}, AddTSACertificate: req.Certificates}
		if out := alter(ts); out != nil {
			w.Write(out)
			return
		}
		resp, err := ts.CreateResponseWithOpts(cert, key, crypto.SHA256)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Write(resp)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, cert
}

// TestStampChecksReply: Stamp keeps a token only when it is granted, over
// the digest asked for, with the request's nonce and the TSA's
// certificate; a replayed or substituted reply is refused.
func TestStampChecksReply(t *testing.T) {
	digest := sha256.Sum256([]byte("signature"))
	ctx := context.Background()
	if _, ts, err := Stamp(ctx, http.DefaultClient, fakeTSA(t, func(*timestamp.Timestamp) []byte { return nil }), digest[:]); err != nil || ts.Time.IsZero() {
		t.Fatalf("an honest TSA: %v", err)
	}
	for name, c := range map[string]struct {
		alter func(ts *timestamp.Timestamp) []byte
		want  string
	}{
		"another imprint": {func(ts *timestamp.Timestamp) []byte { ts.HashedMessage = make([]byte, 32); return nil }, "not the"},
		"another nonce":   {func(ts *timestamp.Timestamp) []byte { ts.Nonce = big.NewInt(42); return nil }, "nonce"},
		"no nonce":        {func(ts *timestamp.Timestamp) []byte { ts.Nonce = nil; return nil }, "nonce"},
		"no certificate":  {func(ts *timestamp.Timestamp) []byte { ts.AddTSACertificate = false; return nil }, "no certificate"},
		"rejection": {func(*timestamp.Timestamp) []byte {
			b, _ := timestamp.CreateErrorResponse(timestamp.Rejection, timestamp.BadAlgorithm)
			return b
		}, "rejected"},
		"junk": {func(*timestamp.Timestamp) []byte { return []byte("<html>") }, "time-stamping authority"},
	} {
		_, _, err := Stamp(ctx, http.DefaultClient, fakeTSA(t, c.alter), digest[:])
		if !errors.Is(err, ErrTSA) || !strings.Contains(strings.ToLower(err.Error()), c.want) {
			t.Errorf("%s: %v, want ErrTSA saying %q", name, err, c.want)
		}
	}
}

// TestChainAtTimestamp: an examiner's certificate that has expired since
// it signed fails verify --ca at today's date; with a token over that
// signature from a TSA that --tsa-ca trusts, dated inside the
// certificate's validity, the chain is checked at the token's time and
// holds. A token dated after the expiry does not help.
func TestChainAtTimestamp(t *testing.T) {
	now := time.Now()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "examiners CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(48 * time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	ca, _ := x509.ParseCertificate(caDER)
	priv, _, _, err := GenerateKey("ed25519")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "k.key"), priv, 0o600)
	k, err := LoadKey(filepath.Join(dir, "k.key"), "")
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "J. Doe"},
		NotBefore: now.Add(-3 * time.Hour), NotAfter: now.Add(-time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, k.Signer.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "chain.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), 0o600)
	if k, err = LoadKey(filepath.Join(dir, "k.key"), filepath.Join(dir, "chain.pem")); err != nil {
		t.Fatal(err)
	}
	arch := filepath.Join(dir, "case.tar.zst")
	sum, msum := hashing.Sum([]byte("archive")), hashing.Sum([]byte("manifest"))
	payload, _ := Statement(Subject{Name: "case.tar.zst", SHA256: sum, ManifestSHA256: msum, Manifest: &manifest.Manifest{}})
	e, err := Sign(context.Background(), payload, k)
	if err != nil {
		t.Fatal(err)
	}
	Append(SignaturesPath(arch), e, 0o600)
	raw, _ := e.Signatures[0].RawSig()
	digest := sha256.Sum256(raw)
	roots := x509.NewCertPool()
	roots.AddCert(ca)

	check := func(stampedAt time.Time) *Result {
		t.Helper()
		os.Remove(TimestampPath(arch, k.ID))
		url, tsaCert := fakeTSAWithCert(t, func(ts *timestamp.Timestamp) []byte { ts.Time = stampedAt; return nil })
		reply, _, err := Stamp(context.Background(), http.DefaultClient, url, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(TimestampPath(arch, k.ID), reply, 0o600)
		tsaRoots := x509.NewCertPool()
		tsaRoots.AddCert(tsaCert)
		res, err := Check(context.Background(), arch, sum, msum, CheckOptions{Roots: roots, RootsName: "ca.pem", TSARoots: tsaRoots})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res, _ := Check(context.Background(), arch, sum, msum, CheckOptions{Roots: roots, RootsName: "ca.pem"})
	if res.Signatures[0].Status != StatusFailed || !strings.Contains(res.Signatures[0].Detail, "expired") {
		t.Errorf("an expired certificate, no timestamp: %+v", res.Signatures[0])
	}
	if res := check(now.Add(-2 * time.Hour)); res.Signatures[0].Status != StatusVerified || len(res.Problems) != 0 {
		t.Errorf("stamped while the certificate was valid: %+v %v", res.Signatures[0], res.Problems)
	}
	if res := check(now.Add(-30 * time.Minute)); res.Signatures[0].Status != StatusFailed {
		t.Errorf("stamped after the certificate expired: %+v", res.Signatures[0])
	}
}

// TestTokenOverUncheckedSignature: a token from a trusted TSA over the
// bytes of a signature that nothing checked dates those bytes, not the
// archive: anyone can put an old token's message in an envelope's sig
// over a statement of a new archive. verify --tsa-ca must not call it a
// verified time of the archive; and --tsa-ca with no timestamp that
// holds is a failure, as --ca with no signer is.
func TestTokenOverUncheckedSignature(t *testing.T) {
	arch, sum, msum, _, _ := signed(t)
	// A forged line: a statement of this archive, a "signature" that is
	// only bytes a TSA once stamped, under a keyid of hex.
	forged := []byte("bytes a TSA stamped long ago")
	payload, _ := Statement(Subject{Name: "case.tar.zst", SHA256: sum, ManifestSHA256: msum, Manifest: &manifest.Manifest{}})
	keyid := strings.Repeat("ab", 32)
	e := &Envelope{PayloadType: PayloadType, Payload: base64.StdEncoding.EncodeToString(payload),
		Signatures: []Signature{{KeyID: keyid, Sig: base64.StdEncoding.EncodeToString(forged)}}}
	os.Remove(SignaturesPath(arch))
	if _, _, err := Append(SignaturesPath(arch), e, 0o600); err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(forged)
	url, tsaCert := fakeTSAWithCert(t, func(*timestamp.Timestamp) []byte { return nil })
	reply, _, err := Stamp(context.Background(), http.DefaultClient, url, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(TimestampPath(arch, keyid), reply, 0o600)
	tsaRoots := x509.NewCertPool()
	tsaRoots.AddCert(tsaCert)
	res, err := Check(context.Background(), arch, sum, msum, CheckOptions{TSARoots: tsaRoots})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Timestamps) != 1 || res.Timestamps[0].Status == StatusVerified {
		t.Errorf("a token over an unchecked signature: %+v, want it not verified", res.Timestamps)
	}
	if len(res.Problems) == 0 {
		t.Errorf("--tsa-ca with no timestamp that holds for the archive: no problem (warnings %v)", res.Warnings)
	}

	// No timestamp at all: --tsa-ca fails.
	os.Remove(TimestampPath(arch, keyid))
	if res, _ := Check(context.Background(), arch, sum, msum, CheckOptions{TSARoots: tsaRoots}); len(res.Problems) == 0 {
		t.Errorf("--tsa-ca and no timestamp: no problem")
	}

	// A token over the archive itself still holds with --tsa-ca alone.
	reply, _, err = Stamp(context.Background(), http.DefaultClient, url, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(TimestampPath(arch, ""), reply, 0o600)
	res, _ = Check(context.Background(), arch, sum, msum, CheckOptions{TSARoots: tsaRoots})
	if len(res.Problems) != 0 {
		t.Errorf("a token over the archive: %v", res.Problems)
	}
}
