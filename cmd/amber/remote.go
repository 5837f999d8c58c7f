package main

// Evidence read straight from a registry (docker://REF): the flags every
// command that opens an archive takes, and the one place such a
// reference is opened.

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/snapshot/registry"
)

// remoteFlags are the registry flags of the commands that read archives.
type remoteFlags struct {
	insecure bool
	cache    string
}

// addRemoteFlags gives a command that opens archives --insecure and
// --cache, for an ARCHIVE given as docker://HOST/REPO:TAG.
func (e *env) addRemoteFlags(c *cobra.Command) {
	c.Flags().BoolVar(&e.remote.insecure, "insecure", false, "for a docker:// archive: allow plain HTTP and an unverified certificate (loopback and labs)")
	c.Flags().StringVar(&e.remote.cache, "cache", "", "for a docker:// archive: keep fetched bytes in this directory (default $XDG_CACHE_HOME/amber or ~/.cache/amber; at most 1 GiB, the least recently used go first)")
}

// openBlob resolves ref (docker://...) to its archive blob, read lazily.
func (e *env) openBlob(ref string) (*registry.Blob, error) {
	b, err := registry.OpenEvidence(e.ctx, ref, registry.Options{Insecure: e.remote.insecure, UserAgent: "amber/" + version},
		registry.CacheOptions{Dir: e.remote.cache})
	if err != nil {
		if errors.Is(err, registry.ErrRef) {
			return nil, usageError{err}
		}
		return nil, err
	}
	b.Warn = func(s string) { fmt.Fprintf(e.stderr, "amber: %s\n", escapeName(s)) }
	return b, nil
}

// openRemote opens the evidence at ref (docker://...) lazily: only the
// frames read are fetched, each checked as a local archive's are.
func (e *env) openRemote(ref string) (*archive.Archive, *registry.Blob, error) {
	b, err := e.openBlob(ref)
	if err != nil {
		return nil, nil, err
	}
	a, err := archive.OpenReaderAt(b, b.Size, ref)
	if err != nil {
		b.Close()
		return nil, nil, fmt.Errorf("%s (blob %s): %w", ref, b.Digest, err)
	}
	return a, b, nil
}

// openArchive opens an amber archive: a file, or docker://REF lazily.
func (e *env) openArchive(p string) (*archive.Archive, error) {
	if registry.IsRef(p) {
		a, _, err := e.openRemote(p)
		return a, err
	}
	return archive.Open(p)
}

// openForVerify opens the archive at path, or over blob when it is read
// from a registry (the blob stays open: verify reads it next).
func (e *env) openForVerify(path string, blob *registry.Blob) (*archive.Archive, error) {
	if blob == nil {
		return archive.Open(path)
	}
	return archive.OpenReaderAt(struct{ io.ReaderAt }{blob}, blob.Size, path)
}

// remoteStat is what verify --json says of a registry read.
type remoteStat struct {
	Ref            string `json:"ref"`
	BlobDigest     string `json:"blob_digest"`
	ManifestDigest string `json:"manifest_digest"`
	CustodyLog     string `json:"custody_log"`
	registry.Stats
}

func newRemoteStat(b *registry.Blob, custody string) *remoteStat {
	return &remoteStat{Ref: b.Name(), BlobDigest: b.Digest.String(), ManifestDigest: b.ManifestDigest.String(), CustodyLog: custody + ".custody.jsonl", Stats: b.Stats()}
}
