package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/internal/textsafe"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/view"
)

type lsOptions struct {
	json      bool
	recursive bool
	sha256sum bool
}

func (e *env) newLsCmd() *cobra.Command {
	o := &lsOptions{}
	c := &cobra.Command{
		Use:   "ls ARCHIVE [VIEWPATH]",
		Short: "List artifacts, layers and files without mounting",
		Long: `ls shows what an archive holds. Without VIEWPATH: the case, the acquisition
and every artifact with its layers. With VIEWPATH (the mount layout of
DESIGN.md: images/NAME/rootfs, images/NAME/layers/N, images/NAME/stages/N,
images/NAME/config.json, containers/NAME/{rootfs,pristine,changes,memory,...},
volumes/NAME, manifest.json): its entries, one per line:

  MODE UID/GID SIZE MTIME SHA256 NAME [-> LINK]

Only the trailer, the manifest and the needed file indexes are read; no file
content is decompressed. --sha256sum prints every regular file below
VIEWPATH in sha256sum format, relative to VIEWPATH, so that in a tree
extracted from that view 'sha256sum -c --strict' checks it; on a terminal
names are shown as ls shows them instead (the format cannot escape ESC
or bidi characters): redirect the output to a file for sha256sum.

Text output shows a name or other evidence string that holds a control
or invisible character quoted, Go-style ("new\nline", "\x1b]0;x\a",
"\u202etoor"), so that nothing in it acts on the terminal or starts a
line; --json has the exact strings.`,
		Example: `  amber ls case.tar.zst
  amber ls case.tar.zst images/app_v1/rootfs/etc
  amber ls case.tar.zst containers/wordpress/memory
  amber ls -r --json case.tar.zst images/app_v1/layers/2
  amber ls --sha256sum case.tar.zst images/app_v1/rootfs > rootfs.sha256`,
		Args: argsRange(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ok, err := e.lsRepository(cmd, args); ok {
				return err
			}
			p := ""
			if len(args) == 2 {
				p = args[1]
			}
			return e.runLs(o, args[0], p)
		},
	}
	c.Flags().BoolVar(&o.json, "json", false, "JSON lines, one object per entry")
	c.Flags().BoolVarP(&o.recursive, "recursive", "r", false, "list everything below VIEWPATH")
	c.Flags().BoolVar(&o.sha256sum, "sha256sum", false, "print regular files below VIEWPATH in sha256sum format")
	return c
}

// lsEntry is the JSON form of one listed path (documented in README.md).
type lsEntry struct {
	Path string `json:"path"`
	// PathBase64 carries the exact bytes of a name that is not valid UTF-8
	// (JSON strings cannot hold it: Path then has U+FFFD in its place).
	PathBase64 string            `json:"path_base64,omitempty"`
	Type       string            `json:"type"`
	Mode       string            `json:"mode"`
	Perm       string            `json:"perm"`
	UID        uint32            `json:"uid"`
	GID        uint32            `json:"gid"`
	Uname      string            `json:"uname,omitempty"`
	Gname      string            `json:"gname,omitempty"`
	Size       int64             `json:"size"`
	Mtime      time.Time         `json:"mtime"`
	SHA256     string            `json:"sha256,omitempty"`
	Link       string            `json:"link,omitempty"`
	LinkBase64 string            `json:"link_base64,omitempty"`
	Hardlink   string            `json:"hardlink,omitempty"`
	Nlink      uint32            `json:"nlink,omitempty"`
	Layer      *int              `json:"layer,omitempty"`
	Xattrs     map[string]string `json:"xattrs,omitempty"`
	Flags      []string          `json:"flags,omitempty"`
	Device     string            `json:"device,omitempty"`
}

func flagNames(f uint8) []string {
	var out []string
	for _, x := range []struct {
		b uint8
		n string
	}{{fileindex.FlagImplicit, "implicit"}, {fileindex.FlagHardlink, "hardlink"}, {fileindex.FlagSparse, "sparse"}, {fileindex.FlagUnsafe, "unsafe-name"},
		{fileindex.FlagWhiteout, "whiteout"}, {fileindex.FlagOpaque, "opaque"}, {fileindex.FlagShadowed, "shadowed"}, {fileindex.FlagDangling, "dangling"}} {
		if f&x.b != 0 {
			out = append(out, x.n)
		}
	}
	return out
}

func toLsEntry(en *view.Entry, rel string) lsEntry {
	le := lsEntry{Path: rel, Type: view.TypeName(en.Type), Mode: view.ModeString(en.Type, en.Mode), Perm: fmt.Sprintf("%04o", en.Mode), Size: en.Size, Mtime: en.ModTime}
	if !utf8.ValidString(rel) {
		le.PathBase64 = base64.StdEncoding.EncodeToString([]byte(rel))
	}
	if d := en.SHA256(); !d.IsZero() {
		le.SHA256 = d.Hex()
	}
	if n := en.Node; n != nil {
		r := &n.Rec
		layer := en.Layer()
		le.Layer = &layer
		le.UID, le.GID, le.Uname, le.Gname = r.UID, r.GID, r.Uname, r.Gname
		le.Nlink = r.Nlink
		le.Xattrs = r.Xattrs
		le.Flags = flagNames(r.Flags)
		switch {
		case r.Type == fileindex.TypeSymlink:
			le.Link = r.Linkname
			if !utf8.ValidString(r.Linkname) {
				le.LinkBase64 = base64.StdEncoding.EncodeToString([]byte(r.Linkname))
			}
		case r.Has(fileindex.FlagHardlink) || r.Type == fileindex.TypeLink:
			le.Hardlink = r.Linkname
		}
		if r.Type == fileindex.TypeChar || r.Type == fileindex.TypeBlock {
			le.Device = fmt.Sprintf("%d,%d", r.DevMajor, r.DevMinor)
		}
	}
	return le
}

// escapeName is textsafe.Escape, the one escaping of every evidence
// string amber prints for a person: names stay one entry per line, and
// nothing in them acts on the terminal. --json has the exact bytes.
func escapeName(s string) string { return textsafe.Escape(s) }

func (e *env) runLs(o *lsOptions, archivePath, p string) error {
	a, err := e.openArchive(archivePath)
	if err != nil {
		return err
	}
	defer a.Close()
	out := bufio.NewWriterSize(e.stdout, 256<<10)
	defer out.Flush()
	if p == "" && !o.recursive && !o.sha256sum {
		return lsSummary(out, a, o.json)
	}
	v := &view.View{A: a}
	root, err := v.Stat(p)
	if err != nil {
		return err
	}
	if o.sha256sum {
		tty := isTerminal(e.stdout)
		return v.Walk(root, func(en *view.Entry) error {
			if en.Type != fileindex.TypeReg {
				return nil
			}
			rel := strings.TrimPrefix(strings.TrimPrefix(en.Path, root.Path), "/")
			if rel == "" {
				rel = en.Name
			}
			if tty {
				fmt.Fprintf(out, "%s  %s\n", en.SHA256().Hex(), escapeName(rel))
				return nil
			}
			writeSumLine(out, en.SHA256().Hex(), rel)
			return nil
		})
	}
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	emit := func(en *view.Entry, rel string) error {
		le := toLsEntry(en, rel)
		if o.json {
			return enc.Encode(le)
		}
		sum := le.SHA256
		if sum == "" {
			sum = strings.Repeat("-", 64)
		}
		owner := fmt.Sprintf("%d/%d", le.UID, le.GID)
		size := strconv.FormatInt(le.Size, 10)
		if le.Device != "" {
			size = le.Device
		}
		line := fmt.Sprintf("%s %-9s %10s %s %s %s", le.Mode, owner, size, le.Mtime.UTC().Format("2006-01-02T15:04:05Z"), sum, escapeName(rel))
		if le.Link != "" {
			line += " -> " + escapeName(le.Link)
		}
		if le.Hardlink != "" {
			line += " link to " + escapeName(le.Hardlink)
		}
		_, err := fmt.Fprintln(out, line)
		return err
	}
	if !root.IsDir() {
		return emit(root, root.Name)
	}
	if o.recursive {
		return v.Walk(root, func(en *view.Entry) error {
			rel := strings.TrimPrefix(strings.TrimPrefix(en.Path, root.Path), "/")
			if rel == "" {
				rel = "."
			}
			return emit(en, rel)
		})
	}
	kids, err := v.ReadDir(p)
	if err != nil {
		return err
	}
	for _, k := range kids {
		if err := emit(k, k.Name); err != nil {
			return err
		}
	}
	return nil
}

// writeSumLine writes one line as GNU sha256sum does, escaping names that
// hold a backslash, newline or carriage return.
func writeSumLine(w io.Writer, hexsum, name string) {
	if strings.ContainsAny(name, "\\\n\r") {
		r := strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`)
		fmt.Fprintf(w, "\\%s  %s\n", hexsum, r.Replace(name))
		return
	}
	fmt.Fprintf(w, "%s  %s\n", hexsum, name)
}

func lsSummary(w io.Writer, a *archive.Archive, asJSON bool) error {
	m := a.Manifest
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(map[string]any{"case": m.Case, "acquisition": m.Acquisition, "tool": m.Tool, "artifacts": m.Artifacts, "anomalies": m.Anomalies, "custody": m.Custody, "format_version": m.FormatVersion})
	}
	// Everything below comes from the manifest, which an archive made
	// elsewhere makes whatever it likes: escaped, like the names.
	fmt.Fprintf(w, "archive   %s (format v%d, written by %s %s)\n", escapeName(a.Path), m.FormatVersion, escapeName(m.Tool.Name), escapeName(m.Tool.Version))
	fmt.Fprintf(w, "case      %s  exhibit %s  examiner %s\n", escapeName(dash(m.Case.Case)), escapeName(dash(m.Case.Exhibit)), escapeName(dash(m.Case.Examiner)))
	if m.Case.Notes != "" {
		fmt.Fprintf(w, "notes     %s\n", escapeName(m.Case.Notes))
	}
	acq := m.Acquisition
	fmt.Fprintf(w, "acquired  %s to %s on %s by %s\n", acq.Started.Format(time.RFC3339), acq.Finished.Format(time.RFC3339), escapeName(acq.Host), escapeName(acq.User))
	for _, s := range acq.Sources {
		fmt.Fprintf(w, "source    %s %s", escapeName(s.Kind), escapeName(s.Path))
		if !s.SHA256.IsZero() {
			fmt.Fprintf(w, " sha256 %s", s.SHA256.Hex())
		}
		fmt.Fprintln(w)
	}
	for _, art := range m.Artifacts {
		if art.Kind == manifest.KindArtifact {
			fmt.Fprintf(w, "\nartifacts/%s  type %s  refs %s  manifest %s", art.Name, escapeName(art.ArtifactType), escapeName(dash(strings.Join(art.Refs, ","))), art.Manifest.Digest)
			if art.Describes != "" {
				fmt.Fprintf(w, "  describes %s", escapeName(art.Describes))
			}
			fmt.Fprintln(w)
			for i, b := range art.Blobs {
				state := ""
				if b.Missing {
					state = "  (not present)"
				}
				if b.Title != "" {
					state += "  title " + escapeName(b.Title)
				}
				fmt.Fprintf(w, "  blobs/%-4d %s %12d bytes  %s%s\n", i, b.Digest, b.Size, escapeName(b.MediaType), state)
			}
			continue
		}
		if art.Kind == manifest.KindPod && art.Pod != nil {
			names := make([]string, 0, len(art.Pod.Containers))
			for k8s, name := range art.Pod.Containers {
				names = append(names, escapeName(k8s)+"=containers/"+name)
			}
			slices.Sort(names)
			fmt.Fprintf(w, "\npods/%s  pod %s/%s  uid %s  sandbox %s  containers %s\n", art.Name, escapeName(art.Pod.Namespace), escapeName(art.Pod.Name),
				escapeName(dash(art.Pod.UID)), escapeName(art.Pod.SandboxID), strings.Join(names, " "))
			continue
		}
		platform := ""
		if art.Platform != "" {
			platform = "  platform " + escapeName(art.Platform)
		}
		fmt.Fprintf(w, "\n%ss/%s  image %s  refs %s%s  %d files  merkle %s\n", escapeName(art.Kind), art.Name, art.ImageID.Hex(), escapeName(dash(strings.Join(art.Refs, ","))), platform, art.Files, art.MerkleRoot.Hex())
		for i, l := range art.Layers {
			if l.Missing {
				fmt.Fprintf(w, "  layers/%-3d %s  not present (%s %s)\n", i, l.Digest, escapeName(l.SourceMediaType), l.SourceDigest)
				continue
			}
			fmt.Fprintf(w, "  layers/%-3d %s %12d bytes %7d files\n", i, l.Digest, l.Size, l.Files)
		}
	}
	if len(m.Anomalies) > 0 {
		fmt.Fprintf(w, "\n%d anomalies:\n", len(m.Anomalies))
		for _, an := range m.Anomalies {
			fmt.Fprintf(w, "  %s %s: %s\n", anomalyWhere(m, an), escapeName(an.Kind), escapeName(an.Detail))
		}
	}
	return nil
}

// anomalyWhere names what an anomaly is about: the source, an artifact,
// or a layer of one; escaped for printing.
func anomalyWhere(m *manifest.Manifest, an manifest.Anomaly) string {
	if an.Artifact == "" {
		return "source"
	}
	kind := manifest.KindImage
	for _, a := range m.Artifacts {
		if a.Name == an.Artifact {
			kind = a.Kind
			break
		}
	}
	where := escapeName(kind + "s/" + an.Artifact)
	if an.Layer < 0 {
		return where
	}
	return fmt.Sprintf("%s layer %d", where, an.Layer)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
