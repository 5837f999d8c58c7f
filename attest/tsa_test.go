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
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/digitorus/timestamp"
)

// fakeTSA answers time-stamp requests, signed with a key of its own,
// after alter has had its way with the token (another imprint, another
// nonce) or with the reply (a rejection).
func fakeTSA(t *testing.T, alter func(ts *timestamp.Timestamp) []byte) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake TSA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
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
	return srv.URL
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
