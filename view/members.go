// A container's own files (memory, logs, inspect.json ...) and an OCI
// artifact's blobs: members of the archive shown as files of the layout.

package view

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/manifest"
)

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

// memberEntry resolves rel among a container's (or a pod's) own files: a
// file, or a directory that holds some.
func (v *View) memberEntry(a *manifest.Artifact, full, rel string) (*Entry, error) {
	members := a.Members()
	if members == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, full)
	}
	for i := range members {
		m := &members[i]
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
	for _, m := range members {
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
	seen := map[string]bool{}
	var out []string
	prefix := ""
	if rel != "" {
		prefix = rel + "/"
	}
	for _, m := range a.Members() {
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
