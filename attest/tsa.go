package attest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/digitorus/pkcs7"
	"github.com/digitorus/timestamp"
)

// ErrTSA: the time-stamping authority did not give a token that holds.
var ErrTSA = errors.New("attest: time-stamping authority")

// maxToken bounds a TSA reply, and a .tsr read back.
const maxToken = 1 << 20

// TimestampPath is where the token over a signature by keyID is kept
// (NAME.<first 16 hex digits of the keyid>.tsr), or the token over the
// archive itself when keyID is empty (NAME.tsr).
func TimestampPath(archive, keyID string) string {
	if keyID == "" {
		return archive + ".tsr"
	}
	return archive + "." + keyID[:min(16, len(keyID))] + ".tsr"
}

// Stamp asks the TSA at url for a token over a message whose SHA-256 is
// digest (RFC 3161: SHA-256, a random nonce, the TSA's certificate
// asked for) and checks the reply: granted, signed by the certificate it
// carries, over digest, with the nonce. It returns the reply as received
// (a DER TimeStampResp) and what it says.
func Stamp(ctx context.Context, client *http.Client, url string, digest []byte) ([]byte, *timestamp.Timestamp, error) {
	nonce, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		return nil, nil, err
	}
	req := timestamp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: digest, Certificates: true, Nonce: nonce}
	der, err := req.Marshal()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: request: %v", ErrTSA, err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(der))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrTSA, url, err)
	}
	hr.Header.Set("Content-Type", "application/timestamp-query")
	hr.Header.Set("Accept", "application/timestamp-reply")
	resp, err := client.Do(hr)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrTSA, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxToken+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrTSA, url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%w: %s answered %s", ErrTSA, url, resp.Status)
	}
	if len(body) > maxToken {
		return nil, nil, fmt.Errorf("%w: %s: a reply over %d bytes", ErrTSA, url, maxToken)
	}
	ts, err := timestamp.ParseResponse(body)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrTSA, url, err)
	}
	switch {
	case len(ts.Certificates) == 0:
		return nil, nil, fmt.Errorf("%w: %s: the token carries no certificate (asked for), so its signature cannot be checked", ErrTSA, url)
	case ts.HashAlgorithm != crypto.SHA256 || !bytes.Equal(ts.HashedMessage, digest):
		return nil, nil, fmt.Errorf("%w: %s: the token is over %x, not the %x asked for", ErrTSA, url, ts.HashedMessage, digest)
	case ts.Nonce == nil || ts.Nonce.Cmp(nonce) != 0:
		return nil, nil, fmt.Errorf("%w: %s: the token's nonce is not the request's (a replayed reply?)", ErrTSA, url)
	}
	return body, ts, nil
}

// WriteNew writes b to a new file (never over one: ErrExists).
func WriteNew(path string, b []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%w: %s", ErrExists, path)
	}
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// timestampFiles are the .tsr sidecars beside the archive: NAME.tsr and
// NAME.<hex>.tsr.
func timestampFiles(archive string) []string {
	dir, base := filepath.Dir(archive), filepath.Base(archive)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if _, ok := timestampKey(base, n); ok && e.Type().IsRegular() {
			out = append(out, filepath.Join(dir, n))
		}
	}
	slices.Sort(out)
	return out
}

// timestampKey says whether name is a timestamp sidecar of the archive
// called base, and the keyid prefix it names ("" for NAME.tsr).
func timestampKey(base, name string) (string, bool) {
	mid, ok := strings.CutPrefix(name, base)
	if !ok {
		return "", false
	}
	mid, ok = strings.CutSuffix(mid, ".tsr")
	if !ok {
		return "", false
	}
	if mid == "" {
		return "", true
	}
	k, ok := strings.CutPrefix(mid, ".")
	if !ok || len(k) != 16 || strings.Trim(k, "0123456789abcdef") != "" {
		return "", false
	}
	return k, true
}

// Token is a time-stamp token read back and what it says.
type Token struct {
	Raw []byte
	TS  *timestamp.Timestamp
	p7  *pkcs7.PKCS7
}

// ReadToken reads a stored reply (or a bare token) and checks the TSA's
// signature with the certificate it carries.
func ReadToken(path string) (*Token, error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxToken+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxToken {
		return nil, fmt.Errorf("over %d bytes", maxToken)
	}
	ts, err := timestamp.ParseResponse(b)
	if err != nil {
		if ts, err = timestamp.Parse(b); err != nil {
			return nil, fmt.Errorf("not an RFC 3161 reply or token: %v", err)
		}
	}
	if len(ts.Certificates) == 0 {
		return nil, errors.New("the token carries no TSA certificate: its signature cannot be checked")
	}
	p7, err := pkcs7.Parse(ts.RawToken)
	if err != nil {
		return nil, err
	}
	return &Token{Raw: b, TS: ts, p7: p7}, nil
}

// Signer is the TSA's certificate, the one that signed the token.
func (t *Token) Signer() *x509.Certificate { return t.p7.GetOnlySigner() }

// CheckChain checks the TSA's certificate up to one of roots at the
// token's time, for time stamping (RFC 3161 2.3: the timeStamping
// extended key usage).
func (t *Token) CheckChain(roots *x509.CertPool) error {
	inter := x509.NewCertPool()
	for _, c := range t.p7.Certificates {
		inter.AddCert(c)
	}
	if err := t.p7.VerifyWithOpts(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping}, CurrentTime: t.TS.Time}); err != nil {
		return err
	}
	// A certificate with no extended key usage passes Go's check as
	// good for any: RFC 3161 wants timeStamping named.
	s := t.Signer()
	if s == nil || !slices.Contains(s.ExtKeyUsage, x509.ExtKeyUsageTimeStamping) {
		return errors.New("the TSA's certificate does not have the timeStamping extended key usage")
	}
	return nil
}

// Over says whether the token's imprint is of message's digest (SHA-256
// given, or computed with the token's hash from message).
func (t *Token) Over(message []byte, sha256Digest []byte) bool {
	if message == nil {
		return t.TS.HashAlgorithm == crypto.SHA256 && bytes.Equal(t.TS.HashedMessage, sha256Digest)
	}
	if !t.TS.HashAlgorithm.Available() {
		return false
	}
	if t.TS.HashAlgorithm == crypto.SHA256 {
		s := sha256.Sum256(message)
		return bytes.Equal(t.TS.HashedMessage, s[:])
	}
	h := t.TS.HashAlgorithm.New()
	h.Write(message)
	return bytes.Equal(t.TS.HashedMessage, h.Sum(nil))
}
