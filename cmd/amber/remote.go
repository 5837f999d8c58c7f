package main

// Evidence read straight from a registry (docker://REF): the flags every
// command that opens an archive takes, and the one place such a
// reference is opened.

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/snapshot/registry"
)

// remoteFlags are the registry flags of the commands that read archives.
type remoteFlags struct {
	insecure bool
	cache    string
	cacheMax string
}

// minCacheMax is the smallest --cache-max: a few frames (1 MiB each at
// most) and the archive's tail must fit at once.
const minCacheMax = 4 << 20

// addRemoteFlags gives a command that opens archives --insecure and
// --cache, for an ARCHIVE given as docker://HOST/REPO:TAG.
func (e *env) addRemoteFlags(c *cobra.Command) {
	c.Flags().BoolVar(&e.remote.insecure, "insecure", false, "for a docker:// archive: allow plain HTTP and an unverified certificate (loopback and labs)")
	c.Flags().StringVar(&e.remote.cache, "cache", "", "for a docker:// archive: keep fetched bytes in this directory (default $XDG_CACHE_HOME/amber or ~/.cache/amber; at most --cache-max, the least recently used go first)")
	c.Flags().StringVar(&e.remote.cacheMax, "cache-max", "", "for a docker:// archive: the most the cache keeps, in bytes or with K, M, G, T (powers of 1024; at least 4M; default 1G)")
}

// parseSize reads a size: bytes, or a number with K, M, G or T (and an
// optional "iB" or "B"), powers of 1024.
func parseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSpace(s), "B"), "i")
	mult := int64(1)
	if t != "" {
		if i := strings.IndexByte("KMGT", t[len(t)-1]); i >= 0 {
			mult = 1 << (10 * (i + 1))
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is not a size (like 512M, 4G or a number of bytes)", s)
	}
	return n * mult, nil
}

// openBlob resolves ref (docker://...) to its archive blob, read lazily.
func (e *env) openBlob(ref string) (*registry.Blob, error) {
	copts := registry.CacheOptions{Dir: e.remote.cache}
	if e.remote.cacheMax != "" {
		n, err := parseSize(e.remote.cacheMax)
		if err != nil {
			return nil, usageError{fmt.Errorf("--cache-max: %w", err)}
		}
		if n < minCacheMax {
			return nil, usageError{fmt.Errorf("--cache-max %s: at least %d MiB (a few frames and the archive's tail)", e.remote.cacheMax, minCacheMax>>20)}
		}
		copts.MaxBytes = n
	}
	b, err := registry.OpenEvidence(e.ctx, ref, registryOptions(e.remote.insecure), copts)
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
