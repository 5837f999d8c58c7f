package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/attest"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/registry"
)

// signFlags are what sign and every capture command take to sign and
// timestamp a sealed archive.
type signFlags struct {
	key, cert, tsa string
}

func (f *signFlags) wanted() bool { return f.key != "" || f.tsa != "" }

// load reads the signing key (and chain) before any long work; keyFlag
// and certFlag are the flags' names on this command.
func (f *signFlags) load(keyFlag, certFlag string) (*attest.Key, error) {
	if f.cert != "" && f.key == "" {
		return nil, usageError{fmt.Errorf("--%s needs --%s", certFlag, keyFlag)}
	}
	if f.key == "" {
		return nil, nil
	}
	k, err := attest.LoadKey(f.key, f.cert)
	if errors.Is(err, attest.ErrKey) {
		return nil, usageError{err}
	}
	return k, err
}

// attested is what attestArchive wrote.
type attested struct {
	KeyID      string    `json:"keyid,omitempty"`
	Algorithm  string    `json:"algorithm,omitempty"`
	Line       int       `json:"line,omitempty"`
	Signatures string    `json:"signatures_file,omitempty"`
	Timestamp  string    `json:"timestamp_file,omitempty"`
	Time       time.Time `json:"time,omitzero"`
	TSA        string    `json:"tsa,omitempty"`
	Files      []string  `json:"-"`
}

// attestArchive signs the sealed archive at path (its manifest m, file
// SHA-256 sum, manifest SHA-256 msum; the archive file itself is not
// read, so a capture streamed to a registry is signed from its staging
// directory) with k, and timestamps the new signature (or, with no key,
// the archive's digest) at the TSA tsa; each step is a custody event
// (signed, timestamped).
func (e *env) attestArchive(path string, m *manifest.Manifest, sum, msum hashing.Digest, k *attest.Key, tsa string, perm os.FileMode, say io.Writer) (*attested, error) {
	if perm == 0 {
		perm = 0o600
	}
	out := &attested{}
	rec := manifest.NewRecorder()
	message := sum[:] // the archive's SHA-256 is what is stamped without a signature
	tsPath := attest.TimestampPath(path, "")
	if tsa != "" {
		// Before signing: a token already there would stop the stamp
		// after the signature was appended.
		if k != nil {
			tsPath = attest.TimestampPath(path, k.ID)
		}
		if _, err := os.Lstat(tsPath); err == nil {
			return nil, fmt.Errorf("%w: %s (a timestamp is never overwritten)", attest.ErrExists, tsPath)
		}
	}
	if k != nil {
		payload, err := attest.Statement(attest.Subject{Name: filepath.Base(path), SHA256: sum, ManifestSHA256: msum, Manifest: m})
		if err != nil {
			return nil, err
		}
		env, err := attest.Sign(e.ctx, payload, k)
		if err != nil {
			return nil, err
		}
		sigPath := attest.SignaturesPath(path)
		n, line, err := attest.Append(sigPath, env, perm)
		if err != nil {
			return nil, err
		}
		out.KeyID, out.Algorithm, out.Line, out.Signatures = k.ID, k.Algorithm(), n, sigPath
		out.Files = append(out.Files, sigPath)
		d := map[string]string{"keyid": k.ID, "algorithm": k.Algorithm(), "file": filepath.Base(sigPath), "line": fmt.Sprint(n),
			"envelope_sha256": hashing.Sum(line).Hex(), "sha256": sum.Hex(), "manifest_sha256": msum.Hex(), "tool": "amber " + version}
		if len(k.Certs) > 0 {
			d["certificate"] = k.Certs[0].Subject.String()
		}
		if _, _, err := rec.Record(path, m, "signed", d); err != nil {
			return out, fmt.Errorf("signed (%s line %d), but the custody log does not say so: %w", sigPath, n, err)
		}
		raw, err := env.Signatures[0].RawSig()
		if err != nil {
			return out, err
		}
		s := sha256.Sum256(raw)
		message = s[:]
		fmt.Fprintf(say, "amber: signed %s: %s line %d, key %s (%s)\n", escapeName(filepath.Base(path)), escapeName(sigPath), n, k.ID, k.Algorithm())
	}
	if tsa == "" {
		return out, nil
	}
	client := &http.Client{Timeout: 2 * time.Minute}
	reply, ts, err := attest.Stamp(e.ctx, client, tsa, message)
	if err != nil {
		if k != nil {
			return out, fmt.Errorf("signed, but not timestamped: %w", err)
		}
		return out, err
	}
	if err := attest.WriteNew(tsPath, reply, perm); err != nil {
		return out, err
	}
	out.Timestamp, out.Time, out.TSA = tsPath, ts.Time.UTC(), tsa
	out.Files = append(out.Files, tsPath)
	over := "the archive (sha256 " + sum.Hex() + ")"
	if k != nil {
		over = fmt.Sprintf("the signature of line %d (key %s)", out.Line, k.ID)
	}
	d := map[string]string{"tsa": tsa, "time": ts.Time.UTC().Format(time.RFC3339Nano), "file": filepath.Base(tsPath), "sha256": sum.Hex(),
		"over": over, "imprint_sha256": fmt.Sprintf("%x", message), "tool": "amber " + version}
	if ts.SerialNumber != nil {
		d["serial"] = ts.SerialNumber.String()
	}
	if len(ts.Certificates) > 0 {
		d["tsa_certificate"] = ts.Certificates[0].Subject.String()
	}
	if _, _, err := rec.Record(path, m, "timestamped", d); err != nil {
		return out, fmt.Errorf("timestamped (%s), but the custody log does not say so: %w", tsPath, err)
	}
	fmt.Fprintf(say, "amber: timestamped %s at %s by %s: %s\n", over, ts.Time.UTC().Format(time.RFC3339), escapeName(tsa), escapeName(tsPath))
	return out, nil
}

type signOptions struct {
	signFlags
	json bool
}

func (e *env) newSignCmd() *cobra.Command {
	o := &signOptions{}
	c := &cobra.Command{
		Use:   "sign ARCHIVE --key KEY [--cert CHAIN.pem] [--tsa URL]",
		Short: "Sign a sealed archive (or countersign it), and timestamp it",
		Long: `sign verifies the archive (as amber verify does; one that fails is not
signed), then signs it: a DSSE envelope over an in-toto Statement v1 whose
subject is the archive file (its name and SHA-256) and whose predicate
(` + attest.PredicateType + `) is the acquisition record read from the
archive's manifest: case, exhibit, examiner, notes, tool and version, host,
command line, UTC start and end, sources, each artifact with its Merkle
root, the manifest's SHA-256 and the sealed custody head. The envelope is
appended as one line to ARCHIVE.intoto.jsonl: a second examiner's sign
countersigns, each signature kept; a key signs an archive once.

KEY is a PKCS#8 PEM private key, Ed25519 or ECDSA P-256, as openssl genpkey
or amber keygen writes it. --cert adds its X.509 certificate chain (PEM,
the key's certificate first) to the signature, for verify --ca.

--tsa URL asks an RFC 3161 time-stamping authority for a token over the
new signature (stored as ARCHIVE.<first 16 hex digits of the keyid>.tsr);
without --key, over the archive's SHA-256 (stored as ARCHIVE.tsr).

Each step is a custody event (signed, timestamped) in ARCHIVE.custody.jsonl.
Exit 3: the archive does not verify. Exit 12: this key signed it already,
or the timestamp file exists. Exit 1: the TSA failed (a signature made
before is kept, and said).`,
		Example: `  openssl genpkey -algorithm ed25519 -out examiner.key
  amber sign case.tar.zst --key examiner.key
  amber sign case.tar.zst --key second.key --cert second-chain.pem --tsa http://tsa.example/tsr
  amber sign case.tar.zst --tsa http://tsa.example/tsr      # a timestamp of the archive alone`,
		Args: argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error { return e.runSign(o, args[0]) },
	}
	c.Flags().StringVar(&o.key, "key", "", "PKCS#8 PEM private key (Ed25519 or ECDSA P-256) to sign with")
	c.Flags().StringVar(&o.cert, "cert", "", "the key's X.509 certificate chain (PEM, its certificate first), carried in the signature")
	c.Flags().StringVar(&o.tsa, "tsa", "", "RFC 3161 time-stamping authority URL: timestamp the signature (or, without --key, the archive)")
	c.Flags().BoolVar(&o.json, "json", false, "print the result as JSON")
	return c
}

func (e *env) runSign(o *signOptions, path string) error {
	if registry.IsRef(path) {
		return usageError{fmt.Errorf("sign: %s is in a registry: pull it, sign the file, push it again", path)}
	}
	if !o.wanted() {
		return usageError{errors.New("sign needs --key KEY, --tsa URL, or both")}
	}
	k, err := o.load("key", "cert")
	if err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	r, _, err := e.verification(path, nil, path, hashing.Digest{})
	if err != nil {
		return err
	}
	if !r.OK() {
		for _, p := range r.Problems {
			fmt.Fprintf(e.stdout, "FAIL %s\n", escapeName(p.String()))
		}
		return fmt.Errorf("%w: %s: %d problem(s); a tampered or damaged archive is not signed", errTampered, path, len(r.Problems))
	}
	a, err := archive.Open(path)
	if err != nil {
		return err
	}
	msum := a.Trailer.ManifestSHA256
	a.Close()
	out, err := e.attestArchive(path, r.Manifest, r.SHA256, msum, k, o.tsa, st.Mode().Perm(), io.Discard)
	if err != nil {
		return err
	}
	if o.json {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Archive string `json:"archive"`
			SHA256  string `json:"sha256"`
			*attested
		}{path, r.SHA256.Hex(), out})
	}
	if out.Signatures != "" {
		fmt.Fprintf(e.stdout, "signed %s (sha256 %s): %s line %d, key %s (%s)\n", escapeName(path), r.SHA256.Hex(), escapeName(out.Signatures), out.Line, out.KeyID, out.Algorithm)
	}
	if out.Timestamp != "" {
		fmt.Fprintf(e.stdout, "timestamped %s at %s: %s\n", escapeName(path), out.Time.Format(time.RFC3339), escapeName(out.Timestamp))
	}
	return nil
}

func (e *env) newKeygenCmd() *cobra.Command {
	var out, kind string
	c := &cobra.Command{
		Use:   "keygen -o KEY [--type ed25519|p256]",
		Short: "Make a signing key for amber sign (PKCS#8 PEM) and its public key",
		Long: `keygen writes a new private key to KEY (PKCS#8 PEM, mode 0600, as
openssl genpkey writes it) and its public key (SubjectPublicKeyInfo PEM) to
KEY with .key replaced by .pub (else KEY.pub), and prints the keyid: the hex
SHA-256 of the public key's DER, what signatures name. Nothing is
overwritten (exit 12).`,
		Example: `  amber keygen -o examiner.key                 # examiner.key, examiner.pub
  amber keygen -o examiner-p256.key --type p256`,
		Args: argsRange(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageError{errors.New("keygen needs -o KEY")}
			}
			priv, pub, id, err := attest.GenerateKey(kind)
			if err != nil {
				return usageError{err}
			}
			pubPath := strings.TrimSuffix(out, ".key") + ".pub"
			if _, err := os.Lstat(pubPath); err == nil {
				return fmt.Errorf("%w: %s", attest.ErrExists, pubPath)
			}
			if err := attest.WriteNew(out, priv, 0o600); err != nil {
				return err
			}
			if err := attest.WriteNew(pubPath, pub, 0o644); err != nil {
				os.Remove(out)
				return err
			}
			fmt.Fprintf(e.stdout, "wrote %s (private, 0600) and %s\nkeyid %s\n", escapeName(out), escapeName(pubPath), id)
			return nil
		},
	}
	c.Flags().StringVarP(&out, "output", "o", "", "the private key file to write")
	c.Flags().StringVar(&kind, "type", "ed25519", "ed25519 or p256 (ECDSA P-256)")
	return c
}

// verifyAttestFlags are verify's: what signatures and timestamps are
// checked with.
type verifyAttestFlags struct {
	keys      []string
	ca, tsaCA string
}

// addFlags adds --key, --ca and --tsa-ca (verify, report).
func (f *verifyAttestFlags) addFlags(c *cobra.Command) {
	c.Flags().StringArrayVar(&f.keys, "key", nil, "a public key (PEM; or a certificate, or the private key) that must have signed the archive (repeatable)")
	c.Flags().StringVar(&f.ca, "ca", "", "root certificate(s) (PEM) a signature's certificate chain must lead to")
	c.Flags().StringVar(&f.tsaCA, "tsa-ca", "", "root certificate(s) (PEM) the timestamps' TSA certificate must chain to")
}

func (f verifyAttestFlags) any() bool { return len(f.keys) > 0 || f.ca != "" || f.tsaCA != "" }

func loadPool(flag, path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	certs, err := attest.LoadCerts(path)
	if err != nil {
		if errors.Is(err, attest.ErrKey) {
			return nil, usageError{fmt.Errorf("--%s: %w", flag, err)}
		}
		return nil, err
	}
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p, nil
}

// checkOptions loads verify's keys and roots.
func (f verifyAttestFlags) checkOptions() (attest.CheckOptions, error) {
	var o attest.CheckOptions
	for _, k := range f.keys {
		pk, err := attest.LoadPublicKey(k)
		if errors.Is(err, attest.ErrKey) {
			return o, usageError{fmt.Errorf("--key: %w", err)}
		}
		if err != nil {
			return o, err
		}
		o.Keys = append(o.Keys, pk)
	}
	var err error
	if o.Roots, err = loadPool("ca", f.ca); err != nil {
		return o, err
	}
	o.RootsName = f.ca
	if o.TSARoots, err = loadPool("tsa-ca", f.tsaCA); err != nil {
		return o, err
	}
	return o, nil
}

// checkAttest checks the signatures and timestamps beside the verified
// archive at path, adding what fails to r.
func (e *env) checkAttest(path string, r *archive.Report, o attest.CheckOptions) *attest.Result {
	var msum hashing.Digest
	if a, err := archive.Open(path); err == nil {
		msum = a.Trailer.ManifestSHA256
		a.Close()
	}
	if r.Manifest != nil {
		// Only a chain that holds dates anything; verify reports it.
		if evs, _, err := manifest.ParseCustodyFile(path+".custody.jsonl", r.Manifest.Custody.Head, r.Manifest.Custody.Events); err == nil {
			o.Custody = evs
		}
	}
	res, err := attest.Check(e.ctx, path, r.SHA256, msum, o)
	if err != nil {
		r.Problems = append(r.Problems, manifest.Problem{Where: "signature", Detail: err.Error()})
		return &attest.Result{Signatures: []attest.SigResult{}, Timestamps: []attest.TSResult{}}
	}
	r.Problems = append(r.Problems, res.Problems...)
	r.Warnings = append(r.Warnings, res.Warnings...)
	return res
}

// printAttest prints the signatures and timestamps found.
func printAttest(w io.Writer, res *attest.Result, checking bool) {
	for _, s := range res.Signatures {
		// The keyid is the envelope's, as found: evidence.
		fmt.Fprintf(w, "  signature line %d: key %s", s.Line, escapeName(s.KeyID))
		if s.Algorithm != "" {
			fmt.Fprintf(w, " (%s)", s.Algorithm)
		}
		if s.Signer != "" {
			fmt.Fprintf(w, ", certificate %q", escapeName(s.Signer))
		}
		if s.Examiner != "" {
			fmt.Fprintf(w, ", examiner %q", escapeName(s.Examiner))
		}
		if !s.Signed.IsZero() {
			fmt.Fprintf(w, ", signed %s by %s (custody log)", s.Signed.Format(time.RFC3339), escapeName(s.SignedBy))
		}
		switch s.Status {
		case attest.StatusVerified:
			fmt.Fprintf(w, ": verified with %s\n", escapeName(s.By))
		case attest.StatusFailed:
			fmt.Fprintf(w, ": FAILED: %s\n", escapeName(s.Detail))
		default:
			if checking {
				fmt.Fprintf(w, ": not checked (no --key for it)\n")
			} else {
				fmt.Fprintf(w, ": NOT CHECKED (give --key or --ca to check it)\n")
			}
		}
	}
	for _, t := range res.Timestamps {
		fmt.Fprintf(w, "  timestamp %s", escapeName(t.File))
		if !t.Time.IsZero() {
			fmt.Fprintf(w, ": %s", t.Time.Format(time.RFC3339Nano))
		}
		if t.TSA != "" {
			fmt.Fprintf(w, " by %q", escapeName(t.TSA))
		}
		if t.Over != "" {
			fmt.Fprintf(w, " over %s", t.Over)
		}
		fmt.Fprintf(w, ": %s", t.Status)
		if t.Detail != "" {
			fmt.Fprintf(w, ": %s", escapeName(t.Detail))
		}
		fmt.Fprintln(w)
	}
}

// sigSummary is the custody event's word on the signatures.
func sigSummary(res *attest.Result) string {
	n := map[string]int{}
	for _, s := range res.Signatures {
		n[s.Status]++
	}
	return fmt.Sprintf("%d verified, %d failed, %d not checked", n[attest.StatusVerified], n[attest.StatusFailed], n[attest.StatusNotChecked])
}

// onlyAttest: every problem is one of a signature or timestamp.
func onlyAttest(ps []manifest.Problem) bool {
	for _, p := range ps {
		if !strings.HasPrefix(p.Where, "signature") && !strings.HasPrefix(p.Where, "timestamp") {
			return false
		}
	}
	return len(ps) > 0
}
