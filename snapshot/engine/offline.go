package engine

import (
	"bufio"
	"context"
	"os"
	"strings"

	"github.com/amber-forensics/amber/manifest"
)

// Summary times, and the listing of images, are what amber host shows of
// a dead host's runtime; LayerChecker is how a runtime that rebuilds
// layers from its own directories reports the ones changed on disk.

// ImageSummary is one image as a runtime lists it (amber host).
type ImageSummary struct {
	Runtime   string   `json:"runtime"`
	Namespace string   `json:"namespace,omitempty"`
	ID        string   `json:"id"`
	Refs      []string `json:"refs"`
	// Size is the bytes of its layers as the runtime records them (0:
	// unknown); Created the image's creation time (RFC 3339), if any.
	Size    int64  `json:"size"`
	Created string `json:"created,omitempty"`
}

// ImageLister is a runtime that lists its images without reading any
// layer.
type ImageLister interface {
	ListImages(ctx context.Context) ([]ImageSummary, error)
}

// LayerFinding is an image layer the runtime found changed in its own
// store after the image was pulled: the files on disk no longer make the
// layer its image's config names (an attacker with root editing a lower
// layer changes every container built on it, and docker diff never shows
// it).
type LayerFinding struct {
	// DiffID is the config's digest of the layer ("sha256:..."); Found
	// the digest of the layer as found, as SaveImage streams it (named
	// blobs/sha256/<Found's hex>).
	DiffID, Found string
	// Paths are the paths whose content, size, type or presence differs
	// from the runtime's record of the layer.
	Paths []ChangedPath
}

// ChangedPath is one path of a LayerFinding. What says how it differs:
// "content", "size", "type", "added", "removed", "link", "mode", "owner",
// "xattr", "mtime".
type ChangedPath struct {
	Path   string `json:"path"`
	What   string `json:"what"`
	Detail string `json:"detail,omitempty"`
}

// LayerChecker is a runtime that rebuilds image layers from its own
// directories (a dead host's Docker data root) and checks each against
// its diff_id. Every layer of ref is checked before SaveImage returns, so
// LayerFindings, asked after SaveImage and before its stream is read,
// lists the layers that stream holds as found rather than as recorded.
// Each position of the image is checked on its own: one diff_id at two
// positions (the empty layer) may be listed twice, with different Found
// digests, or once while its other position is as recorded. The
// stream's manifest.json names each position's blob as found, and holds
// each distinct blob once.
type LayerChecker interface {
	LayerFindings(ref string) []LayerFinding
}

// DescribeRoot is the acquisition record of a runtime read offline: root
// and dataRoot as given (dataRoot a path inside root), and the mount of
// this host that holds real, the data root's real path here as the
// runtime package resolved it inside root (its links are the evidence's:
// following them on this host would lead elsewhere). The mount is read
// from /proc/self/mountinfo; left empty where it cannot be.
func DescribeRoot(root, dataRoot, real string) *manifest.Offline {
	o := &manifest.Offline{Root: root, DataRoot: dataRoot}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return o
	}
	defer f.Close()
	best := -1
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		a, b := strings.Fields(pre), strings.Fields(post)
		if len(a) < 6 || len(b) < 2 {
			continue
		}
		mp := unescapeMount(a[4])
		if !within(real, mp) || len(mp) < best {
			continue
		}
		best = len(mp)
		o.Mount, o.Options, o.FSType, o.Device = mp, a[5], b[0], unescapeMount(b[1])
	}
	return o
}

// within says whether p is dir or lies under it.
func within(p, dir string) bool {
	if dir == "/" {
		return true
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOct(s[i+1]) && isOct(s[i+2]) && isOct(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOct(c byte) bool { return c >= '0' && c <= '7' }
