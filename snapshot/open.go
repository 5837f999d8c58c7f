package snapshot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/manifest"
)

// OpenAny opens path as an amber archive or, when it is a plain image
// source (a docker-save tarball, an OCI archive or layout), indexes it into
// a temporary archive first (fast zstd level 1; removed by close). plain
// says which: a temporary archive is a view, not evidence, and takes no
// custody events. tool and commandLine are what its manifest records; of
// opts, the Encoder (MaxExpansion defaults to DefaultMaxExpansion).
func OpenAny(ctx context.Context, path string, tool manifest.Tool, commandLine []string, opts Options) (a *archive.Archive, plain bool, close func(), err error) {
	a, err = archive.Open(path)
	if err == nil {
		return a, false, func() { a.Close() }, nil
	}
	if st, serr := os.Stat(path); !errors.Is(err, manifest.ErrNotArchive) && (serr != nil || !st.IsDir()) {
		return nil, false, nil, err
	}
	tmp, err := os.MkdirTemp("", "amber-view-")
	if err != nil {
		return nil, false, nil, err
	}
	out := filepath.Join(tmp, "index.tar.zst")
	_, err = CaptureImageFiles(ctx, Request{Sources: []string{path}, Output: out, Level: 1, CommandLine: commandLine,
		Tool: tool, Options: Options{MaxExpansion: cmp.Or(opts.MaxExpansion, DefaultMaxExpansion), Encoder: opts.Encoder}})
	if err == nil {
		a, err = archive.Open(out)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return nil, false, nil, fmt.Errorf("%s is neither an amber archive nor a readable image source: %w", path, err)
	}
	return a, true, func() { a.Close(); os.RemoveAll(tmp) }, nil
}
