package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/extract"
	"github.com/amber-forensics/amber/view"
)

func (e *env) newExtractCmd() *cobra.Command {
	var o extract.Options
	var noOwners, preserveAll, asJSON bool
	c := &cobra.Command{
		Use:   "extract ARCHIVE VIEWPATH DEST",
		Short: "Copy a file or a tree out of an archive, as docker cp does, safely",
		Long: `extract copies VIEWPATH (a file or a directory of the mount layout:
containers/NAME/rootfs/etc, images/NAME/layers/2, containers/NAME/memory,
images, ...) to DEST as docker cp does: into DEST/<basename> when DEST is a
directory, else to DEST itself. Evidence is hostile input: every write goes
through DEST (os.Root), so no name, ".." or symlink - from the archive or
already in DEST - leads outside it; symlinks are created, never followed;
devices and fifos are listed, not created. Times are kept, and modes less
the setuid, setgid and sticky bits and write for others; files belong to
the user extracting (an attacker's setuid-root file extracted by root would
run as root for any local user). --preserve-all keeps those bits and, as
root, the recorded owners. Each entry whose mode or owner differs from the
record is listed (a line per changed mode; --json lists all). Nothing is
overwritten unless --force. Each file is checked against its SHA-256 as it
is written and removed if it does not match (exit 3). An entry the
destination's file system refuses for its name (longer than it allows,
255 bytes on ext4) is skipped with what it holds, named on stderr, and the
rest extracted (exit 13). The extraction is recorded in
ARCHIVE.custody.jsonl, with --preserve-all and the numbers of altered and
skipped entries.`,
		Example: `  amber extract case.tar.zst containers/wordpress/rootfs/etc ./evidence/
  amber extract case.tar.zst containers/wordpress/memory/1234-php-fpm/core ./cores/
  amber extract case.tar.zst images/app_v1/layers/3 ./layer3 --force
  amber extract --preserve-all case.tar.zst images/app_v1/rootfs/usr/bin ./bin   # setuid bits and owners as recorded`,
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
			// Evidence's owners and special bits only when asked: root
			// extracting an attacker's setuid-root file would hand root to
			// every local user of this machine.
			o.KeepModes = preserveAll
			o.Owners = preserveAll && !noOwners && os.Geteuid() == 0
			target, _ := filepath.Abs(filepath.Join(dir, name))
			res, err := extract.To(v, en, dir, name, o)
			if err != nil {
				return fmt.Errorf("extracting %s to %s: %w", vp, target, err)
			}
			// Result paths start with name: they are relative to target's directory.
			abs := func(p string) string { return filepath.Join(filepath.Dir(target), p) }
			if !plain && a.Manifest.Custody.Entry != "" {
				e.custodyEvent(archive, a, "extracted", map[string]string{"view": vp, "dest": target,
					"files": fmt.Sprint(res.Files), "bytes": fmt.Sprint(res.Bytes), "dirs": fmt.Sprint(res.Dirs), "symlinks": fmt.Sprint(res.Symlinks),
					"preserve_all": fmt.Sprint(preserveAll), "altered": fmt.Sprint(len(res.Altered)), "not_written": fmt.Sprint(len(res.NotWritten))})
			}
			for _, nw := range res.NotWritten {
				fmt.Fprintf(e.stderr, "amber: warning: not written: %s: %s\n", escapeName(abs(nw.Path)), reason(nw.Err))
			}
			var incomplete error
			if n := len(res.NotWritten); n > 0 {
				incomplete = fmt.Errorf("%w: %d entries not written to %s (named above), the rest was extracted and recorded", extract.ErrIncomplete, n, target)
			}
			if asJSON {
				type altered struct {
					Path         string `json:"path"`
					PathBase64   string `json:"path_base64,omitempty"`
					CapturedMode string `json:"captured_mode"`
					Mode         string `json:"mode"`
					CapturedUID  uint32 `json:"captured_uid"`
					CapturedGID  uint32 `json:"captured_gid"`
					UID          uint32 `json:"uid"`
					GID          uint32 `json:"gid"`
				}
				type notWritten struct {
					Path       string `json:"path"`
					PathBase64 string `json:"path_base64,omitempty"`
					Error      string `json:"error"`
				}
				alt, nws := []altered{}, []notWritten{}
				for _, x := range res.Altered {
					p := abs(x.Path)
					alt = append(alt, altered{Path: p, PathBase64: base64IfNotUTF8(p), CapturedMode: fmt.Sprintf("%04o", x.RecordedMode), Mode: fmt.Sprintf("%04o", x.Mode),
						CapturedUID: x.RecordedUID, CapturedGID: x.RecordedGID, UID: x.UID, GID: x.GID})
				}
				for _, x := range res.NotWritten {
					p := abs(x.Path)
					nws = append(nws, notWritten{Path: p, PathBase64: base64IfNotUTF8(p), Error: reason(x.Err)})
				}
				if err := e.printJSON(map[string]any{"view": vp, "dest": target, "files": res.Files, "dirs": res.Dirs, "symlinks": res.Symlinks,
					"hardlinks": res.Hardlinks, "bytes": res.Bytes, "skipped": res.Skipped,
					"preserve_all": preserveAll, "altered": alt, "not_written": nws}); err != nil {
					return err
				}
				return incomplete
			}
			fmt.Fprintf(e.stdout, "extracted %s to %s: %d files (%d bytes), %d directories, %d symlinks, %d hard links\n",
				escapeName(vp), escapeName(target), res.Files, res.Bytes, res.Dirs, res.Symlinks, res.Hardlinks)
			for _, s := range res.Skipped {
				fmt.Fprintf(e.stdout, "skipped %s\n", escapeName(fmt.Sprint(s)))
			}
			// Each dropped bit by name; owners only counted (extracted by
			// anyone but root, every file's owner differs).
			for _, x := range res.Altered {
				if x.Mode != x.RecordedMode {
					fmt.Fprintf(e.stdout, "mode %04o -> %04o: %s\n", x.RecordedMode, x.Mode, escapeName(abs(x.Path)))
				}
			}
			if n := len(res.Altered); n > 0 {
				fmt.Fprintf(e.stdout, "%d entries differ from the record in mode or owner (setuid, setgid, sticky and write for others dropped, owners not set; --preserve-all keeps them; --json lists each)\n", n)
			}
			return incomplete
		},
	}
	c.Flags().BoolVar(&o.Force, "force", false, "replace what exists at the destination")
	c.Flags().BoolVar(&preserveAll, "preserve-all", false, "keep setuid, setgid and sticky bits, write for others and (as root) owners as recorded")
	c.Flags().BoolVar(&noOwners, "no-owners", false, "with --preserve-all, do not set owners (without it they never are)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return c
}

// reason is why an entry was not written: the system's word for it
// (the error's path is the evidence's name, given beside it).
func reason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}

func base64IfNotUTF8(s string) string {
	if utf8.ValidString(s) {
		return ""
	}
	return base64.StdEncoding.EncodeToString([]byte(s))
}
