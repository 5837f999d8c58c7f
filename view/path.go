package view

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/imageconfig"
	"github.com/amber-forensics/amber/layers"
	"github.com/amber-forensics/amber/manifest"
)

// ErrNotFound reports a view path that does not exist.
var ErrNotFound = errors.New("view: no such path")

// ErrNotDir reports a directory operation on something else.
var ErrNotDir = errors.New("view: not a directory")

// View resolves mount-layout paths over an archive.
type View struct {
	A *archive.Archive
}

// Entry is one path of the view: a virtual directory or file of the
// layout, or a node of a layer tree.
type Entry struct {
	// Path is the full view path, without leading slash.
	Path string
	Name string
	Type byte // fileindex.Type*
	Mode uint32
	Size int64
	// Virtual entries are made by amber (manifest.json, images/...).
	Virtual bool
	// Merged entries are in a view of several layers (rootfs, stages).
	Merged  bool
	data    []byte
	ModTime time.Time
	// Node is set for entries inside a layer tree.
	Node *layers.Node
	// ViewID numbers the tree (an image's rootfs, one layer, one stage),
	// stably for an archive: inode numbers are built from it.
	ViewID  int
	tree    *layers.Stack
	digests []hashing.Digest // the layers of tree, by their place in it
	first   int              // the artifact's number of tree's first layer
	rel     string           // path inside the tree
	// Member is set for a container's own file (inspect.json, a core):
	// a tar member of the archive, read in place.
	Member *manifest.Member
	offset int64
}

// viewID numbers the trees of artifact ai: rootfs, then layers/N, then
// stages/N, artifacts one after the other.
func (v *View) viewID(ai int, kind string, n int) int {
	base := 0
	for i := 0; i < ai; i++ {
		base += 1 + 2*len(v.A.Manifest.Artifacts[i].Layers)
	}
	nl := len(v.A.Manifest.Artifacts[ai].Layers)
	switch kind {
	case "layers":
		return base + 1 + n
	case "stages":
		return base + 1 + nl + n
	}
	return base
}

func (v *View) artifactIndex(a *manifest.Artifact) int {
	for i := range v.A.Manifest.Artifacts {
		if &v.A.Manifest.Artifacts[i] == a {
			return i
		}
	}
	return 0
}

// SHA256 is the content digest of a regular file ("" otherwise).
func (e *Entry) SHA256() hashing.Digest {
	switch {
	case e.Node != nil && e.Node.Rec.Type == fileindex.TypeReg:
		return e.Node.Rec.SHA256
	case e.Member != nil:
		return e.Member.SHA256
	case e.Virtual && e.Type == fileindex.TypeReg:
		return hashing.Sum(e.data)
	}
	return hashing.Digest{}
}

// IsDir reports whether e is a directory.
func (e *Entry) IsDir() bool { return e.Type == fileindex.TypeDir }

// LayerDigest is the digest of the layer the entry's record is in.
func (e *Entry) LayerDigest() hashing.Digest {
	if e.Node == nil {
		return hashing.Digest{}
	}
	return e.digests[e.Node.Layer]
}

// Layer is the number, in its artifact (0 = base), of the layer the
// entry's record is in, as layers/N numbers it.
func (e *Entry) Layer() int { return e.first + e.Node.Layer }

func clean(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, c)
		}
	}
	return out
}

func (v *View) dir(path, name string) *Entry {
	return &Entry{Path: path, Name: name, Type: fileindex.TypeDir, Mode: 0o555, Virtual: true, ModTime: v.A.Manifest.Acquisition.Finished}
}

func (v *View) file(path, name string, data []byte) *Entry {
	return &Entry{Path: path, Name: name, Type: fileindex.TypeReg, Mode: 0o444, Virtual: true, data: data, Size: int64(len(data)), ModTime: v.A.Manifest.Acquisition.Finished}
}

func (v *View) artifact(kind, name string) (*manifest.Artifact, error) {
	a, ok := v.A.Manifest.Artifact(kind, name)
	if !ok {
		return nil, fmt.Errorf("%w: %ss/%s (%ss here: %s)", ErrNotFound, kind, name, kind, strings.Join(v.names(kind), ", "))
	}
	return a, nil
}

// kindDirs maps the top directories of the layout to artifact kinds.
var kindDirs = map[string]string{"images": manifest.KindImage, "containers": manifest.KindContainer, "volumes": manifest.KindVolume, "artifacts": manifest.KindArtifact}

// artifactEntry resolves rel in an OCI artifact's directory: its manifest
// as the source had it, its config, and its blobs by number, each a blob
// of the archive read in place.
func (v *View) artifactEntry(a *manifest.Artifact, full string, rel []string) (*Entry, error) {
	name := full[strings.LastIndexByte(full, '/')+1:]
	blob := func(d manifest.Descriptor) (*Entry, error) {
		e, ok := v.A.Manifest.Entry(manifest.BlobName(d.Digest))
		if !ok {
			return nil, fmt.Errorf("%w: %s (not in the archive)", ErrNotFound, full)
		}
		m := &manifest.Member{Path: strings.Join(rel, "/"), Entry: e.Name, Size: e.Size, SHA256: e.SHA256}
		return &Entry{Path: full, Name: name, Type: fileindex.TypeReg, Mode: 0o444, Virtual: true, Size: e.Size, Member: m, offset: e.Offset,
			ModTime: v.A.Manifest.Acquisition.Finished}, nil
	}
	switch {
	case len(rel) == 1 && rel[0] == "manifest.json":
		return blob(a.Manifest)
	case len(rel) == 1 && rel[0] == "config":
		return blob(a.Config)
	case len(rel) == 1 && rel[0] == "blobs":
		return v.dir(full, name), nil
	case len(rel) == 2 && rel[0] == "blobs":
		n, err := strconv.Atoi(rel[1])
		if err == nil && n >= 0 && n < len(a.Blobs) && strconv.Itoa(n) == rel[1] && !a.Blobs[n].Missing {
			return blob(a.Blobs[n].Descriptor)
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrNotFound, full)
}

// artifactNames lists a directory of an OCI artifact.
func artifactNames(a *manifest.Artifact, rel []string) []string {
	if len(rel) == 0 {
		return []string{"blobs", "config", "manifest.json"}
	}
	var out []string
	for i, b := range a.Blobs {
		if !b.Missing {
			out = append(out, strconv.Itoa(i))
		}
	}
	return out
}

// memberEntry resolves rel among a container's own files: a file, or a
// directory that holds some.
func (v *View) memberEntry(a *manifest.Artifact, full, rel string) (*Entry, error) {
	if a.Container == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, full)
	}
	for i := range a.Container.Members {
		m := &a.Container.Members[i]
		if m.Path == rel {
			e, ok := v.A.Manifest.Entry(m.Entry)
			if !ok {
				return nil, fmt.Errorf("%w: %s: member %s is not in the archive", manifest.ErrCorrupt, full, m.Entry)
			}
			name := full[strings.LastIndexByte(full, '/')+1:]
			mode := uint32(0o444)
			if sensitiveMember(rel) {
				mode = 0o400
			}
			return &Entry{Path: full, Name: name, Type: fileindex.TypeReg, Mode: mode, Virtual: true, Size: m.Size, Member: m, offset: e.Offset,
				ModTime: v.A.Manifest.Acquisition.Finished}, nil
		}
	}
	for _, m := range a.Container.Members {
		if strings.HasPrefix(m.Path, rel+"/") {
			d := v.dir(full, full[strings.LastIndexByte(full, '/')+1:])
			if sensitiveMember(rel) {
				d.Mode = 0o500
			}
			return d, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrNotFound, full)
}

// sensitiveMember reports whether a container's own file (or directory),
// by its path under containers/<name>/, holds what only the examiner who
// mounted should read: process memory and environments (keys, tokens),
// inspect.json (the environment again) and the logs. The mount is shown
// to other local users under --allow-other; these are 0400 (0500 for
// directories) there, owned by the mounting user.
func sensitiveMember(rel string) bool {
	top, _, _ := strings.Cut(rel, "/")
	return top == "memory" || top == "logs" || rel == "inspect.json"
}

// memberNames lists the names directly under rel ("" for the top) among a
// container's own files.
func memberNames(a *manifest.Artifact, rel string) []string {
	if a.Container == nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	prefix := ""
	if rel != "" {
		prefix = rel + "/"
	}
	for _, m := range a.Container.Members {
		r, ok := strings.CutPrefix(m.Path, prefix)
		if !ok || r == "" {
			continue
		}
		if i := strings.IndexByte(r, '/'); i >= 0 {
			r = r[:i]
		}
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	sort.Strings(out)
	return out
}

func (v *View) names(kind string) []string {
	var n []string
	for _, a := range v.A.Manifest.Artifacts {
		if a.Kind == kind {
			n = append(n, a.Name)
		}
	}
	sort.Strings(n)
	return n
}

func (v *View) layered(a *manifest.Artifact, upto int, raw bool) (*layers.Stack, []hashing.Digest, error) {
	l := &layers.Stack{Raw: raw}
	var ds []hashing.Digest
	if upto < 0 {
		// An image of a config alone: an empty tree.
		ix, err := archive.EmptyIndex()
		if err != nil {
			return nil, nil, err
		}
		return &layers.Stack{Raw: raw, Indexes: []*fileindex.Index{ix}}, []hashing.Digest{{}}, nil
	}
	from := 0
	if raw {
		from = upto
	}
	for i := from; i <= upto; i++ {
		ix, err := v.A.Index(a.Layers[i].Digest)
		if err != nil {
			return nil, nil, err
		}
		l.Indexes = append(l.Indexes, ix)
		ds = append(ds, a.Layers[i].Digest)
	}
	return l, ds, nil
}

// Stat resolves a view path.
func (v *View) Stat(p string) (*Entry, error) {
	e, _, err := v.route(clean(p))
	return e, err
}

// route resolves c, a path of the mount layout (DESIGN.md "The mount"), to
// its entry and, for a directory of amber's own (not a layer tree's), the
// names it holds: the one table of the layout, so that stat and readdir
// cannot disagree.
//
//	manifest.json
//	images/NAME/{config.json,history,Dockerfile}
//	images/NAME/rootfs/..., layers/N/..., layers/N.trailing, stages/N/...
//	containers/NAME/{rootfs,pristine,changes}/..., and its members
//	volumes/NAME/...
//	artifacts/NAME/{manifest.json,config,blobs/N}
func (v *View) route(c []string) (*Entry, []string, error) {
	full := strings.Join(c, "/")
	notFound := fmt.Errorf("%w: %s", ErrNotFound, full)
	if len(c) == 0 {
		names := []string{"images", "manifest.json"}
		for _, top := range []string{"containers", "volumes", "artifacts"} {
			if len(v.names(kindDirs[top])) > 0 {
				names = append(names, top)
			}
		}
		sort.Strings(names)
		return v.dir("", ""), names, nil
	}
	if len(c) == 1 && c[0] == "manifest.json" {
		return v.file(full, c[0], v.A.ManifestBytes), nil, nil
	}
	kind := kindDirs[c[0]]
	if kind == "" {
		return nil, nil, notFound
	}
	if len(c) == 1 {
		return v.dir(full, c[0]), v.names(kind), nil
	}
	a, err := v.artifact(kind, c[1])
	if err != nil {
		return nil, nil, err
	}
	r := artifactRoute{v: v, a: a, c: c, full: full, ai: v.artifactIndex(a), nl: len(a.Layers)}
	switch kind {
	case manifest.KindVolume:
		// A named volume's contents: volumes/NAME is its tree's root.
		return r.tree(0, true, v.viewID(r.ai, "layers", 0), 2)
	case manifest.KindArtifact:
		return r.ociArtifact()
	case manifest.KindContainer:
		return r.container()
	}
	return r.image()
}

// artifactRoute resolves c below one artifact's directory (c[1] names a).
type artifactRoute struct {
	v      *View
	a      *manifest.Artifact
	c      []string
	full   string
	ai, nl int // the artifact's place in the manifest, its layer count
}

func (r artifactRoute) notFound() error { return fmt.Errorf("%w: %s", ErrNotFound, r.full) }

// tree resolves the rest of c inside layers 0..upto of the artifact (raw:
// layer upto alone, as stored), the tree's root at c[:at].
func (r artifactRoute) tree(upto int, raw bool, id, at int) (*Entry, []string, error) {
	t, ds, err := r.v.layered(r.a, upto, raw)
	if err != nil {
		return nil, nil, err
	}
	e, err := r.v.treeEntry(t, ds, id, strings.Join(r.c[:at], "/"), r.c[at:])
	if e != nil && raw {
		e.first = upto // a layer shown alone (layers/N, changes/, a volume)
	}
	return e, nil, err
}

func (r artifactRoute) ociArtifact() (*Entry, []string, error) {
	if len(r.c) == 2 {
		return r.v.dir(r.full, r.c[1]), artifactNames(r.a, nil), nil
	}
	e, err := r.v.artifactEntry(r.a, r.full, r.c[2:])
	if err != nil || !e.IsDir() {
		return e, nil, err
	}
	return e, artifactNames(r.a, r.c[2:]), nil
}

func (r artifactRoute) container() (*Entry, []string, error) {
	c, v, a, ai, nl := r.c, r.v, r.a, r.ai, r.nl
	if len(c) == 2 {
		names := append([]string{"changes", "pristine", "rootfs"}, memberNames(a, "")...)
		sort.Strings(names)
		return v.dir(r.full, c[1]), names, nil
	}
	switch c[2] {
	case "rootfs":
		return r.tree(nl-1, false, v.viewID(ai, "rootfs", 0), 3)
	case "pristine":
		if nl < 2 {
			return nil, nil, r.notFound()
		}
		return r.tree(nl-2, false, v.viewID(ai, "stages", nl-2), 3)
	case "changes":
		return r.tree(nl-1, true, v.viewID(ai, "layers", nl-1), 3)
	}
	rel := strings.Join(c[2:], "/")
	e, err := v.memberEntry(a, r.full, rel)
	if err != nil || !e.IsDir() {
		return e, nil, err
	}
	return e, memberNames(a, rel), nil
}

func (r artifactRoute) image() (*Entry, []string, error) {
	c, v, a, ai, nl := r.c, r.v, r.a, r.ai, r.nl
	if len(c) == 2 {
		return v.dir(r.full, c[1]), []string{"Dockerfile", "config.json", "history", "layers", "rootfs", "stages"}, nil
	}
	switch c[2] {
	case "config.json", "history", "Dockerfile":
		if len(c) != 3 {
			return nil, nil, r.notFound()
		}
		b, err := v.configFile(a, c[2], r.full)
		if err != nil {
			return nil, nil, err
		}
		return v.file(r.full, c[2], b), nil, nil
	case "rootfs":
		return r.tree(nl-1, false, v.viewID(ai, "rootfs", 0), 3)
	case "layers", "stages":
		return r.layerDirs()
	}
	return nil, nil, r.notFound()
}

// layerDirs resolves images/NAME/layers/... and stages/...
func (r artifactRoute) layerDirs() (*Entry, []string, error) {
	c, v, a, nl := r.c, r.v, r.a, r.nl
	if len(c) == 3 {
		var names []string
		for i := range a.Layers {
			names = append(names, strconv.Itoa(i))
			if c[2] == "layers" && a.Layers[i].Trailing != nil {
				names = append(names, strconv.Itoa(i)+trailingSuffix)
			}
		}
		return v.dir(r.full, c[2]), names, nil
	}
	if c[2] == "layers" && len(c) == 4 && strings.HasSuffix(c[3], trailingSuffix) {
		e, err := v.trailing(a, r.full)
		return e, nil, err
	}
	n, err := strconv.Atoi(c[3])
	if err != nil || n < 0 || n >= nl || strconv.Itoa(n) != c[3] {
		return nil, nil, fmt.Errorf("%w: %s (image %s has layers 0 to %d)", ErrNotFound, r.full, a.Name, nl-1)
	}
	return r.tree(n, c[2] == "layers", v.viewID(r.ai, c[2], n), 4)
}

// configFile is an image's config.json as stored, or its history or
// Dockerfile rendered from it.
func (v *View) configFile(a *manifest.Artifact, name, full string) ([]byte, error) {
	b, err := v.A.ReadEntry(manifest.BlobName(a.Config.Digest), imageconfig.MaxConfigSize)
	if err != nil || name == "config.json" {
		return b, err
	}
	cfg, err := imageconfig.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", manifest.ErrCorrupt, full, err)
	}
	if name == "history" {
		var sizes []int64
		for _, l := range a.Layers {
			sizes = append(sizes, l.Size)
			if l.Missing {
				sizes[len(sizes)-1] = -1
			}
		}
		return imageconfig.HistoryText(cfg, sizes), nil
	}
	return imageconfig.Dockerfile(cfg), nil
}

// trailingSuffix names the file of a layer's trailing data: layers/N.trailing.
const trailingSuffix = ".trailing"

// trailing is the file layers/N.trailing of image a: the data after layer
// N's end-of-archive marker, read in place from the stored blob, there only
// when the layer has some.
func (v *View) trailing(a *manifest.Artifact, full string) (*Entry, error) {
	name := full[strings.LastIndexByte(full, '/')+1:]
	ns := strings.TrimSuffix(name, trailingSuffix)
	n, err := strconv.Atoi(ns)
	if err != nil || n < 0 || n >= len(a.Layers) || strconv.Itoa(n) != ns || a.Layers[n].Trailing == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, full)
	}
	l := &a.Layers[n]
	t := l.Trailing
	blob, ok := v.A.Blob(manifest.BlobName(l.Digest))
	if !ok {
		return nil, fmt.Errorf("%w: %s: layer %s is not in the archive", manifest.ErrCorrupt, full, l.Digest)
	}
	// The manifest is read from the evidence: the range must be the end
	// of the blob, never a read beside it.
	if t.Offset < 0 || t.Size <= 0 || t.Offset > blob.Size || t.Size != blob.Size-t.Offset {
		return nil, fmt.Errorf("%w: %s: trailing data of %d bytes at %d is not the end of the %d-byte layer", manifest.ErrCorrupt, full, t.Size, t.Offset, blob.Size)
	}
	// Served as a container's own files are, a section of the tar read in
	// place and checked against its SHA-256 (cat, the mount). Its Entry
	// names no tar member, so nothing takes it for the whole blob; the
	// mount keys its content check by it.
	m := &manifest.Member{Path: "layers/" + name, Entry: blob.Name + trailingSuffix, Size: t.Size, SHA256: t.SHA256}
	return &Entry{Path: full, Name: name, Type: fileindex.TypeReg, Mode: 0o444, Virtual: true, Size: t.Size, Member: m, offset: blob.Offset + t.Offset,
		ModTime: v.A.Manifest.Acquisition.Finished}, nil
}

func (v *View) treeEntry(t *layers.Stack, ds []hashing.Digest, id int, prefix string, rest []string) (*Entry, error) {
	rel := strings.Join(rest, "/")
	n, ok, err := t.Lookup(rel)
	if err != nil {
		return nil, err
	}
	full := prefix
	if rel != "" {
		full += "/" + rel
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, full)
	}
	return v.nodeEntry(t, ds, id, full, rel, &n), nil
}

func (v *View) nodeEntry(t *layers.Stack, ds []hashing.Digest, id int, full, rel string, n *layers.Node) *Entry {
	name := full[strings.LastIndexByte(full, '/')+1:]
	return &Entry{Path: full, Name: name, Type: n.Rec.Type, Mode: n.Rec.Mode, Size: n.Rec.Size, ModTime: n.Rec.ModTime, Node: n, ViewID: id, Merged: !t.Raw, tree: t, digests: ds, rel: rel}
}

// Child resolves name in directory e, reusing e's tree (no walk from the
// top): what a file system lookup needs.
func (v *View) Child(e *Entry, name string) (*Entry, error) {
	if !e.IsDir() {
		return nil, fmt.Errorf("%w: %s", ErrNotDir, e.Path)
	}
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return nil, fmt.Errorf("%w: %s/%s", ErrNotFound, e.Path, name)
	}
	if e.Node == nil {
		p := name
		if e.Path != "" {
			p = e.Path + "/" + name
		}
		return v.Stat(p)
	}
	rel := name
	if e.rel != "" {
		rel = e.rel + "/" + name
	}
	n, ok, err := e.tree.Lookup(rel)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s/%s", ErrNotFound, e.Path, name)
	}
	ce := v.nodeEntry(e.tree, e.digests, e.ViewID, e.Path+"/"+name, rel, &n)
	ce.first = e.first
	return ce, nil
}

// ReadDir lists a directory of the view.
func (v *View) ReadDir(p string) ([]*Entry, error) {
	e, err := v.Stat(p)
	if err != nil {
		return nil, err
	}
	return v.ReadDirOf(e)
}

// ReadDirOf lists directory e, reusing its tree (no walk from the top):
// what a file system's READDIR needs.
func (v *View) ReadDirOf(e *Entry) ([]*Entry, error) {
	if !e.IsDir() {
		return nil, fmt.Errorf("%w: %s", ErrNotDir, e.Path)
	}
	join := func(n string) string {
		if e.Path == "" {
			return n
		}
		return e.Path + "/" + n
	}
	if e.Node != nil {
		nodes, err := e.tree.ReadDir(e.rel)
		if err != nil {
			return nil, err
		}
		out := make([]*Entry, 0, len(nodes))
		// The entries point into nodes: one allocation for the directory.
		for i := range nodes {
			n := &nodes[i]
			ce := v.nodeEntry(e.tree, e.digests, e.ViewID, join(n.Rec.Name()), n.Rec.Path, n)
			ce.first = e.first
			out = append(out, ce)
		}
		return out, nil
	}
	_, names, err := v.route(clean(e.Path))
	if err != nil {
		return nil, err
	}
	out := make([]*Entry, 0, len(names))
	for _, n := range names {
		ce, err := v.Stat(join(n))
		if err != nil {
			return nil, err
		}
		out = append(out, ce)
	}
	return out, nil
}

// Open returns the content of a regular file.
func (v *View) Open(e *Entry) (io.Reader, error) {
	if e.Type != fileindex.TypeReg {
		return nil, fmt.Errorf("%s is not a regular file", e.Path)
	}
	if e.Member != nil {
		return v.A.Section(e.offset, e.Size), nil
	}
	if e.Virtual {
		return bytes.NewReader(e.data), nil
	}
	return v.A.Content(e.LayerDigest(), &e.Node.Rec)
}

// Walk calls fn for e and, if it is a directory, everything below it,
// depth first in name order.
func (v *View) Walk(e *Entry, fn func(e *Entry) error) error {
	if err := fn(e); err != nil {
		return err
	}
	if !e.IsDir() {
		return nil
	}
	kids, err := v.ReadDir(e.Path)
	if err != nil {
		return err
	}
	for _, k := range kids {
		if err := v.Walk(k, fn); err != nil {
			return err
		}
	}
	return nil
}

// TypeName names an entry type as amber's JSON outputs do.
func TypeName(t byte) string {
	switch t {
	case fileindex.TypeDir:
		return "dir"
	case fileindex.TypeSymlink:
		return "symlink"
	case fileindex.TypeChar:
		return "char"
	case fileindex.TypeBlock:
		return "block"
	case fileindex.TypeFifo:
		return "fifo"
	case fileindex.TypeLink:
		return "hardlink"
	}
	return "file"
}

// ModeString renders type and permissions as ls -l does.
func ModeString(typ byte, mode uint32) string {
	// ls folds setuid/setgid/sticky into the execute columns.
	perm := []byte(os.FileMode(mode & 0o777).String())[1:]
	if mode&0o4000 != 0 {
		perm[2] = sOr(perm[2], 's', 'S')
	}
	if mode&0o2000 != 0 {
		perm[5] = sOr(perm[5], 's', 'S')
	}
	if mode&0o1000 != 0 {
		perm[8] = sOr(perm[8], 't', 'T')
	}
	letter := byte('-')
	switch typ {
	case fileindex.TypeDir:
		letter = 'd'
	case fileindex.TypeSymlink:
		letter = 'l'
	case fileindex.TypeChar:
		letter = 'c'
	case fileindex.TypeBlock:
		letter = 'b'
	case fileindex.TypeFifo:
		letter = 'p'
	case fileindex.TypeLink:
		letter = 'h'
	}
	return string(letter) + string(perm)
}

func sOr(x byte, set, unset byte) byte {
	if x == 'x' {
		return set
	}
	return unset
}

// RebaseLink returns the target a symlink at p (a path inside a tree) has
// once resolved as inside a container's root, as a path relative to p's
// directory: an absolute target starts at the tree's root, and ".." never
// climbs above it (as under chroot). Followed on a mount, it stays inside
// the view wherever the view is mounted, instead of reaching into the
// examiner's own host ("/etc/shadow", "../../../../etc/shadow").
func RebaseLink(p, target string) string {
	dir := path.Dir("/" + strings.Trim(p, "/"))
	abs := target
	if !strings.HasPrefix(target, "/") {
		abs = path.Join(dir, target)
	}
	abs = path.Clean("/" + abs) // "/.." is "/": the root's parent is itself
	from, to := clean(dir), clean(abs)
	i := 0
	for i < len(from) && i < len(to) && from[i] == to[i] {
		i++
	}
	var parts []string
	for range from[i:] {
		parts = append(parts, "..")
	}
	parts = append(parts, to[i:]...)
	if len(parts) == 0 {
		return "."
	}
	return strings.Join(parts, "/")
}
