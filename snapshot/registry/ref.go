package registry

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Prefix is the transport prefix of a registry reference, as skopeo
// writes it.
const Prefix = "docker://"

// ErrRef reports a reference amber will not send to a registry.
var ErrRef = errors.New("registry reference")

// IsRef says whether s names something in a registry (docker://...).
func IsRef(s string) bool { return strings.HasPrefix(s, Prefix) }

// Options say how a registry is reached.
type Options struct {
	// Insecure allows plain HTTP and a certificate that is not verified
	// (loopback and labs).
	Insecure bool
	// Keychain finds credentials (nil: the Docker config and its
	// credential helpers, authn.DefaultKeychain).
	Keychain authn.Keychain
	// Transport, when set, carries every request (tests count them).
	Transport http.RoundTripper
	// UserAgent names amber to the registry.
	UserAgent string
	// Timeout bounds the wait for a registry (DefaultTimeout when 0): for
	// an answer's headers, and for each MinRate bytes a second of its
	// body, so that a server that stops or trickles fails, naming itself.
	Timeout time.Duration
}

// ParseRef parses docker://HOST[:PORT]/REPO[:TAG|@DIGEST]. The registry
// host must be given: "alpine" or "library/alpine" alone is refused, as
// is any reference without the prefix.
func ParseRef(s string, opts Options) (name.Reference, error) {
	rest, ok := strings.CutPrefix(s, Prefix)
	if !ok {
		return nil, fmt.Errorf("%w %q: it must start with %s", ErrRef, s, Prefix)
	}
	host, _, _ := strings.Cut(rest, "/")
	if !strings.ContainsAny(host, ".:") && host != "localhost" || !strings.Contains(rest, "/") {
		return nil, fmt.Errorf("%w %q: name the registry (docker://HOST[:PORT]/REPO:TAG); amber never guesses docker.io", ErrRef, s)
	}
	nopts := []name.Option{name.StrictValidation}
	if opts.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	ref, err := name.ParseReference(rest, nopts...)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrRef, s, err)
	}
	return ref, nil
}

// ParseRepo parses docker://HOST[:PORT]/REPO, a repository with no tag.
func ParseRepo(s string, opts Options) (name.Repository, error) {
	rest, ok := strings.CutPrefix(s, Prefix)
	if !ok {
		return name.Repository{}, fmt.Errorf("%w %q: it must start with %s", ErrRef, s, Prefix)
	}
	host, _, _ := strings.Cut(rest, "/")
	if !strings.ContainsAny(host, ".:") && host != "localhost" || !strings.Contains(rest, "/") {
		return name.Repository{}, fmt.Errorf("%w %q: name the registry (docker://HOST[:PORT]/REPO)", ErrRef, s)
	}
	nopts := []name.Option{name.StrictValidation}
	if opts.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	repo, err := name.NewRepository(rest, nopts...)
	if err != nil {
		return name.Repository{}, fmt.Errorf("%w %q: %v", ErrRef, s, err)
	}
	return repo, nil
}

// Transport is the HTTP transport for a registry: Go's defaults (which
// honour SSL_CERT_FILE and the proxy variables), certificates unverified
// when Insecure, bounded waits for a registry that does not answer or
// stalls in the middle of a body (Timeout).
func (o Options) transport() http.RoundTripper {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if o.Transport != nil {
		return stallGuard{base: o.Transport, timeout: timeout}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = timeout
	if o.Insecure {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for: --insecure
	}
	return stallGuard{base: t, timeout: timeout}
}

// Remote is the go-containerregistry remote options for o.
func (o Options) Remote() []remote.Option {
	kc := o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	ropts := []remote.Option{remote.WithAuthFromKeychain(kc), remote.WithTransport(o.transport())}
	if o.UserAgent != "" {
		ropts = append(ropts, remote.WithUserAgent(o.UserAgent))
	}
	return ropts
}
