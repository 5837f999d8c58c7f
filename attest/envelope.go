package attest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/amber-forensics/amber/hashing"
)

// CertChainKind is the kind of the DSSE signature extension that carries
// the signer's X.509 chain (doc.go says why an extension).
const CertChainKind = "application/vnd.amber.x509-chain.v1+json"

// Limits on the signature sidecar, which is as untrusted as the archive.
const (
	maxEnvelope  = 4 << 20
	maxEnvelopes = 1024
	// maxSignatures bounds the whole sidecar held in memory.
	maxSignatures = 64 << 20
)

// ErrExists: the key has signed this archive already, or a timestamp
// file is there.
var ErrExists = errors.New("attest: already there")

// Envelope is a DSSE envelope as stored: dsse.Envelope's fields and each
// signature's optional extension.
type Envelope struct {
	PayloadType string      `json:"payloadType"`
	Payload     string      `json:"payload"`
	Signatures  []Signature `json:"signatures"`
}

// Signature is one DSSE signature.
type Signature struct {
	KeyID     string     `json:"keyid"`
	Sig       string     `json:"sig"`
	Extension *Extension `json:"extension,omitempty"`
}

// Extension is DSSE's signature extension; amber's carries a chain.
type Extension struct {
	Kind string          `json:"kind"`
	Ext  json.RawMessage `json:"ext"`
}

// CertChain is the ext of a CertChainKind extension: PEM certificates,
// the signer's first.
type CertChain struct {
	Certificates []string `json:"certificates"`
}

// SignaturesPath is the signature sidecar of the archive at path.
func SignaturesPath(archive string) string { return archive + ".intoto.jsonl" }

// Sign makes the envelope of payload, signed with k, its chain (if any)
// in the signature's extension.
func Sign(ctx context.Context, payload []byte, k *Key) (*Envelope, error) {
	es, err := dsse.NewEnvelopeSigner(dsseSigner{k})
	if err != nil {
		return nil, err
	}
	d, err := es.SignPayload(ctx, PayloadType, payload)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	e := &Envelope{PayloadType: d.PayloadType, Payload: d.Payload}
	for _, s := range d.Signatures {
		sig := Signature{KeyID: s.KeyID, Sig: s.Sig}
		if len(k.Certs) > 0 {
			var cc CertChain
			for _, c := range k.Certs {
				cc.Certificates = append(cc.Certificates, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
			}
			b, err := json.Marshal(cc)
			if err != nil {
				return nil, err
			}
			sig.Extension = &Extension{Kind: CertChainKind, Ext: b}
		}
		e.Signatures = append(e.Signatures, sig)
	}
	return e, nil
}

// RawSig is a signature's bytes.
func (s Signature) RawSig() ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s.Sig)
	if err != nil {
		b, err = base64.URLEncoding.DecodeString(s.Sig)
	}
	return b, err
}

// Chain is the signature's certificate chain, if it carries one.
func (s Signature) Chain() ([]*x509.Certificate, error) {
	if s.Extension == nil || s.Extension.Kind != CertChainKind {
		return nil, nil
	}
	var cc CertChain
	if err := json.Unmarshal(s.Extension.Ext, &cc); err != nil {
		return nil, fmt.Errorf("certificate chain: %w", err)
	}
	var out []*x509.Certificate
	for _, p := range cc.Certificates {
		b, _ := pem.Decode([]byte(p))
		if b == nil || b.Type != "CERTIFICATE" {
			return nil, errors.New("certificate chain: not a PEM certificate")
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate chain: %w", err)
		}
		out = append(out, c)
	}
	return out, nil
}

// Line is one line of the signature sidecar: its envelope, or why it is
// none.
type Line struct {
	N        int
	Envelope *Envelope
	Err      error
	// SHA256 is the line's (without its newline), as the signed custody
	// event records it.
	SHA256 hashing.Digest
}

// ReadEnvelopes reads the signature sidecar, one envelope per line; a
// line that is no envelope is returned with its error. A missing file is
// os.ErrNotExist.
func ReadEnvelopes(path string) ([]Line, error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Line
	r := bufio.NewReader(f)
	total := 0
	for n := 1; ; n++ {
		line, err := readLine(r, maxEnvelope)
		total += len(line)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("%s line %d: %w", path, n, err)
		}
		if len(out) >= maxEnvelopes || total > maxSignatures {
			return out, fmt.Errorf("%s: more than %d envelopes or %d MiB", path, maxEnvelopes, maxSignatures>>20)
		}
		l := Line{N: n, SHA256: hashing.Sum(line)}
		var e Envelope
		if err := json.Unmarshal(line, &e); err != nil {
			l.Err = fmt.Errorf("not a DSSE envelope: %v", err)
		} else if len(e.Signatures) == 0 {
			l.Err = errors.New("an envelope with no signature")
		} else {
			l.Envelope = &e
		}
		out = append(out, l)
	}
}

// readLine reads one line of at most limit bytes, without its newline.
func readLine(r *bufio.Reader, limit int) ([]byte, error) {
	var b []byte
	for {
		chunk, err := r.ReadSlice('\n')
		b = append(b, chunk...)
		if len(b) > limit {
			return nil, fmt.Errorf("a line over %d bytes", limit)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF && len(b) > 0 {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
		return bytes.TrimSuffix(b, []byte("\n")), nil
	}
}

// Append adds e as a line of the signature sidecar (made with perm),
// unless its key has signed there already (ErrExists). It returns the
// line's number and bytes.
func Append(path string, e *Envelope, perm os.FileMode) (int, []byte, error) {
	lines, err := ReadEnvelopes(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, nil, err
	}
	for _, l := range lines {
		if l.Envelope == nil {
			continue
		}
		for _, s := range l.Envelope.Signatures {
			for _, n := range e.Signatures {
				if s.KeyID == n.KeyID {
					return 0, nil, fmt.Errorf("%w: %s line %d is signed by key %s already", ErrExists, path, l.N, s.KeyID)
				}
			}
		}
	}
	b, err := json.Marshal(e)
	if err != nil {
		return 0, nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, perm)
	if err != nil {
		return 0, nil, err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", path, err)
	}
	return len(lines) + 1, b, nil
}

// verifySig checks one signature of e with pub, through DSSE's verifier
// (PAE over the payload as stored).
func verifySig(ctx context.Context, e *Envelope, s Signature, pub PublicKey) error {
	ev, err := dsse.NewEnvelopeVerifier(dsseVerifier{pub: pub.Key, id: pub.ID})
	if err != nil {
		return err
	}
	d := &dsse.Envelope{PayloadType: e.PayloadType, Payload: e.Payload, Signatures: []dsse.Signature{{KeyID: s.KeyID, Sig: s.Sig}}}
	_, err = ev.Verify(ctx, d)
	return err
}

// openRegular opens a sidecar for reading only when it is a regular file:
// a FIFO put in its place would block the open, a device feed it forever.
func openRegular(path string) (*os.File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, st.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return f, nil
}
