package view

import (
	"errors"
	"fmt"
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
var kindDirs = map[string]string{"images": manifest.KindImage, "containers": manifest.KindContainer, "volumes": manifest.KindVolume,
	"artifacts": manifest.KindArtifact, "pods": manifest.KindPod}

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
//	pods/NAME/{sandbox.json,containers.json}
func (v *View) route(c []string) (*Entry, []string, error) {
	full := strings.Join(c, "/")
	if len(c) == 0 {
		names := []string{"images", "manifest.json"}
		for _, top := range []string{"containers", "volumes", "artifacts", "pods"} {
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
		return nil, nil, fmt.Errorf("%w: %s", ErrNotFound, full)
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
	case manifest.KindPod:
		return r.members()
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

// members resolves a pod's directory: its own files alone.
func (r artifactRoute) members() (*Entry, []string, error) {
	if len(r.c) == 2 {
		return r.v.dir(r.full, r.c[1]), memberNames(r.a, ""), nil
	}
	rel := strings.Join(r.c[2:], "/")
	e, err := r.v.memberEntry(r.a, r.full, rel)
	if err != nil || !e.IsDir() {
		return e, nil, err
	}
	return e, memberNames(r.a, rel), nil
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
