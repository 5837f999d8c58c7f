package archive

import (
	"fmt"
	"strings"

	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
)

// describe names what a tar byte range holds, as far as the manifest tells.
func (v *verifier) describe(from, to int64) string {
	if v.a == nil {
		return " (the manifest is unreadable, so what this range holds cannot be named)"
	}
	var parts []string
	m := v.a.Manifest
	if from < v.a.Trailer.ManifestOffset+v.a.Trailer.ManifestSize && to > v.a.Trailer.ManifestOffset {
		parts = append(parts, "amber/manifest.json")
	}
	if to > v.a.Trailer.TarOffset {
		parts = append(parts, TrailerName)
	}
	for _, e := range m.Entries {
		if e.HeaderOffset >= to || e.Offset+e.Size+511 < from {
			continue
		}
		desc := e.Name + v.what(e.Name)
		if d, err := hashing.Parse(strings.TrimPrefix(e.Name, "blobs/sha256/")); err == nil {
			if _, ok := v.a.Layer(d); ok {
				desc += v.filesIn(d, from-e.Offset, to-e.Offset)
			}
		}
		parts = append(parts, desc)
		if len(parts) > 4 {
			parts = append(parts, "...")
			break
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "; it holds " + strings.Join(parts, ", ")
}

// what says which artifact a blob belongs to.
func (v *verifier) what(name string) string {
	var uses []string
	for _, a := range v.a.Manifest.Artifacts {
		if name == manifest.BlobName(a.Config.Digest) {
			uses = append(uses, "config of "+a.Kind+"s/"+a.Name)
		}
		if name == manifest.BlobName(a.Manifest.Digest) {
			uses = append(uses, "image manifest of "+a.Kind+"s/"+a.Name)
		}
		for i, l := range a.Layers {
			if name == manifest.BlobName(l.Digest) {
				uses = append(uses, fmt.Sprintf("layer %d of %ss/%s", i, a.Kind, a.Name))
			}
			if name == manifest.IndexName(l.Digest) {
				uses = append(uses, fmt.Sprintf("file index of layer %d of %ss/%s", i, a.Kind, a.Name))
			}
		}
	}
	if len(uses) == 0 {
		return ""
	}
	return " (" + strings.Join(uses, ", ") + ")"
}

// filesIn names files of a layer whose tar entries overlap [from, to) of
// the layer blob.
func (v *verifier) filesIn(layer hashing.Digest, from, to int64) string {
	ix, err := v.a.Index(layer)
	if err != nil {
		return ""
	}
	var names []string
	more := 0
	for i := uint32(0); i < ix.Len(); i++ {
		r, err := ix.Record(i)
		if err != nil || r.Has(fileindex.FlagImplicit) || r.Has(fileindex.FlagHardlink) {
			continue
		}
		end := r.HdrOffset + 512
		if r.DataOffset >= 0 {
			end = r.DataOffset + r.Size
		}
		if r.HdrOffset < to && end > from {
			if len(names) < 5 {
				names = append(names, "/"+r.Path)
			} else {
				more++
			}
		}
	}
	if len(names) == 0 {
		return ""
	}
	s := " files " + strings.Join(names, ", ")
	if more > 0 {
		s += fmt.Sprintf(" and %d more", more)
	}
	return s
}
