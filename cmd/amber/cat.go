package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/view"
)

func (e *env) newCatCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cat ARCHIVE VIEWPATH",
		Short: "Print one file of an archive, checked against its SHA-256",
		Long: `cat writes a file's content to standard output. VIEWPATH is a path of the
mount layout (images/NAME/rootfs/etc/passwd, images/NAME/layers/2/...).
Only the frames holding the file are decompressed. The content is checked
against the SHA-256 in the layer's index: files up to 64 MiB are checked
before anything is written; larger ones are streamed and a mismatch is
reported at the end (exit 3). Symlinks are shown, never followed.`,
		Example: `  amber cat case.tar.zst images/app_v1/rootfs/etc/passwd
  amber cat case.tar.zst images/app_v1/config.json | jq .config.Env`,
		Args: argsRange(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error { return e.runCat(args[0], args[1]) },
	}
}

const catBuffer = 64 << 20

func (e *env) runCat(archivePath, p string) error {
	a, err := e.openArchive(archivePath)
	if err != nil {
		return err
	}
	defer a.Close()
	v := &view.View{A: a}
	en, err := v.Stat(p)
	if err != nil {
		return err
	}
	switch en.Type {
	case fileindex.TypeReg:
	case fileindex.TypeSymlink:
		return fmt.Errorf("%s is a symlink to %q; amber never follows links (cat the target's view path)", en.Path, en.Node.Rec.Linkname)
	case fileindex.TypeDir:
		return fmt.Errorf("%s is a directory (use amber ls)", en.Path)
	default:
		return fmt.Errorf("%s is a %s, it has no content", en.Path, view.TypeName(en.Type))
	}
	r, err := v.Open(en)
	if err != nil {
		return err
	}
	want := en.SHA256()
	h := sha256.New()
	if en.Size <= catBuffer {
		var buf bytes.Buffer
		if _, err := io.Copy(io.MultiWriter(&buf, h), r); err != nil {
			return fmt.Errorf("reading %s: %w", en.Path, err)
		}
		if got := hashing.FromHash(h); got != want {
			return fmt.Errorf("%w: %s has SHA-256 %s, its index says %s; nothing was written", manifest.ErrCorrupt, en.Path, got.Hex(), want.Hex())
		}
		_, err = e.stdout.Write(buf.Bytes())
		return err
	}
	if _, err := io.Copy(io.MultiWriter(e.stdout, h), r); err != nil {
		return fmt.Errorf("reading %s: %w", en.Path, err)
	}
	if got := hashing.FromHash(h); got != want {
		return fmt.Errorf("%w: %s has SHA-256 %s, its index says %s; the output is not the evidence", manifest.ErrCorrupt, en.Path, got.Hex(), want.Hex())
	}
	return nil
}
