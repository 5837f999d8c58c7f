package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// RegistryOptions choose how a test's registry is reached.
type RegistryOptions struct {
	// TLS serves HTTPS with a certificate for 127.0.0.1 made by the test
	// (its CA in CAFile); else plain HTTP.
	TLS bool
	// Auth asks for a user and password (htpasswd, bcrypt).
	Auth bool
}

// Registry is a registry of the test's own: Debian's docker-registry
// (distribution 2.8) on loopback, its storage under a temporary directory,
// stopped at the end of the test. The system's registry configuration is
// never used.
type Registry struct {
	// Host is host:port, as a reference names it.
	Host string
	// User and Password when Auth; CAFile is the PEM certificate the
	// server presents when TLS (trust it with SSL_CERT_FILE).
	User, Password, CAFile string
	// Dir holds the configuration, the storage (Dir/storage) and the log.
	Dir  string
	opts RegistryOptions
	bin  string
	cmd  *exec.Cmd
}

// StartRegistry starts a registry of the test's own, failing in CI and
// skipping elsewhere when docker-registry is not installed.
func StartRegistry(t testing.TB, opts RegistryOptions) *Registry {
	t.Helper()
	bin := Tool(t, "docker-registry")
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()
	r := &Registry{Host: host, Dir: dir, opts: opts, bin: bin}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "storage"), host)
	if opts.TLS {
		cert, key, err := selfSigned(dir)
		if err != nil {
			t.Fatal(err)
		}
		r.CAFile = cert
		cfg += fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", cert, key)
	}
	if opts.Auth {
		r.User, r.Password = "examiner", "s3cret-evidence"
		htpasswd := Tool(t, "htpasswd")
		out, err := exec.Command(htpasswd, "-Bbn", r.User, r.Password).Output()
		if err != nil {
			t.Fatalf("htpasswd: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "htpasswd"), out, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: amber-test\n    path: %s\n", filepath.Join(dir, "htpasswd"))
	}
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(syscall.SIGKILL) })
	if err := r.start(); err != nil {
		missing(t, "starting docker-registry: %v", err)
	}
	return r
}

// URL is the registry's base URL.
func (r *Registry) URL() string {
	if r.opts.TLS {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// Start starts the registry again after Stop, on the same port and
// storage.
func (r *Registry) Start(t testing.TB) {
	t.Helper()
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
}

func (r *Registry) start() error {
	logf, err := os.OpenFile(filepath.Join(r.Dir, "registry.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	r.cmd = exec.Command(r.bin, "serve", filepath.Join(r.Dir, "config.yml"))
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		return err
	}
	tr := &http.Transport{}
	if r.opts.TLS {
		tr.TLSClientConfig = insecureTLS()
	}
	c := &http.Client{Transport: tr, Timeout: time.Second}
	for start := time.Now(); time.Since(start) < 20*time.Second; time.Sleep(50 * time.Millisecond) {
		resp, err := c.Get(r.URL() + "/v2/")
		if err == nil {
			resp.Body.Close()
			return nil // 200, or 401 with auth: it answers
		}
	}
	log, _ := os.ReadFile(filepath.Join(r.Dir, "registry.log"))
	r.Stop(syscall.SIGKILL)
	return fmt.Errorf("docker-registry did not answer at %s:\n%s", r.URL(), log)
}

// Stop signals the registry and waits for it to exit.
func (r *Registry) Stop(sig syscall.Signal) {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	r.cmd.Process.Signal(sig)
	r.cmd.Wait()
	r.cmd = nil
}

// selfSigned writes a certificate for 127.0.0.1 and localhost, and its
// key, under dir.
func selfSigned(dir string) (cert, key string, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "amber test registry"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return "", "", err
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return "", "", err
	}
	cert, key = filepath.Join(dir, "registry.crt"), filepath.Join(dir, "registry.key")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return "", "", err
	}
	return cert, key, nil
}

// insecureTLS is for the readiness probe only: the server's certificate is
// the test's own, made a moment ago.
func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } // #nosec: loopback readiness probe
