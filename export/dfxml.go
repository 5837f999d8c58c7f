package export

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
)

// DFXMLVersion is the DFXML schema version the output claims (the
// dfxml_schema repository's release; testdata/dfxml holds its dfxml.xsd).
const DFXMLVersion = "1.2.0"

// DFXML namespaces.
const (
	dfxmlNS = "http://www.forensicswiki.org/wiki/Category:Digital_Forensics_XML"
	dcNS    = "http://purl.org/dc/elements/1.1/"
)

// Options describe the export run and what is known of the archive file
// beyond its contents (its sidecars).
type Options struct {
	// Tool is the program writing the export (amber and its version).
	Tool manifest.Tool
	// CommandLine is the export's command line.
	CommandLine []string
	// Host, OS and Arch describe where the export runs.
	Host, OS, Arch string
	// Start is when the export started (now when zero).
	Start time.Time
	// Name is the archive as given (a path or docker://REF).
	Name string
	// Size of the archive file, when known.
	Size int64
	// SHA256, MD5 and SHA1 are the whole archive's digests (hex) as its
	// sidecars (or the registry's blob digest) record them; empty when
	// not recorded. They are reported, not recomputed.
	SHA256, MD5, SHA1 string
	// Custody are the custody events, sealed ones first (Sealed of them),
	// then the sidecar log's.
	Custody []manifest.Event
	Sealed  int
}

func (o *Options) start() time.Time {
	if o.Start.IsZero() {
		return time.Now().UTC()
	}
	return o.Start.UTC()
}

// layerVol is one layer of the archive as a DFXML volume: its digest and
// the places of the mount layout that show it alone.
type layerVol struct {
	layer  manifest.Layer
	labels []string
}

// Layers lists the archive's layers once each (a layer an image and a
// container share is one volume), with the mount-layout paths that show
// each alone: images/NAME/layers/N, containers/NAME/changes, volumes/NAME.
// A container's image layers are listed under its image; under the
// container only when no image artifact holds them.
func layers(m *manifest.Manifest) []layerVol {
	var out []layerVol
	at := map[hashing.Digest]int{}
	add := func(l manifest.Layer, label string) {
		if i, ok := at[l.Digest]; ok {
			out[i].labels = append(out[i].labels, label)
			return
		}
		at[l.Digest] = len(out)
		out = append(out, layerVol{layer: l, labels: []string{label}})
	}
	for _, a := range m.Artifacts {
		if a.Kind == manifest.KindImage {
			for i, l := range a.Layers {
				add(l, fmt.Sprintf("images/%s/layers/%d", a.Name, i))
			}
		}
	}
	for _, a := range m.Artifacts {
		switch a.Kind {
		case manifest.KindContainer:
			for i, l := range a.Layers {
				if i == len(a.Layers)-1 {
					add(l, "containers/"+a.Name+"/changes")
				} else if _, ok := at[l.Digest]; !ok {
					add(l, fmt.Sprintf("containers/%s/layers/%d", a.Name, i))
				}
			}
		case manifest.KindVolume:
			for _, l := range a.Layers {
				add(l, "volumes/"+a.Name)
			}
		}
	}
	return out
}

// dfxmlWriter writes the document; errors stick in the bufio.Writer and
// surface at Flush.
type dfxmlWriter struct {
	*bufio.Writer
	scratch []byte
}

func (w *dfxmlWriter) text(s string) { escapeTo(w, s, true) }

// elem writes <name>escaped text</name>.
func (w *dfxmlWriter) elem(indent, name, s string) {
	w.WriteString(indent)
	w.WriteByte('<')
	w.WriteString(name)
	w.WriteByte('>')
	w.text(s)
	w.WriteString("</")
	w.WriteString(name)
	w.WriteString(">\n")
}

func (w *dfxmlWriter) num(indent, name string, n uint64) {
	w.WriteString(indent)
	w.WriteByte('<')
	w.WriteString(name)
	w.WriteByte('>')
	w.scratch = strconv.AppendUint(w.scratch[:0], n, 10)
	w.Write(w.scratch)
	w.WriteString("</")
	w.WriteString(name)
	w.WriteString(">\n")
}

// time writes an xs:dateTime in UTC, with the fraction only when there
// is one; nothing for a time not recorded.
func (w *dfxmlWriter) time(indent, name string, t time.Time) {
	if t.IsZero() {
		return
	}
	w.WriteString(indent)
	w.WriteByte('<')
	w.WriteString(name)
	w.WriteByte('>')
	w.scratch = appendDateTime(w.scratch[:0], t)
	w.Write(w.scratch)
	w.WriteString("</")
	w.WriteString(name)
	w.WriteString(">\n")
}

// appendDateTime appends t as an XSD 1.0 xs:dateTime, which has no year
// 0000 (xmllint refuses it): a tar header may say any year, and Go's
// year 0 is 1 BCE, XSD 1.0's -0001 (Go's year y <= 0 is -(1-y)).
func appendDateTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	y := t.Year()
	if y > 0 {
		return t.AppendFormat(b, time.RFC3339Nano)
	}
	// Formatted 400*k years later (the Gregorian calendar repeats every
	// 400 years, leap days included), the year field swapped.
	k := (400 - y) / 400
	s := t.AddDate(400*k, 0, 0).Format(time.RFC3339Nano)
	b = fmt.Appendf(b, "-%04d", 1-y)
	return append(b, s[strings.IndexByte(s, '-'):]...)
}

func (w *dfxmlWriter) hash(indent, typ, hex string) {
	w.WriteString(indent)
	w.WriteString(`<hashdigest type="`)
	w.WriteString(typ)
	w.WriteString(`">`)
	w.text(hex)
	w.WriteString("</hashdigest>\n")
}

// WriteDFXML writes the DFXML document of a to out: <metadata>; <creator>
// (this export: program, version, command line, host, start time);
// <source> (the archive as given, then the mount-layout path of each
// image, container and volume it holds); one <volume> per layer, as
// layers lists them, holding one <fileobject> per entry of the layer's
// tar; then a <fileobject> for each file stored outside the layers (a
// container's inspect.json, changes.txt, logs and memory dumps, a pod's
// records: filename its mount-layout path, containers/NAME/...; size;
// SHA-256); last, a <fileobject> for the archive file itself (its name,
// size and the digests its sidecars record).
//
// A volume's <byte_runs> place the layer blob in the archive's tar stream
// (img_offset, len, in bytes of the decompressed tar) with its SHA-256
// (the layer's digest, its OCI diff_id); <ftype_str> says "OCI layer tar"
// and names where the mount layout shows it. Each fileobject has
// <filename> (its path in the layer, relative to the layer root),
// <partition> (the 1-based number of its volume in the document, for
// readers that flatten volumes), <name_type> (r, d, l, c, b, p; w for an
// OCI whiteout or opaque marker), <filesize>, <inode> (the file's number
// in its layer, as timeline's: hard links share one), <mode> (permission
// bits with setuid/setgid/sticky, decimal), <nlink>, <uid>, <gid>,
// <mtime>, <ctime>, <atime> (UTC, as the tar
// header recorded them; absent when it did not), <link_target> for a
// symlink, and <hashdigest type="sha256"> for a regular file (a hard
// link's is its target's). Directories the layer implies without a tar
// entry, and earlier entries a later one of the same path shadows, have
// no fileobject (amber ls -r shows the first, not the second).
func WriteDFXML(out io.Writer, a *archive.Archive, opts Options) error {
	w := &dfxmlWriter{Writer: bufio.NewWriterSize(out, 1<<20)}
	m := a.Manifest
	w.WriteString("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
	w.WriteString(`<dfxml xmlns="` + dfxmlNS + `" xmlns:dc="` + dcNS + `" version="` + DFXMLVersion + "\">\n")
	// The schema allows exactly one Dublin Core element here.
	w.WriteString("  <metadata>\n    <dc:type>Container evidence archive: file listing</dc:type>\n  </metadata>\n")

	w.WriteString("  <creator>\n")
	w.elem("    ", "program", opts.Tool.Name)
	w.elem("    ", "version", opts.Tool.Version)
	w.WriteString("    <execution_environment>\n")
	if opts.OS != "" {
		w.elem("      ", "os_sysname", opts.OS)
	}
	if opts.Host != "" {
		w.elem("      ", "host", opts.Host)
	}
	if opts.Arch != "" {
		w.elem("      ", "arch", opts.Arch)
	}
	w.elem("      ", "command_line", strings.Join(opts.CommandLine, " "))
	w.WriteString("      <start_time>")
	w.WriteString(opts.start().Format(time.RFC3339))
	w.WriteString("</start_time>\n")
	w.WriteString("    </execution_environment>\n")
	w.WriteString("  </creator>\n")

	w.WriteString("  <source>\n")
	w.elem("    ", "image_filename", opts.Name)
	for _, art := range m.Artifacts {
		switch art.Kind {
		case manifest.KindImage, manifest.KindContainer, manifest.KindVolume:
			w.elem("    ", "image_filename", art.Kind+"s/"+art.Name)
		}
	}
	w.WriteString("  </source>\n")

	for n, lv := range layers(m) {
		if err := w.volume(a, lv, n+1); err != nil {
			return fmt.Errorf("%s: %w", lv.labels[0], err)
		}
	}
	// After the volumes, as the schema orders them: the files of the
	// archive outside any layer (a container's inspect.json, logs and
	// memory dumps, a pod's records), named by their mount-layout path.
	for _, art := range m.Artifacts {
		for _, mb := range art.Members() {
			w.WriteString("  <fileobject>\n")
			w.elem("    ", "filename", art.Kind+"s/"+art.Name+"/"+mb.Path)
			w.elem("    ", "name_type", "r")
			w.num("    ", "filesize", uint64(max(mb.Size, 0)))
			w.hash("    ", "sha256", mb.SHA256.Hex())
			w.WriteString("  </fileobject>\n")
		}
	}
	// Last, the archive file itself, with the digests that speak for it.
	w.WriteString("  <fileobject>\n")
	w.elem("    ", "filename", opts.Name)
	w.elem("    ", "name_type", "r")
	if opts.Size > 0 {
		w.num("    ", "filesize", uint64(opts.Size))
	}
	for _, h := range []struct{ typ, hex string }{{"md5", opts.MD5}, {"sha1", opts.SHA1}, {"sha256", opts.SHA256}} {
		if h.hex != "" {
			w.hash("    ", h.typ, h.hex)
		}
	}
	w.WriteString("  </fileobject>\n")

	w.WriteString("</dfxml>\n")
	return w.Flush()
}

// volume writes one layer as a <volume> of its entries' fileobjects.
func (w *dfxmlWriter) volume(a *archive.Archive, lv layerVol, part int) error {
	l := lv.layer
	e, stored := a.Manifest.Entry(manifest.BlobName(l.Digest))
	if stored && !l.Missing {
		w.WriteString(`  <volume offset="`)
		w.WriteString(strconv.FormatInt(e.Offset, 10))
		w.WriteString("\">\n    <byte_runs>\n      <byte_run img_offset=\"")
		w.WriteString(strconv.FormatInt(e.Offset, 10))
		w.WriteString(`" len="`)
		w.WriteString(strconv.FormatInt(e.Size, 10))
		w.WriteString("\">\n")
		w.hash("        ", "sha256", l.Digest.Hex())
		w.WriteString("      </byte_run>\n    </byte_runs>\n")
	} else {
		w.WriteString("  <volume>\n")
	}
	label := "OCI layer tar " + strings.Join(lv.labels, ", ")
	if l.Missing {
		label += " (not present: the source did not hold its bytes)"
	}
	w.elem("    ", "ftype_str", label)
	w.WriteString("    <allocated_only>1</allocated_only>\n")
	if l.Missing {
		w.WriteString("  </volume>\n")
		return nil
	}
	ix, err := a.Index(l.Digest)
	if err != nil {
		return err
	}
	for i := uint32(1); i < ix.TreeLen(); i++ {
		r, err := ix.Record(i)
		if err != nil {
			return err
		}
		if r.Has(fileindex.FlagImplicit) {
			continue // no tar entry: nothing recorded of its own
		}
		w.fileobject(&r, part)
	}
	w.WriteString("  </volume>\n")
	return nil
}

func nameType(r *fileindex.Record) string {
	if r.Has(fileindex.FlagWhiteout) || r.Has(fileindex.FlagOpaque) {
		return "w"
	}
	switch r.Type {
	case fileindex.TypeReg, fileindex.TypeLink:
		return "r"
	case fileindex.TypeDir:
		return "d"
	case fileindex.TypeSymlink:
		return "l"
	case fileindex.TypeChar:
		return "c"
	case fileindex.TypeBlock:
		return "b"
	case fileindex.TypeFifo:
		return "p"
	}
	return "-"
}

func (w *dfxmlWriter) fileobject(r *fileindex.Record, part int) {
	const in = "      "
	w.WriteString("    <fileobject>\n")
	w.elem(in, "filename", r.Path)
	w.num(in, "partition", uint64(part))
	w.WriteString(in + "<name_type>" + nameType(r) + "</name_type>\n")
	w.num(in, "filesize", uint64(r.Size))
	w.num(in, "inode", uint64(r.Ino)+2)
	w.num(in, "mode", uint64(r.Mode))
	if r.Nlink > 0 {
		w.num(in, "nlink", uint64(r.Nlink))
	}
	w.num(in, "uid", uint64(r.UID))
	w.num(in, "gid", uint64(r.GID))
	w.time(in, "mtime", r.ModTime)
	w.time(in, "ctime", r.ChangeTime)
	w.time(in, "atime", r.AccessTime)
	if r.Type == fileindex.TypeSymlink {
		w.elem(in, "link_target", r.Linkname)
	}
	if r.Type == fileindex.TypeReg && !r.SHA256.IsZero() {
		w.hash(in, "sha256", r.SHA256.Hex())
	}
	w.WriteString("    </fileobject>\n")
}
