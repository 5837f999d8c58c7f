package attest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrKey: a key or certificate file that cannot be used (not PEM, not
// PKCS#8, an unsupported algorithm, a certificate for another key).
var ErrKey = errors.New("attest: unusable key")

// maxPEM bounds a key or certificate file read whole.
const maxPEM = 1 << 20

// Key is a signing key with its keyid and, when given, its certificate
// chain (leaf first).
type Key struct {
	Signer crypto.Signer
	ID     string
	Certs  []*x509.Certificate
}

// Algorithm names the key's signature scheme.
func (k *Key) Algorithm() string { return algorithm(k.Signer.Public()) }

// PublicKey is a key signatures are checked with.
type PublicKey struct {
	Key crypto.PublicKey
	ID  string
	// Path is the file it came from, to name it in a report.
	Path string
}

func algorithm(pub crypto.PublicKey) string {
	switch p := pub.(type) {
	case ed25519.PublicKey:
		return "ed25519"
	case *ecdsa.PublicKey:
		if p.Curve == elliptic.P256() {
			return "ecdsa-p256-sha256"
		}
	}
	return "unsupported"
}

// KeyID is the hex SHA-256 of pub's DER SubjectPublicKeyInfo.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrKey, err)
	}
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:]), nil
}

func supported(pub crypto.PublicKey) error {
	if algorithm(pub) == "unsupported" {
		return fmt.Errorf("%w: a %T key; amber signs with Ed25519 or ECDSA P-256", ErrKey, pub)
	}
	return nil
}

func readPEM(path string) ([]*pem.Block, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEM+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxPEM {
		return nil, fmt.Errorf("%w: %s is over %d bytes", ErrKey, path, maxPEM)
	}
	var blocks []*pem.Block
	for {
		var p *pem.Block
		p, b = pem.Decode(b)
		if p == nil {
			break
		}
		blocks = append(blocks, p)
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("%w: %s holds no PEM block", ErrKey, path)
	}
	return blocks, nil
}

// LoadKey reads a PKCS#8 PEM private key (Ed25519 or ECDSA P-256, as
// openssl genpkey writes them) and, when certPath is set, its
// certificate chain (PEM, leaf first), whose leaf must be for that key.
func LoadKey(path, certPath string) (*Key, error) {
	blocks, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	var priv any
	for _, b := range blocks {
		switch b.Type {
		case "PRIVATE KEY":
			if priv, err = x509.ParsePKCS8PrivateKey(b.Bytes); err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrKey, path, err)
			}
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("%w: %s is encrypted; decrypt it to a file only you can read (openssl pkey -in %s -out plain.key)", ErrKey, path, path)
		case "EC PRIVATE KEY":
			return nil, fmt.Errorf("%w: %s is a SEC1 EC key; amber reads PKCS#8 (openssl pkcs8 -topk8 -nocrypt -in %s -out key.p8)", ErrKey, path, path)
		}
		if priv != nil {
			break
		}
	}
	s, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %s holds no PKCS#8 private key", ErrKey, path)
	}
	if err := supported(s.Public()); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	k := &Key{Signer: s}
	if k.ID, err = KeyID(s.Public()); err != nil {
		return nil, err
	}
	if certPath != "" {
		if k.Certs, err = LoadCerts(certPath); err != nil {
			return nil, err
		}
		id, err := KeyID(k.Certs[0].PublicKey)
		if err != nil || id != k.ID {
			return nil, fmt.Errorf("%w: the first certificate of %s (%s) is not for the key %s", ErrKey, certPath, k.Certs[0].Subject, path)
		}
	}
	return k, nil
}

// LoadCerts reads the certificates of a PEM file, in order.
func LoadCerts(path string) ([]*x509.Certificate, error) {
	blocks, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for _, b := range blocks {
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrKey, path, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: %s holds no certificate", ErrKey, path)
	}
	return certs, nil
}

// LoadPublicKey reads the key to check signatures with: a PEM public
// key (SubjectPublicKeyInfo, openssl pkey -pubout), a certificate, or a
// PKCS#8 private key (its public half).
func LoadPublicKey(path string) (PublicKey, error) {
	blocks, err := readPEM(path)
	if err != nil {
		return PublicKey{}, err
	}
	var pub crypto.PublicKey
	for _, b := range blocks {
		switch b.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(b.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(b.Bytes); err == nil {
				pub = c.PublicKey
			}
		case "PRIVATE KEY":
			var k any
			if k, err = x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
				if s, ok := k.(crypto.Signer); ok {
					pub = s.Public()
				}
			}
		default:
			continue
		}
		if err != nil {
			return PublicKey{}, fmt.Errorf("%w: %s: %v", ErrKey, path, err)
		}
		if pub != nil {
			break
		}
	}
	if pub == nil {
		return PublicKey{}, fmt.Errorf("%w: %s holds no public key, certificate or PKCS#8 key", ErrKey, path)
	}
	if err := supported(pub); err != nil {
		return PublicKey{}, fmt.Errorf("%s: %w", path, err)
	}
	id, err := KeyID(pub)
	return PublicKey{Key: pub, ID: id, Path: path}, err
}

// GenerateKey makes a key of kind "ed25519" or "p256" and returns it as
// PKCS#8 PEM and its public key as SubjectPublicKeyInfo PEM.
func GenerateKey(kind string) (priv, pub []byte, id string, err error) {
	var s crypto.Signer
	switch kind {
	case "ed25519", "":
		_, s, err = ed25519.GenerateKey(rand.Reader)
	case "p256":
		s, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return nil, nil, "", fmt.Errorf("%w: key type %q: use ed25519 or p256", ErrKey, kind)
	}
	if err != nil {
		return nil, nil, "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(s)
	if err != nil {
		return nil, nil, "", err
	}
	pder, err := x509.MarshalPKIXPublicKey(s.Public())
	if err != nil {
		return nil, nil, "", err
	}
	id, err = KeyID(s.Public())
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder}), id, err
}

// dsseSigner signs the PAE as DSSE's Signer: Ed25519 over the bytes,
// ECDSA P-256 over their SHA-256 (ASN.1 DER), as openssl checks them.
type dsseSigner struct{ k *Key }

func (s dsseSigner) Sign(_ context.Context, data []byte) ([]byte, error) {
	switch k := s.k.Signer.(type) {
	case ed25519.PrivateKey:
		return ed25519.Sign(k, data), nil
	case *ecdsa.PrivateKey:
		h := sha256.Sum256(data)
		return ecdsa.SignASN1(rand.Reader, k, h[:])
	}
	return nil, fmt.Errorf("%w: %T", ErrKey, s.k.Signer)
}

func (s dsseSigner) KeyID() (string, error) { return s.k.ID, nil }

// dsseVerifier is DSSE's Verifier for one public key.
type dsseVerifier struct {
	pub crypto.PublicKey
	id  string
}

func (v dsseVerifier) Verify(_ context.Context, data, sig []byte) error {
	ok := false
	switch p := v.pub.(type) {
	case ed25519.PublicKey:
		ok = ed25519.Verify(p, data, sig)
	case *ecdsa.PublicKey:
		h := sha256.Sum256(data)
		ok = ecdsa.VerifyASN1(p, h[:], sig)
	}
	if !ok {
		return errors.New("signature does not verify")
	}
	return nil
}

func (v dsseVerifier) KeyID() (string, error)   { return v.id, nil }
func (v dsseVerifier) Public() crypto.PublicKey { return v.pub }
