package archive

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
)

// The trailer is the last tar member: a fixed-size text record that points
// at the manifest, so opening an archive reads a few KiB from its end.
const (
	TrailerName = "amber/trailer"
	TrailerSize = 512
	// trailerTail is how far the trailer's header starts before the end of
	// the tar stream: its header, its data, and the two zero blocks.
	trailerTail  = 512 + TrailerSize + 1024
	trailerMagic = "AMBER-TRAILER"
)

// Trailer is the fixed record at the end of the tar stream.
type Trailer struct {
	Version        int
	Sealed         time.Time
	ManifestOffset int64
	ManifestSize   int64
	ManifestSHA256 hashing.Digest
	// StructureSHA256 covers every tar byte before the trailer's header that
	// is not member content (headers, PAX records, padding); content is
	// covered by the manifest's per-entry digests.
	StructureSHA256 hashing.Digest
	// TarOffset is where the trailer's own tar header starts.
	TarOffset int64
}

// Marshal renders t as exactly TrailerSize bytes of text.
func (t *Trailer) Marshal() ([]byte, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d\n", trailerMagic, t.Version)
	fmt.Fprintf(&b, "sealed %d\n", t.Sealed.Unix())
	fmt.Fprintf(&b, "manifest-offset %d\n", t.ManifestOffset)
	fmt.Fprintf(&b, "manifest-size %d\n", t.ManifestSize)
	fmt.Fprintf(&b, "manifest-sha256 %s\n", t.ManifestSHA256.Hex())
	fmt.Fprintf(&b, "structure-sha256 %s\n", t.StructureSHA256.Hex())
	fmt.Fprintf(&b, "trailer-offset %d\n", t.TarOffset)
	s := b.String()
	if len(s) > TrailerSize-1 {
		return nil, fmt.Errorf("trailer of %d bytes does not fit %d", len(s), TrailerSize)
	}
	out := []byte(s + strings.Repeat(" ", TrailerSize-1-len(s)) + "\n")
	return out, nil
}

// ParseTrailer reads a trailer record, strictly.
func ParseTrailer(b []byte) (*Trailer, error) {
	if len(b) != TrailerSize {
		return nil, fmt.Errorf("%w: trailer is %d bytes, want %d", manifest.ErrCorrupt, len(b), TrailerSize)
	}
	if !bytes.HasPrefix(b, []byte(trailerMagic+" ")) {
		return nil, fmt.Errorf("%w: no amber trailer at the end of the tar stream", manifest.ErrNotArchive)
	}
	body := strings.TrimRight(string(b), " \n")
	lines := strings.Split(body, "\n")
	fields := map[string]string{}
	for i, l := range lines {
		k, v, ok := strings.Cut(l, " ")
		if !ok || v == "" {
			return nil, fmt.Errorf("%w: trailer line %d is malformed", manifest.ErrCorrupt, i+1)
		}
		if _, dup := fields[k]; dup {
			return nil, fmt.Errorf("%w: trailer repeats %q", manifest.ErrCorrupt, k)
		}
		fields[k] = v
	}
	t := &Trailer{}
	ver, err := strconv.Atoi(fields[trailerMagic])
	if err != nil {
		return nil, fmt.Errorf("%w: trailer version: %v", manifest.ErrCorrupt, err)
	}
	if ver != manifest.FormatVersion {
		return nil, fmt.Errorf("%w: archive is format version %d; this amber reads version %d", manifest.ErrUnsupportedVersion, ver, manifest.FormatVersion)
	}
	t.Version = ver
	ints := []struct {
		k string
		p *int64
	}{{"manifest-offset", &t.ManifestOffset}, {"manifest-size", &t.ManifestSize}, {"trailer-offset", &t.TarOffset}}
	for _, f := range ints {
		n, err := strconv.ParseInt(fields[f.k], 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%w: trailer %s is not a valid offset", manifest.ErrCorrupt, f.k)
		}
		*f.p = n
	}
	sealed, err := strconv.ParseInt(fields["sealed"], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: trailer sealed time: %v", manifest.ErrCorrupt, err)
	}
	t.Sealed = time.Unix(sealed, 0).UTC()
	for _, f := range []struct {
		k string
		p *hashing.Digest
	}{{"manifest-sha256", &t.ManifestSHA256}, {"structure-sha256", &t.StructureSHA256}} {
		d, err := hashing.Parse(fields[f.k])
		if err != nil {
			return nil, fmt.Errorf("%w: trailer %s: %v", manifest.ErrCorrupt, f.k, err)
		}
		*f.p = d
	}
	if len(fields) != 7 {
		return nil, fmt.Errorf("%w: trailer has %d fields, want 7", manifest.ErrCorrupt, len(fields))
	}
	if t.ManifestSize > manifest.MaxManifestSize {
		return nil, fmt.Errorf("%w: trailer claims a manifest of %d bytes", manifest.ErrCorrupt, t.ManifestSize)
	}
	if t.ManifestOffset+t.ManifestSize > t.TarOffset {
		return nil, fmt.Errorf("%w: trailer points past itself", manifest.ErrCorrupt)
	}
	return t, nil
}
