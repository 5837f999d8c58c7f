package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/internal/textsafe"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/registry"
	"github.com/amber-forensics/amber/treediff"
	"github.com/amber-forensics/amber/view"
)

type diffOptions struct {
	json    bool
	prefix  string
	ignore  []string
	kinds   string
	content bool
}

func (e *env) newDiffCmd() *cobra.Command {
	o := &diffOptions{}
	c := &cobra.Command{
		Use:   "diff ARCHIVE containers/NAME | ARCHIVE VIEW1 VIEW2 | ARCHIVE1:VIEW1 ARCHIVE2:VIEW2",
		Short: "Compare two trees by content and metadata, like docker diff but content-aware",
		Long: `diff lists what differs between two trees of the mount layout, one path per
line as docker diff prints it (A added, C changed, D deleted), followed by
what changed: content (SHA-256), size, type, mode, owner, mtime, target
(symlinks), xattrs, device. C is printed only when something really
changed: a file whose content changed while size and mtime were kept is
found; a directory listed only because something below it changed is
marked [children]. Added and deleted directories list everything under
them.

  amber diff case.tar.zst containers/NAME        the container against its image (pristine -> rootfs)
  amber diff case.tar.zst images/A images/B       two trees of one archive (images/X means its rootfs)
  amber diff a.tar.zst:images/A b.tar.zst:images/B    trees of two archives (or plain docker-save tarballs)
  amber diff a.tar.zst:containers/C/rootfs ./dir       against a local directory (or dir:PATH)

Views: images/NAME[/rootfs|/stages/N|/layers/N], containers/NAME[/rootfs|/pristine|/changes],
volumes/NAME, and any directory below them. Only the file indexes are read
(--content reads the files it shows).`,
		Example: `  amber diff case.tar.zst containers/wordpress
  amber diff case.tar.zst containers/wordpress --path /etc --ignore mtime
  amber diff case.tar.zst images/app_v1/stages/1 images/app_v1/stages/2 --kinds AD
  amber diff old.tar.zst:images/app_v1 new.tar.zst:images/app_v2 --json | jq -r 'select(.kind=="C") | .path'
  amber diff case.tar.zst containers/wordpress --content --path /etc`,
		Args: argsRange(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error { return e.runDiff(o, args) },
	}
	f := c.Flags()
	f.BoolVar(&o.json, "json", false, "one JSON object per line: {kind, path, path_base64?, what[], children_only, old{}, new{}}")
	f.StringVar(&o.prefix, "path", "", "only paths under this one (e.g. /etc)")
	f.StringSliceVar(&o.ignore, "ignore", nil, "changes of these fields do not count: mtime, mode, owner, xattrs, size, content, target, type, device")
	f.StringVar(&o.kinds, "kinds", "", "only these kinds, e.g. AD or C")
	f.BoolVar(&o.content, "content", false, "show a unified diff of each changed text file up to 64 KiB (needs diff(1))")
	return c
}

// treeRef is one side: an archive and a view path in it, or a local
// directory.
type treeRef struct {
	archive, path string
	local         string
}

func parseDiffArgs(args []string) (a, b treeRef, err error) {
	split := func(s string) (treeRef, bool) {
		i := strings.LastIndex(s, ":")
		if i <= 0 {
			return treeRef{}, false
		}
		// docker://HOST:PORT/REPO:TAG has colons of its own: a view
		// follows only as a path (images/NAME...), never a bare word like
		// a tag or a digest's hex.
		if registry.IsRef(s) && !strings.Contains(s[i+1:], "/") {
			return treeRef{}, false
		}
		return treeRef{archive: s[:i], path: s[i+1:]}, true
	}
	local := func(s string) (treeRef, bool) {
		if d, ok := strings.CutPrefix(s, "dir:"); ok {
			return treeRef{local: d}, true
		}
		if !strings.Contains(s, ":") && isDir(s) && !isPath(filepath.Join(s, "oci-layout")) {
			return treeRef{local: s}, true
		}
		return treeRef{}, false
	}
	switch len(args) {
	case 2:
		ra, okA := split(args[0])
		rb, okB := split(args[1])
		if la, ok := local(args[0]); ok && okB {
			return la, rb, nil
		}
		if lb, ok := local(args[1]); ok && okA {
			return ra, lb, nil
		}
		if okA && okB {
			return ra, rb, nil
		}
		if !okA && !okB {
			p := strings.Trim(args[1], "/")
			if k, n, ok := strings.Cut(p, "/"); ok && k == "containers" && !strings.Contains(n, "/") {
				return treeRef{archive: args[0], path: p + "/pristine"}, treeRef{archive: args[0], path: p + "/rootfs"}, nil
			}
			return a, b, usageError{fmt.Errorf("diff ARCHIVE %s: give containers/NAME, or two views", args[1])}
		}
	case 3:
		if strings.Contains(args[1], ":") || strings.Contains(args[2], ":") {
			break
		}
		return treeRef{archive: args[0], path: args[1]}, treeRef{archive: args[0], path: args[2]}, nil
	}
	return a, b, usageError{fmt.Errorf("diff: malformed references %q; see amber diff --help", strings.Join(args, " "))}
}

// treeRoot resolves a view path to a directory; an artifact's own
// directory means its rootfs.
func treeRoot(v *view.View, p string) (*view.Entry, error) {
	c := strings.Split(strings.Trim(p, "/"), "/")
	if len(c) == 2 && (c[0] == "images" || c[0] == "containers") {
		p = strings.Trim(p, "/") + "/rootfs"
	}
	en, err := v.Stat(p)
	if err != nil {
		return nil, err
	}
	if !en.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a directory", view.ErrNotDir, p)
	}
	return en, nil
}

// openTree opens one side of a diff; done releases it.
func (e *env) openTree(r treeRef, opened map[string]*view.View) (treediff.Tree, *view.View, func(), error) {
	if r.local != "" {
		t, err := treediff.OpenDir(r.local)
		if err != nil {
			return nil, nil, nil, err
		}
		return t, nil, func() { t.Close() }, nil
	}
	done := func() {}
	v, ok := opened[r.archive]
	if !ok {
		a, d, err := e.openAny(r.archive)
		if err != nil {
			return nil, nil, nil, err
		}
		v, done = &view.View{A: a}, d
		opened[r.archive] = v
	}
	root, err := treeRoot(v, r.path)
	if err != nil {
		done()
		return nil, nil, nil, err
	}
	return treediff.ViewTree{V: v, Dir: root}, v, done, nil
}

func (e *env) runDiff(o *diffOptions, args []string) error {
	ra, rb, err := parseDiffArgs(args)
	if err != nil {
		return err
	}
	opened := map[string]*view.View{}
	ta, va, doneA, err := e.openTree(ra, opened)
	if err != nil {
		return err
	}
	defer doneA()
	tb, vb, doneB, err := e.openTree(rb, opened)
	if err != nil {
		return err
	}
	defer doneB()
	opts := treediff.Options{Prefix: o.prefix, Kinds: strings.ToUpper(o.kinds), Ignore: map[string]bool{}}
	if opts.Prefix != "" && !strings.HasPrefix(opts.Prefix, "/") {
		opts.Prefix = "/" + opts.Prefix
	}
	for _, f := range o.ignore {
		opts.Ignore[f] = true
	}
	changes, err := treediff.Compare(ta, tb, opts)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetEscapeHTML(false)
	for _, ch := range changes {
		if o.json {
			out := struct {
				Kind       string `json:"kind"`
				PathBase64 string `json:"path_base64,omitempty"`
				treediff.Change
			}{Kind: string(ch.Kind), Change: ch}
			if !utf8.ValidString(ch.Path) {
				out.PathBase64 = base64.StdEncoding.EncodeToString([]byte(ch.Path))
				out.Change.Path = strings.ToValidUTF8(ch.Path, "\uFFFD")
			}
			if err := enc.Encode(out); err != nil {
				return err
			}
			continue
		}
		line := fmt.Sprintf("%c %s", ch.Kind, escapeName(ch.Path))
		switch {
		case ch.ChildrenOnly:
			line += "  [children]"
		case len(ch.What) > 0:
			line += "  [" + strings.Join(ch.What, " ") + "]"
		}
		fmt.Fprintln(e.stdout, line)
		if o.content && ch.Kind == 'C' && contains(ch.What, treediff.FieldContent) {
			e.showContentDiff(ta, tb, va, vb, ra, rb, ch.Path)
		}
	}
	return e.printFindings(o, opts.Prefix, []treeRef{ra, rb}, []*view.View{va, vb})
}

// findingKinds are the anomalies diff shows after the changes: what the
// trees' own bytes cannot show. A lower layer changed in the runtime's
// store is in both the pristine tree and the container's, so no tree
// comparison finds it; the capture did, against the layer's record.
var findingKinds = map[string]bool{"layer-modified-on-disk": true, "layer-digest-mismatch": true}

// printFindings prints, after the changes, the findings of the archives
// compared that concern the trees compared: those on a layer of theirs
// (matched by the layer's digest: a layer shared by two images is
// recorded once, against the first) and those on the artifacts
// themselves, one line each: "! PATH  [kind: where: detail]".
func (e *env) printFindings(o *diffOptions, prefix string, refs []treeRef, views []*view.View) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetEscapeHTML(false)
	seen := map[string]bool{}
	for i, v := range views {
		if v == nil || v.A == nil || seen[refs[i].archive] {
			continue
		}
		seen[refs[i].archive] = true
		m := v.A.Manifest
		names, digests := artifactsOf(m, refs[i].path)
		for _, an := range m.Anomalies {
			if !findingKinds[an.Kind] || !names[an.Artifact] && !digests[layerOf(m, an)] {
				continue
			}
			if prefix != "" && prefix != "/" && an.Path != prefix && !strings.HasPrefix(an.Path, prefix+"/") {
				continue
			}
			where := anomalyWhere(m, an)
			if o.json {
				out := map[string]any{"kind": "!", "finding": an.Kind, "path": an.Path, "where": where, "detail": an.Detail}
				if len(views) > 1 && refs[0].archive != refs[1].archive {
					out["archive"] = refs[i].archive
				}
				if err := enc.Encode(out); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintf(e.stdout, "! %s  [%s: %s: %s]\n", escapeName(an.Path), an.Kind, escapeName(where), escapeName(an.Detail))
		}
	}
	return nil
}

// artifactsOf names the artifacts a view path of the mount layout shows,
// and the digests of their layers: images/NAME/... its image,
// containers/NAME/... the container and its image (the pristine tree and
// the layers under its changes).
func artifactsOf(m *manifest.Manifest, p string) (names, digests map[string]bool) {
	names, digests = map[string]bool{}, map[string]bool{}
	parts := strings.SplitN(strings.Trim(p, "/"), "/", 3)
	if len(parts) < 2 {
		return names, digests
	}
	add := func(a *manifest.Artifact) {
		names[a.Name] = true
		for _, l := range a.Layers {
			digests[l.Digest.String()] = true
		}
	}
	kind := map[string]string{"images": manifest.KindImage, "containers": manifest.KindContainer, "volumes": manifest.KindVolume}[parts[0]]
	a, ok := m.Artifact(kind, parts[1])
	if !ok {
		return names, digests
	}
	add(a)
	if a.Kind == manifest.KindContainer && !a.ImageID.IsZero() {
		for i := range m.Artifacts {
			if m.Artifacts[i].Kind == manifest.KindImage && m.Artifacts[i].ImageID == a.ImageID {
				add(&m.Artifacts[i])
			}
		}
	}
	return names, digests
}

// layerOf is the digest of the layer an anomaly is about ("" when none).
func layerOf(m *manifest.Manifest, an manifest.Anomaly) string {
	for _, a := range m.Artifacts {
		if a.Name == an.Artifact && a.Kind != manifest.KindContainer && an.Layer >= 0 && an.Layer < len(a.Layers) {
			return a.Layers[an.Layer].Digest.String()
		}
	}
	return ""
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// showContentDiff prints diff -u of a changed small text file.
func (e *env) showContentDiff(ta, tb treediff.Tree, va, vb *view.View, ra, rb treeRef, rel string) {
	read := func(t treediff.Tree, v *view.View, r treeRef) ([]byte, string, bool) {
		var b []byte
		label := r.local + rel
		if r.local != "" {
			st, err := os.Lstat(filepath.Join(r.local, rel))
			if err != nil || !st.Mode().IsRegular() || st.Size() > 64<<10 {
				return nil, label, false
			}
			if b, err = os.ReadFile(filepath.Join(r.local, rel)); err != nil {
				return nil, label, false
			}
		} else {
			root := t.(treediff.ViewTree).Dir
			label = root.Path + rel
			en, err := v.Stat(root.Path + rel)
			if err != nil || en.Type != fileindex.TypeReg || en.Size > 64<<10 {
				return nil, label, false
			}
			rd, err := v.Open(en)
			if err != nil {
				return nil, label, false
			}
			if b, err = io.ReadAll(rd); err != nil {
				return nil, label, false
			}
		}
		if bytes.IndexByte(b, 0) >= 0 || !utf8.Valid(b) {
			return nil, label, false
		}
		return b, label, true
	}
	ba, la, okA := read(ta, va, ra)
	bb, lb, okB := read(tb, vb, rb)
	if !okA || !okB {
		fmt.Fprintln(e.stdout, "    (not shown: binary or over 64 KiB)")
		return
	}
	e.stdout.Write(printableDiff(unifiedDiff(escapeName(la), escapeName(lb), ba, bb)))
}

// unifiedDiff is diff -u of two contents under two labels (nil when it
// cannot run): amber diff --content and amber browse show the same.
func unifiedDiff(la, lb string, ba, bb []byte) []byte {
	dir, err := os.MkdirTemp("", "amber-diff")
	if err != nil {
		return nil
	}
	defer os.RemoveAll(dir)
	fa, fb := dir+"/a", dir+"/b"
	os.WriteFile(fa, ba, 0o600)
	os.WriteFile(fb, bb, 0o600)
	out, _ := exec.Command("diff", "-u", "--label", la, "--label", lb, fa, fb).Output()
	return out
}

// printableDiff quotes the lines of a content diff that hold control
// characters: a file of the evidence can hold escape sequences and
// carriage returns meant for whoever looks at it. The mark of the line
// (' ', '+', '-') stays in front.
func printableDiff(out []byte) []byte {
	var b bytes.Buffer
	for _, line := range strings.SplitAfter(string(out), "\n") {
		body, nl := strings.CutSuffix(line, "\n")
		switch {
		case textsafe.Clean(body):
		case strings.IndexByte(" +-", body[0]) >= 0:
			body = body[:1] + escapeName(body[1:])
		default:
			body = escapeName(body)
		}
		b.WriteString(body)
		if nl {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}
