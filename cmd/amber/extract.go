package main

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/extract"
	"github.com/amber-forensics/amber/view"
)

func (e *env) newExtractCmd() *cobra.Command {
	var o extract.Options
	var noOwners, asJSON bool
	c := &cobra.Command{
		Use:   "extract ARCHIVE VIEWPATH DEST",
		Short: "Copy a file or a tree out of an archive, as docker cp does, safely",
		Long: `extract copies VIEWPATH (a file or a directory of the mount layout:
containers/NAME/rootfs/etc, images/NAME/layers/2, containers/NAME/memory,
images, ...) to DEST as docker cp does: into DEST/<basename> when DEST is a
directory, else to DEST itself. Evidence is hostile input: every write goes
through DEST (os.Root), so no name, ".." or symlink - from the archive or
already in DEST - leads outside it; symlinks are created, never followed;
devices and fifos are listed, not created. Modes and times are kept, owners
when run as root. Nothing is overwritten unless --force. Each file is checked
against its SHA-256 as it is written and removed if it does not match
(exit 3). The extraction is recorded in ARCHIVE.custody.jsonl.`,
		Example: `  amber extract case.tar.zst containers/wordpress/rootfs/etc ./evidence/
  amber extract case.tar.zst containers/wordpress/memory/1234-php-fpm/core ./cores/
  amber extract case.tar.zst images/app_v1/layers/3 ./layer3 --force`,
		Args: argsRange(3, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			archive, vp, dest := args[0], strings.Trim(args[1], "/"), args[2]
			if vp == "" || vp == "." {
				return usageError{fmt.Errorf("extract: give a view path (e.g. containers/NAME/rootfs/etc), not the whole archive")}
			}
			a, done, plain, err := e.openAnyPlain(archive)
			if err != nil {
				return err
			}
			defer done()
			v := &view.View{A: a}
			en, err := v.Stat(vp)
			if err != nil {
				return err
			}
			// docker cp: into DEST when it is a directory, else as DEST.
			dir, name := dest, path.Base(vp)
			if st, err := os.Stat(dest); err != nil || !st.IsDir() {
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
				dir, name = filepath.Dir(dest), filepath.Base(dest)
				if err == nil && !o.Force {
					return fmt.Errorf("%w: %s (--force replaces it)", extract.ErrExists, dest)
				}
			}
			o.Owners = !noOwners && os.Geteuid() == 0
			target, _ := filepath.Abs(filepath.Join(dir, name))
			res, err := extract.To(v, en, dir, name, o)
			if err != nil {
				return fmt.Errorf("extracting %s to %s: %w", vp, target, err)
			}
			if !plain && a.Manifest.Custody.Entry != "" {
				e.custodyEvent(archive, a, "extracted", map[string]string{"view": vp, "dest": target,
					"files": fmt.Sprint(res.Files), "bytes": fmt.Sprint(res.Bytes), "dirs": fmt.Sprint(res.Dirs), "symlinks": fmt.Sprint(res.Symlinks)})
			}
			if asJSON {
				return e.printJSON(map[string]any{"view": vp, "dest": target, "files": res.Files, "dirs": res.Dirs, "symlinks": res.Symlinks,
					"hardlinks": res.Hardlinks, "bytes": res.Bytes, "skipped": res.Skipped})
			}
			fmt.Fprintf(e.stdout, "extracted %s to %s: %d files (%d bytes), %d directories, %d symlinks, %d hard links\n",
				vp, target, res.Files, res.Bytes, res.Dirs, res.Symlinks, res.Hardlinks)
			for _, s := range res.Skipped {
				fmt.Fprintf(e.stdout, "skipped %s\n", s)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&o.Force, "force", false, "replace what exists at the destination")
	c.Flags().BoolVar(&noOwners, "no-owners", false, "do not set owners (by default root sets them as recorded)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return c
}
