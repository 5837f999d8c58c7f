package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/amber-forensics/amber/internal/testenv"
)

// openssl runs openssl in dir and fails the test on error.
func openssl(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(testenv.Tool(t, "openssl"), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// testKeys makes an Ed25519 and an ECDSA P-256 key with openssl genpkey
// (PKCS#8 PEM) and their public keys: dir/ed.key, ed.pub, p256.key, p256.pub.
func testKeys(t *testing.T, dir string) {
	t.Helper()
	openssl(t, dir, "genpkey", "-algorithm", "ed25519", "-out", "ed.key")
	openssl(t, dir, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "p256.key")
	for _, k := range []string{"ed", "p256"} {
		openssl(t, dir, "pkey", "-in", k+".key", "-pubout", "-out", k+".pub")
	}
}

type envelopeLine struct {
	PayloadType string `json:"payloadType"`
	Payload     string `json:"payload"`
	Signatures  []struct {
		KeyID string `json:"keyid"`
		Sig   string `json:"sig"`
	} `json:"signatures"`
}

func envelopes(t *testing.T, p string) []envelopeLine {
	t.Helper()
	var out []envelopeLine
	for _, l := range readLines(t, p) {
		var e envelopeLine
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out = append(out, e)
	}
	return out
}

// copyCase copies the archive and its sidecars into a new directory.
func copyCase(t *testing.T, arch string) string {
	t.Helper()
	dir := t.TempDir()
	testenv.Shell(t, fmt.Sprintf("cp -p %q* %q", arch, dir))
	return filepath.Join(dir, filepath.Base(arch))
}

// TestSignOpenSSL: an archive signed at capture with an Ed25519 key and
// countersigned with a P-256 key (both made by openssl genpkey) holds two
// envelopes; verify lists them unchecked without a key (exit 0) and checks
// them with both keys. Each signature is then checked without amber:
// the DSSE PAE rebuilt here from the envelope, and openssl pkeyutl
// -rawin (Ed25519) and openssl dgst -sha256 -verify (P-256) over it; the
// statement's subject is sha256sum of the file and each keyid the
// SHA-256 of openssl's DER public key.
func TestSignOpenSSL(t *testing.T) {
	dir := t.TempDir()
	testKeys(t, dir)
	arch := filepath.Join(dir, "case.tar.zst")
	captureWebapp(t, arch, "--case", "2026-041", "--examiner", "J. Doe", "--sign-key", filepath.Join(dir, "ed.key"))
	out := mustAmber(t, "sign", arch, "--key", filepath.Join(dir, "p256.key"))
	if !strings.Contains(out, "line 2") {
		t.Errorf("countersign: %s", out)
	}
	envs := envelopes(t, arch+".intoto.jsonl")
	if len(envs) != 2 {
		t.Fatalf("%d envelopes, want 2 (signed at capture, countersigned)", len(envs))
	}
	if acts := custodyActions(t, arch+".custody.jsonl"); strings.Count(strings.Join(acts, " "), "signed") != 2 {
		t.Errorf("custody actions %v, want two signed events", acts)
	}
	r := amber(t, "verify", "--no-log", arch)
	if r.code != 0 || strings.Count(r.stdout, "NOT CHECKED") != 2 || strings.Count(r.stdout, "(custody log)") != 2 {
		t.Errorf("verify without a key: exit %d, want 0 and two NOT CHECKED, each dated by its signed event\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = amber(t, "verify", "--no-log", "--json", arch, "--key", filepath.Join(dir, "ed.pub"), "--key", filepath.Join(dir, "p256.pub"))
	var js struct {
		Signatures []struct {
			Line     int
			KeyID    string
			Status   string
			Examiner string
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &js); r.code != 0 || err != nil || len(js.Signatures) != 2 ||
		js.Signatures[0].Status != "verified" || js.Signatures[1].Status != "verified" || js.Signatures[0].Examiner != "J. Doe" {
		t.Fatalf("verify --json with both keys: exit %d (%v)\n%s%s", r.code, err, r.stdout, r.stderr)
	}

	sum := strings.Fields(testenv.Run(t, "sha256sum", arch))[0]
	for i, k := range []string{"ed", "p256"} {
		e := envs[i]
		payload, err := base64.StdEncoding.DecodeString(e.Payload)
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Type    string `json:"_type"`
			Subject []struct {
				Name   string
				Digest map[string]string
			}
			PredicateType string
			Predicate     struct {
				Case, Examiner string
				Manifest       struct{ Digest map[string]string }
			}
		}
		if err := json.Unmarshal(payload, &st); err != nil {
			t.Fatal(err)
		}
		if st.Type != "https://in-toto.io/Statement/v1" || len(st.Subject) != 1 || st.Subject[0].Digest["sha256"] != sum ||
			st.Subject[0].Name != "case.tar.zst" || st.PredicateType != "https://amber-forensics.dev/acquisition/v1" ||
			st.Predicate.Case != "2026-041" || st.Predicate.Examiner != "J. Doe" || len(st.Predicate.Manifest.Digest["sha256"]) != 64 {
			t.Errorf("line %d: statement %s", i+1, payload)
		}
		der := testenv.Shell(t, fmt.Sprintf("openssl pkey -pubin -in %q -outform DER | sha256sum", filepath.Join(dir, k+".pub")))
		if id := strings.Fields(der)[0]; e.Signatures[0].KeyID != id {
			t.Errorf("line %d: keyid %s, openssl's DER public key hashes to %s", i+1, e.Signatures[0].KeyID, id)
		}
		// PAE = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
		pae := fmt.Sprintf("DSSEv1 %d %s %d %s", len(e.PayloadType), e.PayloadType, len(payload), payload)
		sig, err := base64.StdEncoding.DecodeString(e.Signatures[0].Sig)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "pae.bin"), []byte(pae), 0o600)
		os.WriteFile(filepath.Join(dir, "sig.bin"), sig, 0o600)
		var v string
		if k == "ed" {
			v = openssl(t, dir, "pkeyutl", "-verify", "-pubin", "-inkey", "ed.pub", "-rawin", "-in", "pae.bin", "-sigfile", "sig.bin")
		} else {
			v = openssl(t, dir, "dgst", "-sha256", "-verify", "p256.pub", "-signature", "sig.bin", "pae.bin")
		}
		if !strings.Contains(v, "Verified") {
			t.Errorf("line %d: openssl: %s", i+1, v)
		}
		// And openssl refuses the PAE of another payload.
		os.WriteFile(filepath.Join(dir, "pae.bin"), []byte(strings.Replace(pae, "J. Doe", "J. Dough", 1)), 0o600)
		var c *exec.Cmd
		if k == "ed" {
			c = exec.Command("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "ed.pub", "-rawin", "-in", "pae.bin", "-sigfile", "sig.bin")
		} else {
			c = exec.Command("openssl", "dgst", "-sha256", "-verify", "p256.pub", "-signature", "sig.bin", "pae.bin")
		}
		c.Dir = dir
		if out, err := c.CombinedOutput(); err == nil {
			t.Errorf("line %d: openssl accepts an altered PAE: %s", i+1, out)
		}
	}
	// A key signs once.
	if r := amber(t, "sign", arch, "--key", filepath.Join(dir, "ed.key")); r.code != exitExists {
		t.Errorf("signing twice with one key: exit %d, want %d\n%s", r.code, exitExists, r.stderr)
	}
}

// TestSignTampered: verify --key fails (exit 3, naming what) when a byte
// of the archive, of an envelope's signature or of its statement is
// changed, with a key that did not sign, and with no signature at all;
// without --key the same archive with altered signatures exits 0.
func TestSignTampered(t *testing.T) {
	dir := t.TempDir()
	testKeys(t, dir)
	openssl(t, dir, "genpkey", "-algorithm", "ed25519", "-out", "other.key")
	arch := filepath.Join(dir, "case.tar.zst")
	captureWebapp(t, arch, "--examiner", "J. Doe", "--sign-key", filepath.Join(dir, "ed.key"))
	pub := filepath.Join(dir, "ed.pub")
	mustAmber(t, "verify", "--no-log", arch, "--key", pub)

	editEnvelope := func(a string, f func(e map[string]any)) {
		t.Helper()
		var e map[string]any
		if err := json.Unmarshal([]byte(readLines(t, a+".intoto.jsonl")[0]), &e); err != nil {
			t.Fatal(err)
		}
		f(e)
		b, _ := json.Marshal(e)
		os.WriteFile(a+".intoto.jsonl", append(b, '\n'), 0o600)
	}
	flip := func(s string, i int) string {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		b[i] ^= 1
		return base64.StdEncoding.EncodeToString(b)
	}
	for _, c := range []struct {
		name, want string
		edit       func(a string)
		key        string
	}{
		{"archive byte", "it signs a file of sha256", func(a string) {
			f, _ := os.OpenFile(a, os.O_RDWR, 0)
			b := make([]byte, 1)
			f.ReadAt(b, 100)
			b[0] ^= 1
			f.WriteAt(b, 100)
			f.Close()
		}, pub},
		{"signature byte", "line 1", func(a string) {
			editEnvelope(a, func(e map[string]any) {
				s := e["signatures"].([]any)[0].(map[string]any)
				s["sig"] = flip(s["sig"].(string), 10)
			})
		}, pub},
		{"statement byte", "line 1", func(a string) {
			editEnvelope(a, func(e map[string]any) {
				p, _ := base64.StdEncoding.DecodeString(e["payload"].(string))
				e["payload"] = base64.StdEncoding.EncodeToString([]byte(strings.Replace(string(p), "J. Doe", "J. Dough", 1)))
			})
		}, pub},
		{"payload base64 byte", "line 1", func(a string) {
			editEnvelope(a, func(e map[string]any) { e["payload"] = flip(e["payload"].(string), 40) })
		}, pub},
		{"wrong key", "no signature by the key", func(string) {}, filepath.Join(dir, "other.key")},
		{"no signature", "not signed", func(a string) { os.Remove(a + ".intoto.jsonl") }, pub},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := copyCase(t, arch)
			c.edit(a)
			r := amber(t, "verify", "--no-log", a, "--key", c.key)
			if r.code != exitTampered || !strings.Contains(r.stdout, "FAIL ") || !strings.Contains(r.stdout, c.want) {
				t.Errorf("verify --key: exit %d, want %d with a FAIL line naming %q\n%s%s", r.code, exitTampered, c.want, r.stdout, r.stderr)
			}
			if c.name != "archive byte" {
				if r := amber(t, "verify", "--no-log", a); r.code != 0 {
					t.Errorf("verify without --key: exit %d, want 0 (signatures listed, not checked)\n%s%s", r.code, r.stdout, r.stderr)
				}
			}
		})
	}
}

// testCA makes a CA (dir/NAME-ca.crt, .key) with openssl req, and a
// certificate for the key dir/KEY.key issued by it with ext (an openssl
// extensions line) as dir/KEY.crt.
func testCA(t *testing.T, dir, name string) {
	t.Helper()
	openssl(t, dir, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", name+"-ca.key", "-out", name+"-ca.crt",
		"-subj", "/CN=amber test "+name+" CA", "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
}

func testCert(t *testing.T, dir, ca, key, subject, ext string) {
	t.Helper()
	os.WriteFile(filepath.Join(dir, key+".ext"), []byte(ext+"\n"), 0o600)
	openssl(t, dir, "req", "-new", "-key", key+".key", "-subj", subject, "-out", key+".csr")
	openssl(t, dir, "x509", "-req", "-in", key+".csr", "-CA", ca+"-ca.crt", "-CAkey", ca+"-ca.key", "-CAcreateserial", "-days", "2",
		"-extfile", key+".ext", "-out", key+".crt")
}

// TestSignCertChain: a signature made with --cert carries the examiner's
// certificate (made with openssl req/x509 under a test CA); verify lists
// its subject, --ca of that CA verifies it, --ca of another CA fails
// (exit 3); a certificate for another key is refused at signing (exit 2).
func TestSignCertChain(t *testing.T) {
	dir := t.TempDir()
	testKeys(t, dir)
	testCA(t, dir, "examiners")
	testCA(t, dir, "other")
	testCert(t, dir, "examiners", "ed", "/CN=J. Doe/O=Lab", "keyUsage=critical,digitalSignature")
	arch := filepath.Join(dir, "case.tar.zst")
	captureWebapp(t, arch)
	if r := amber(t, "sign", arch, "--key", filepath.Join(dir, "p256.key"), "--cert", filepath.Join(dir, "ed.crt")); r.code != exitUsage {
		t.Errorf("sign with a certificate of another key: exit %d, want %d\n%s", r.code, exitUsage, r.stderr)
	}
	testenv.Shell(t, fmt.Sprintf("cd %q && cat ed.crt examiners-ca.crt > chain.pem", dir))
	var signed struct {
		KeyID string `json:"keyid"`
		Line  int    `json:"line"`
		File  string `json:"signatures_file"`
	}
	out := mustAmber(t, "sign", "--json", arch, "--key", filepath.Join(dir, "ed.key"), "--cert", filepath.Join(dir, "chain.pem"))
	if err := json.Unmarshal([]byte(out), &signed); err != nil || signed.Line != 1 || signed.File != arch+".intoto.jsonl" || len(signed.KeyID) != 64 {
		t.Errorf("sign --json: %s (%v)", out, err)
	}
	if r := amber(t, "sign", "docker://127.0.0.1:1/x/y:z", "--key", filepath.Join(dir, "ed.key")); r.code != exitUsage {
		t.Errorf("sign of a registry reference: exit %d, want %d", r.code, exitUsage)
	}
	r := amber(t, "verify", "--no-log", arch)
	if r.code != 0 || !strings.Contains(r.stdout, `certificate "CN=J. Doe,O=Lab"`) {
		t.Errorf("verify lists no certificate subject: exit %d\n%s", r.code, r.stdout)
	}
	r = amber(t, "verify", "--no-log", arch, "--ca", filepath.Join(dir, "examiners-ca.crt"))
	if r.code != 0 || !strings.Contains(r.stdout, "verified with certificate chain to") {
		t.Errorf("verify --ca of the examiners' CA: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// A key and a root for the same signature: both checked.
	r = amber(t, "verify", "--no-log", arch, "--key", filepath.Join(dir, "ed.pub"), "--ca", filepath.Join(dir, "examiners-ca.crt"))
	if r.code != 0 || !strings.Contains(r.stdout, "ed.pub and certificate chain to") {
		t.Errorf("verify --key --ca of one signer: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = amber(t, "verify", "--no-log", arch, "--key", filepath.Join(dir, "ed.pub"), "--ca", filepath.Join(dir, "other-ca.crt"))
	if r.code != exitTampered {
		t.Errorf("verify --key --ca of another CA: exit %d, want %d\n%s", r.code, exitTampered, r.stdout)
	}
	r = amber(t, "verify", "--no-log", arch, "--ca", filepath.Join(dir, "other-ca.crt"))
	if r.code != exitTampered || !strings.Contains(r.stdout, "does not chain to") {
		t.Errorf("verify --ca of another CA: exit %d, want %d\n%s%s", r.code, exitTampered, r.stdout, r.stderr)
	}
}

// testTSA runs an RFC 3161 time-stamping authority on loopback: an HTTP
// handler that writes each request to a file and answers with what
// openssl ts -reply makes of it, signed by a TSA certificate (critical
// extendedKeyUsage timeStamping) of a test CA. It returns the URL and
// the directory holding tsa-ca.crt and tsa.crt.
func testTSA(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	testCA(t, dir, "tsa")
	openssl(t, dir, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "tsa.key")
	testCert(t, dir, "tsa", "tsa", "/CN=amber test TSA", "extendedKeyUsage=critical,timeStamping\nkeyUsage=critical,digitalSignature")
	cnf := `[ tsa ]
default_tsa = tsa_config1
[ tsa_config1 ]
serial = ` + filepath.Join(dir, "tsaserial") + `
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_alg = sha256
`
	os.WriteFile(filepath.Join(dir, "tsa.cnf"), []byte(cnf), 0o600)
	os.WriteFile(filepath.Join(dir, "tsaserial"), []byte("01\n"), 0o600)
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		q := filepath.Join(dir, fmt.Sprintf("req%d.tsq", i))
		rep := filepath.Join(dir, fmt.Sprintf("reply%d.tsr", i))
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		os.WriteFile(q, b, 0o600)
		cmd := exec.Command("openssl", "ts", "-reply", "-queryfile", q, "-inkey", "tsa.key", "-signer", "tsa.crt", "-config", "tsa.cnf", "-out", rep)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			http.Error(w, fmt.Sprintf("%v: %s", err, out), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/timestamp-reply")
		w.Write(must(os.ReadFile(rep)))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/tsr", dir
}

// TestTimestamp: capture --sign-key --tsa stores a token over the new
// signature as NAME.<keyid16>.tsr, sign --tsa without a key one over the
// archive as NAME.tsr, each a timestamped custody event; verify --key
// --tsa-ca accepts both and shows their times; openssl ts -verify accepts
// both (over the signature bytes, over the archive file); the two swapped
// are tokens over other digests, and verify rejects them (exit 3).
func TestTimestamp(t *testing.T) {
	testenv.Tool(t, "openssl")
	url, tsaDir := testTSA(t)
	dir := t.TempDir()
	testKeys(t, dir)
	arch := filepath.Join(dir, "case.tar.zst")
	captureWebapp(t, arch, "--sign-key", filepath.Join(dir, "ed.key"), "--tsa", url)
	keyid := envelopes(t, arch+".intoto.jsonl")[0].Signatures[0].KeyID
	sigTSR := arch + "." + keyid[:16] + ".tsr"
	if _, err := os.Stat(sigTSR); err != nil {
		t.Fatalf("no token over the signature: %v", err)
	}
	r := amber(t, "sign", arch, "--tsa", url)
	if r.code != 0 {
		t.Fatalf("sign --tsa: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if acts := strings.Join(custodyActions(t, arch+".custody.jsonl"), " "); strings.Count(acts, "timestamped") != 2 || !strings.Contains(acts, "signed timestamped") {
		t.Errorf("custody actions %s, want signed, timestamped, timestamped", acts)
	}
	tsaCA := filepath.Join(tsaDir, "tsa-ca.crt")
	pub := filepath.Join(dir, "ed.pub")
	r = amber(t, "verify", "--no-log", arch, "--key", pub, "--tsa-ca", tsaCA)
	if r.code != 0 || strings.Count(r.stdout, "verified: the TSA's chain leads to --tsa-ca") != 2 || !strings.Contains(r.stdout, `by "CN=amber test TSA"`) {
		t.Fatalf("verify --tsa-ca: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The TSA's chain checked against a CA that did not issue it fails.
	testCA(t, dir, "other")
	if r := amber(t, "verify", "--no-log", arch, "--tsa-ca", filepath.Join(dir, "other-ca.crt")); r.code != exitTampered {
		t.Errorf("verify --tsa-ca of another CA: exit %d, want %d\n%s", r.code, exitTampered, r.stdout)
	}

	// openssl ts -verify, over the signature's bytes and over the file.
	sig, _ := base64.StdEncoding.DecodeString(envelopes(t, arch+".intoto.jsonl")[0].Signatures[0].Sig)
	os.WriteFile(filepath.Join(dir, "sig.bin"), sig, 0o600)
	tsaCrt := filepath.Join(tsaDir, "tsa.crt")
	for _, c := range [][2]string{{filepath.Join(dir, "sig.bin"), sigTSR}, {arch, arch + ".tsr"}} {
		out := openssl(t, dir, "ts", "-verify", "-data", c[0], "-in", c[1], "-CAfile", tsaCA, "-untrusted", tsaCrt)
		if !strings.Contains(out, "Verification: OK") {
			t.Errorf("openssl ts -verify -data %s -in %s: %s", c[0], c[1], out)
		}
	}
	sum := strings.Fields(testenv.Run(t, "sha256sum", arch))[0]
	if out := openssl(t, dir, "ts", "-verify", "-digest", sum, "-in", arch+".tsr", "-CAfile", tsaCA, "-untrusted", tsaCrt); !strings.Contains(out, "Verification: OK") {
		t.Errorf("openssl ts -verify -digest: %s", out)
	}
	if out := openssl(t, dir, "ts", "-reply", "-in", arch+".tsr", "-text"); !strings.Contains(out, "Time stamp: ") || !strings.Contains(out, "Hash Algorithm: sha256") {
		t.Errorf("openssl ts -reply -text shows no time or imprint:\n%s", out)
	}
	js := amber(t, "verify", "--no-log", "--json", arch, "--tsa-ca", tsaCA)
	var v struct {
		Timestamps []struct{ File, Status, Time string }
	}
	if err := json.Unmarshal([]byte(js.stdout), &v); err != nil || len(v.Timestamps) != 2 || v.Timestamps[0].Time == "" {
		t.Errorf("verify --json timestamps: %v\n%s", err, js.stdout)
	}

	// Swapped: each token is now over another message than its name says.
	a := copyCase(t, arch)
	sigTSR2 := a + "." + keyid[:16] + ".tsr"
	testenv.Shell(t, fmt.Sprintf("mv %q %q.x && mv %q %q && mv %q.x %q", sigTSR2, sigTSR2, a+".tsr", sigTSR2, sigTSR2, a+".tsr"))
	r = amber(t, "verify", "--no-log", a, "--key", pub, "--tsa-ca", tsaCA)
	if r.code != exitTampered || strings.Count(r.stdout, "the token is over another message") < 2 {
		t.Errorf("verify of swapped tokens: exit %d, want %d and both named\n%s%s", r.code, exitTampered, r.stdout, r.stderr)
	}
}

// TestSignedToRegistry: a capture straight into a registry with
// --sign-key and --tsa is signed and timestamped before its manifest is
// pushed: the tag carries NAME.intoto.jsonl and NAME.<keyid16>.tsr as
// titled layers, amber pull restores them beside the pulled archive
// (renamed with it), and the pulled copy verifies with the key and the
// TSA's root. A local archive signed and timestamped later is pushed and
// pulled with its signature and tokens byte for byte.
func TestSignedToRegistry(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	renv := regEnv(t, reg, reg.Password)
	url, tsaDir := testTSA(t)
	tsaCA := filepath.Join(tsaDir, "tsa-ca.crt")
	dir := t.TempDir()
	testKeys(t, dir)
	src := filepath.Join("..", "..", "testdata", "images", "webapp-docker-save.tar")
	ref := "docker://" + reg.Host + "/case/e1:web"
	r := amberIn(t, renv, "capture", "image", src, "-o", ref, "--sign-key", filepath.Join(dir, "ed.key"), "--tsa", url)
	if r.code != 0 {
		t.Fatalf("capture -o %s --sign-key --tsa: exit %d\n%s%s", ref, r.code, r.stdout, r.stderr)
	}
	code, raw := curlReg(t, reg, "/v2/case/e1/manifests/web")
	var m ociManifest
	if err := json.Unmarshal(raw, &m); code != "200" || err != nil {
		t.Fatalf("manifest: %s %v %s", code, err, raw)
	}
	types := map[string]string{}
	for _, l := range m.Layers {
		types[l.Annotations["org.opencontainers.image.title"]] = l.MediaType
	}
	name := ArtifactFileName("case/e1", "web")
	if types[name+".intoto.jsonl"] != "application/vnd.amber.intoto.v1+jsonl" {
		t.Errorf("the tag's layers %v: no %s.intoto.jsonl", types, name)
	}
	pulled := filepath.Join(t.TempDir(), "e1.tar.zst")
	mustAmberEnv(t, renv, "pull", ref, "-o", pulled)
	keyid := envelopes(t, pulled+".intoto.jsonl")[0].Signatures[0].KeyID
	if types[name+"."+keyid[:16]+".tsr"] != "application/timestamp-reply" {
		t.Errorf("the tag's layers %v: no token over the signature", types)
	}
	if acts := strings.Join(custodyActions(t, pulled+".custody.jsonl"), " "); !strings.Contains(acts, "sealed signed timestamped pushed") {
		t.Errorf("pulled custody log: %s; want signed and timestamped before pushed", acts)
	}
	r = amber(t, "verify", "--no-log", pulled, "--key", filepath.Join(dir, "ed.pub"), "--tsa-ca", tsaCA)
	if r.code != 0 || !strings.Contains(r.stdout, "verified with") || !strings.Contains(r.stdout, "verified: the TSA's chain") || !strings.Contains(r.stdout, "renamed") {
		t.Errorf("verify of the pulled copy: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	arch := filepath.Join(dir, "case.tar.zst")
	captureWebapp(t, arch)
	mustAmber(t, "sign", arch, "--key", filepath.Join(dir, "p256.key"), "--tsa", url)
	mustAmber(t, "sign", arch, "--tsa", url)
	dest := "docker://" + reg.Host + "/case/e2:later"
	mustAmberEnv(t, renv, "push", arch, dest)
	back := filepath.Join(t.TempDir(), "case.tar.zst")
	mustAmberEnv(t, renv, "pull", dest, "-o", back)
	keyid = envelopes(t, arch+".intoto.jsonl")[0].Signatures[0].KeyID
	for _, s := range []string{".intoto.jsonl", "." + keyid[:16] + ".tsr", ".tsr"} {
		testenv.Run(t, "cmp", arch+s, back+s)
	}
	mustAmber(t, "verify", "--no-log", back, "--key", filepath.Join(dir, "p256.pub"), "--tsa-ca", tsaCA)
}

// TestKeygen: amber keygen writes a PKCS#8 key (0600) openssl reads as
// ED25519 or EC P-256, its public key beside it, and prints the keyid
// that openssl's DER public key hashes to; it overwrites nothing.
func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ typ, openssl string }{{"ed25519", "ED25519"}, {"p256", "prime256v1"}} {
		key := filepath.Join(dir, c.typ+".key")
		out := mustAmber(t, "keygen", "-o", key, "--type", c.typ)
		st, err := os.Stat(key)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v; want 0600", key, err, st.Mode())
		}
		if txt := openssl(t, dir, "pkey", "-in", key, "-text", "-noout"); !strings.Contains(txt, c.openssl) {
			t.Errorf("openssl pkey -text of %s: %s", key, txt)
		}
		if b := readLines(t, key)[0]; b != "-----BEGIN PRIVATE KEY-----" {
			t.Errorf("%s starts %q, want PKCS#8", key, b)
		}
		pub := filepath.Join(dir, c.typ+".pub")
		id := strings.Fields(testenv.Shell(t, fmt.Sprintf("openssl pkey -pubin -in %q -outform DER | sha256sum", pub)))[0]
		if !strings.Contains(out, "keyid "+id) {
			t.Errorf("keygen printed %q; openssl's DER public key hashes to %s", out, id)
		}
		if r := amber(t, "keygen", "-o", key, "--type", c.typ); r.code != exitExists {
			t.Errorf("keygen over an existing key: exit %d, want %d", r.code, exitExists)
		}
	}
}
