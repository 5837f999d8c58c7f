package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/timeline"
)

func (e *env) newTimelineCmd() *cobra.Command {
	var format string
	var noCustody, asJSON bool
	c := &cobra.Command{
		Use:   "timeline ARCHIVE [--format bodyfile]",
		Short: "Write the file times of every layer, container and volume as a Sleuth Kit body file",
		Long: `timeline writes a The Sleuth Kit body file (for mactime -b) of everything the
archive records a time for: each entry of each image layer
(images/NAME/layers/N/PATH), of each container's changes layer
(containers/NAME/changes/PATH, whiteout markers included: they record
deletions), and of each volume, with its access, modification and change
times; then the custody events (acquisition, pause, seal, later
verifications and mounts) as rows of their own.

Fields: MD5|name|inode|mode|UID|GID|size|atime|mtime|ctime|crtime. MD5 is 0
(amber records SHA-256: amber ls --sha256sum); a symlink's name is
"path -> target"; '|' and '%' in names are escaped as %7C and %25
(mactime shows them as they are), control bytes as \n, \t, \xNN and a
backslash as \\; times are whole seconds, 0 when not recorded. Only the
file indexes are read.`,
		Example: `  amber timeline case.tar.zst > body && mactime -b body -d -z UTC > timeline.csv
  amber timeline case.tar.zst | grep '|containers/' | mactime -b - -z UTC 2026-11-01..2026-11-30`,
		Args: argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "bodyfile" {
				return usageError{fmt.Errorf("--format %q: only bodyfile is known", format)}
			}
			a, done, err := e.openAny(args[0])
			if err != nil {
				return err
			}
			defer done()
			var evs []manifest.Event
			if !noCustody {
				if evs, err = custodyEvents(args[0], a); err != nil {
					return err
				}
			}
			return timeline.Write(e.stdout, a, timeline.Options{Custody: evs, JSON: asJSON})
		},
	}
	c.Flags().StringVar(&format, "format", "bodyfile", "output format: bodyfile (The Sleuth Kit 3.x body file)")
	c.Flags().BoolVar(&noCustody, "no-custody", false, "leave the custody events out")
	c.Flags().BoolVar(&asJSON, "json", false, "one JSON object per row instead: {md5, name, name_base64?, inode, mode, uid, gid, size, atime, mtime, ctime, crtime} (names unescaped)")
	return c
}

// custodyEvents reads the sealed custody log and the sidecar's later
// events, the chain checked.
func custodyEvents(path string, a *archive.Archive) ([]manifest.Event, error) {
	m := a.Manifest
	if m.Custody.Entry == "" {
		return nil, nil
	}
	cb, err := a.ReadEntry(m.Custody.Entry, manifest.MaxCustodySize)
	if err != nil {
		return nil, err
	}
	sealed, head, err := manifest.ParseCustody(bytes.NewReader(cb), hashing.Digest{}, 0)
	if err != nil {
		return nil, err
	}
	if head != m.Custody.Head {
		return nil, fmt.Errorf("%w: sealed log ends at %s, the manifest says %s", manifest.ErrChainBroken, head.Hex(), m.Custody.Head.Hex())
	}
	side, _, err := manifest.ParseCustodyFile(path+".custody.jsonl", m.Custody.Head, m.Custody.Events)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return append(sealed, side...), nil
}
