package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/export"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/registry"
)

func (e *env) newExportCmd() *cobra.Command {
	var format, output string
	c := &cobra.Command{
		Use:   "export ARCHIVE --format dfxml|case-uco [-o FILE]",
		Short: "Write the archive as DFXML (every file, with hashes) or CASE/UCO JSON-LD (the acquisition)",
		Long: `export writes what an archive holds in the field's exchange formats, for case
tools that do not read amber archives. Only the manifest, the custody logs
and the file indexes are read: no file content is decompressed.

--format dfxml: Digital Forensics XML 1.x (dfxml_schema's dfxml.xsd, version
1.2.0): the export's <creator> (amber, version, command line), the <source>
(the archive, and each image, container and volume in it), one <volume>
per layer (images/NAME/layers/N, containers/NAME/changes, volumes/NAME: its
<ftype_str> names them; its <byte_run> places the layer in the archive's
tar stream with its SHA-256) holding one <fileobject> per tar entry:
filename (relative to the layer root), partition (the volume's number),
name_type (w for a whiteout), filesize, inode, mode, nlink, uid, gid,
mtime, ctime, atime (UTC), link_target, and <hashdigest type="sha256">;
then a <fileobject> (mount-layout path, size, SHA-256) for each file kept
outside the layers (a container's inspect.json, changes.txt, logs, memory);
last, one for the archive file with the digests its sidecars record.
A name XML cannot carry is escaped: in every string from the evidence a
backslash is written \\ and each byte XML 1.0 cannot hold (C0 controls
other than TAB/LF/CR, DEL, invalid UTF-8) \xNN; TAB, LF and CR are
character references. The document is streamed: any number of files.

--format case-uco: CASE 1.x / UCO 1.x JSON-LD: the acquisition as a
case-investigation:InvestigativeAction (performer the examiner, instrument
amber and its version, start and end time; its objects the sources and
each image, container and volume taken), its result the archive as a
uco-observable:File with a ContentDataFacet holding the SHA-256 (and MD5,
SHA-1) its sidecars record; each custody event (sealed, then the
sidecar's) as a further InvestigativeAction.
A string that is not valid UTF-8 is written with the same \xNN escape.`,
		Example: `  amber export case.tar.zst --format dfxml > case.dfxml
  amber export case.tar.zst --format dfxml -o case.dfxml && xmllint --noout --schema dfxml.xsd case.dfxml
  amber export case.tar.zst --format case-uco -o case.jsonld
  amber export docker://registry.example/evidence/case:1 --format dfxml -o case.dfxml`,
		Args: argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			write := map[string]func(io.Writer, *archive.Archive, export.Options) error{"dfxml": export.WriteDFXML, "case-uco": export.WriteCASE}[format]
			if write == nil {
				return usageError{fmt.Errorf("--format %q: dfxml or case-uco", format)}
			}
			return e.runExport(args[0], output, format == "case-uco", write)
		},
	}
	c.Flags().StringVar(&format, "format", "", "dfxml (DFXML 1.2.0) or case-uco (CASE/UCO JSON-LD)")
	c.Flags().StringVarP(&output, "output", "o", "", "write to FILE (written beside it, then renamed: nothing is left on failure) instead of stdout")
	return c
}

func (e *env) runExport(name, output string, custody bool, write func(io.Writer, *archive.Archive, export.Options) error) error {
	start := time.Now().UTC()
	host, _ := os.Hostname()
	opts := export.Options{
		Tool: manifest.Tool{Name: "amber", Version: version}, CommandLine: e.args,
		Host: host, OS: runtime.GOOS, Arch: runtime.GOARCH, Start: start, Name: name,
	}
	var a *archive.Archive
	if registry.IsRef(name) {
		ra, b, err := e.openRemote(name)
		if err != nil {
			return err
		}
		a = ra
		// The registry's digest of the blob is the archive file's.
		opts.SHA256, opts.Size = b.Digest.Hex, b.Size
	} else {
		la, err := archive.Open(name)
		if err != nil {
			return err
		}
		a = la
		opts.Size = a.Size
		opts.SHA256, opts.MD5, opts.SHA1 = sidecarSum(name, ".sha256", 64), sidecarSum(name, ".md5", 32), sidecarSum(name, ".sha1", 40)
	}
	defer a.Close()
	if custody {
		// Only CASE/UCO reports custody; a broken chain fails it (exit 3)
		// rather than hand a case tool events that cannot be trusted.
		evs, err := custodyEvents(name, a)
		if err != nil {
			return err
		}
		opts.Custody, opts.Sealed = evs, min(a.Manifest.Custody.Events, len(evs))
	}
	if output == "" {
		return write(e.stdout, a, opts)
	}
	// Written beside the destination, renamed when complete: an export
	// that fails leaves nothing that looks like one.
	f, err := os.CreateTemp(filepath.Dir(output), "."+filepath.Base(output)+".*.partial")
	if err != nil {
		return fmt.Errorf("export: writing %s: %w", output, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f, a, opts); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("export: writing %s: %w", output, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("export: writing %s: %w", output, err)
	}
	if err := os.Rename(f.Name(), output); err != nil {
		return fmt.Errorf("export: writing %s: %w", output, err)
	}
	ok = true
	fmt.Fprintf(e.stderr, "amber: wrote %s\n", escapeName(output))
	return nil
}

// sidecarSum is the digest the sum file PATH+ext records (the first field
// of its line, sha256sum style), or "" when there is none or it is not a
// digest of that length: reported as recorded, never recomputed.
func sidecarSum(path, ext string, hexLen int) string {
	b, err := os.ReadFile(path + ext)
	if err != nil || len(b) > 4096 {
		return ""
	}
	sum, _, _ := strings.Cut(strings.TrimLeft(string(b), `\`), " ")
	sum = strings.ToLower(sum)
	if _, err := hex.DecodeString(sum); err != nil || len(sum) != hexLen {
		return ""
	}
	return sum
}
