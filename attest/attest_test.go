package attest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/manifest"
)

// signed makes an archive stand-in (the statement is over digests, so
// no archive is needed), a key, and one envelope in its sidecar.
func signed(t *testing.T) (string, hashing.Digest, hashing.Digest, *Key, PublicKey) {
	t.Helper()
	dir := t.TempDir()
	priv, pub, _, err := GenerateKey("ed25519")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "k.key"), priv, 0o600)
	os.WriteFile(filepath.Join(dir, "k.pub"), pub, 0o600)
	k, err := LoadKey(filepath.Join(dir, "k.key"), "")
	if err != nil {
		t.Fatal(err)
	}
	pk, err := LoadPublicKey(filepath.Join(dir, "k.pub"))
	if err != nil || pk.ID != k.ID {
		t.Fatalf("public key %v (%v), want keyid %s", pk.ID, err, k.ID)
	}
	arch := filepath.Join(dir, "case.tar.zst")
	sum, msum := hashing.Sum([]byte("archive")), hashing.Sum([]byte("manifest"))
	m := &manifest.Manifest{Case: manifest.Case{Examiner: "J. Doe"}, Tool: manifest.Tool{Name: "amber", Version: "test"}}
	payload, err := Statement(Subject{Name: "case.tar.zst", SHA256: sum, ManifestSHA256: msum, Manifest: m})
	if err != nil {
		t.Fatal(err)
	}
	e, err := Sign(context.Background(), payload, k)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Append(SignaturesPath(arch), e, 0o600); err != nil {
		t.Fatal(err)
	}
	return arch, sum, msum, k, pk
}

// TestCheckHostileSidecars: lines that are no envelope, envelopes whose
// payload or signature is not base64, a statement of another type or
// with two subjects, a certificate extension of junk, and a .tsr that is
// no token are each a finding naming the line or file (a failure with a
// key, a warning without), never a panic; the good line still verifies.
func TestCheckHostileSidecars(t *testing.T) {
	arch, sum, msum, _, pk := signed(t)
	good := readFile(t, SignaturesPath(arch))
	var e Envelope
	if err := json.Unmarshal([]byte(strings.TrimSpace(good)), &e); err != nil {
		t.Fatal(err)
	}
	variant := func(f func(e *Envelope)) string {
		c := e
		c.Signatures = append([]Signature{}, e.Signatures...)
		f(&c)
		b, _ := json.Marshal(c)
		return string(b)
	}
	stmt := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	lines := []string{
		"not json",
		"",
		`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}`,
		variant(func(e *Envelope) { e.Payload = "!!!" }),
		variant(func(e *Envelope) { e.Signatures[0].Sig = "!!!" }),
		variant(func(e *Envelope) { e.PayloadType = "text/plain" }),
		variant(func(e *Envelope) {
			e.Payload = stmt(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":"00"}},{"name":"b","digest":{"sha256":"11"}}],"predicateType":"x","predicate":{}}`)
		}),
		variant(func(e *Envelope) {
			e.Signatures[0].Extension = &Extension{Kind: CertChainKind, Ext: json.RawMessage(`{"certificates":["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"]}`)}
		}),
	}
	os.WriteFile(SignaturesPath(arch), []byte(good+strings.Join(lines, "\n")+"\n"), 0o600)
	os.WriteFile(arch+".0123456789abcdef.tsr", []byte("junk"), 0o600)
	os.WriteFile(arch+".tsr", nil, 0o600)

	res, err := Check(context.Background(), arch, sum, msum, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 0 || len(res.Warnings) < len(lines)-1 {
		t.Errorf("without a key: %d problems, %d warnings, want none and one a bad line:\n%v", len(res.Problems), len(res.Warnings), res.Warnings)
	}
	res, err = Check(context.Background(), arch, sum, msum, CheckOptions{Keys: []PublicKey{pk}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Signatures[0].Status != StatusVerified {
		t.Errorf("the good line: %+v", res.Signatures[0])
	}
	for _, w := range []string{"line 2", "line 3", "line 4", "line 5", "line 6", "line 7", "line 8", "line 9", "timestamp case.tar.zst.0123456789abcdef.tsr", "timestamp case.tar.zst.tsr"} {
		found := false
		for _, p := range res.Problems {
			found = found || strings.Contains(p.Where, w)
		}
		if !found {
			t.Errorf("no problem names %q:\n%v", w, res.Problems)
		}
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReadEnvelopesBounded: a line over the limit is an error, not a
// read of everything.
func TestReadEnvelopesBounded(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.intoto.jsonl")
	os.WriteFile(p, []byte(strings.Repeat("a", maxEnvelope+10)), 0o600)
	if _, err := ReadEnvelopes(p); err == nil || !strings.Contains(err.Error(), "over") {
		t.Errorf("ReadEnvelopes of an overlong line: %v", err)
	}
	// Many lines, each under the limit, add up to a bound too.
	line := `{"payloadType":"x","payload":"` + strings.Repeat("A", 1<<20) + `","signatures":[{"keyid":"k","sig":"AA=="}]}` + "\n"
	os.WriteFile(p, []byte(strings.Repeat(line, 70)), 0o600)
	if ls, err := ReadEnvelopes(p); err == nil || len(ls) > 64 {
		t.Errorf("ReadEnvelopes of 70 MiB of envelopes: %d lines, %v; want at most 64 MiB read", len(ls), err)
	}
	os.WriteFile(p, []byte(strings.Repeat("{}\n", maxEnvelopes+1)), 0o600)
	if _, err := ReadEnvelopes(p); err == nil {
		t.Errorf("ReadEnvelopes of %d lines: no error", maxEnvelopes+1)
	}
}

// TestLoadKeyRefuses: keys openssl writes that amber does not sign with
// (SEC1 EC, encrypted PKCS#8, RSA) are refused with what to do.
func TestLoadKeyRefuses(t *testing.T) {
	ossl := testenv.Tool(t, "openssl")
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		c := exec.Command(ossl, args...)
		c.Dir = dir
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sec1.key")
	run("genpkey", "-algorithm", "ed25519", "-aes-128-cbc", "-pass", "pass:x", "-out", "enc.key")
	run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", "rsa.key")
	run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", "p384.key")
	for k, want := range map[string]string{"sec1.key": "PKCS#8", "enc.key": "encrypted", "rsa.key": "Ed25519 or ECDSA P-256", "p384.key": "Ed25519 or ECDSA P-256"} {
		if _, err := LoadKey(filepath.Join(dir, k), ""); !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadKey(%s): %v, want ErrKey saying %q", k, err, want)
		}
	}
}

// TestCheckOtherArchive: a signature that holds, over a statement about
// another file or another manifest, fails with a key; without one it is
// a warning.
func TestCheckOtherArchive(t *testing.T) {
	arch, sum, msum, _, pk := signed(t)
	other := hashing.Sum([]byte("other"))
	for name, c := range map[string]struct {
		sum, msum hashing.Digest
		want      string
	}{
		"file":     {other, msum, "it signs a file of sha256 " + sum.Hex()},
		"manifest": {sum, other, "manifest sha256 is " + msum.Hex()},
	} {
		res, err := Check(context.Background(), arch, c.sum, c.msum, CheckOptions{Keys: []PublicKey{pk}})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Problems) == 0 || !strings.Contains(res.Problems[0].Detail, c.want) || res.Signatures[0].Status != StatusFailed {
			t.Errorf("another %s: %+v, want a failure saying %q", name, res.Problems, c.want)
		}
		res, _ = Check(context.Background(), arch, c.sum, c.msum, CheckOptions{})
		if len(res.Problems) != 0 || len(res.Warnings) == 0 || !strings.Contains(res.Warnings[0].Detail, c.want) {
			t.Errorf("another %s, no key: problems %v, warnings %v", name, res.Problems, res.Warnings)
		}
	}
	if res, _ := Check(context.Background(), arch, sum, msum, CheckOptions{Keys: []PublicKey{pk}}); len(res.Problems) != 0 {
		t.Errorf("the archive signed: %v", res.Problems)
	}
}

// TestCheckFIFO: a FIFO in place of the signature sidecar or of a token
// is a finding, not a verify that waits forever for a writer.
func TestCheckFIFO(t *testing.T) {
	arch, sum, msum, k, pk := signed(t)
	os.Remove(SignaturesPath(arch))
	for _, p := range []string{SignaturesPath(arch), TimestampPath(arch, k.ID)} {
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan *Result, 1)
	go func() {
		res, _ := Check(context.Background(), arch, sum, msum, CheckOptions{Keys: []PublicKey{pk}})
		done <- res
	}()
	select {
	case res := <-done:
		if len(res.Problems) < 2 || !strings.Contains(res.Problems[0].Detail, "not a regular file") {
			t.Errorf("FIFOs: %v", res.Problems)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Check blocked on a FIFO")
	}
}
