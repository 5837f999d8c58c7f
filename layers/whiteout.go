package layers

import (
	"archive/tar"
	"strings"
	"time"

	"github.com/amber-forensics/amber/fileindex"
)

// The markers of the OCI image spec's layer format ("Whiteouts",
// https://github.com/opencontainers/image-spec/blob/main/layer.md): an
// entry ".wh.NAME" deletes NAME of the layers below; an entry
// ".wh..wh..opq" in a directory hides everything the layers below have in
// it. A marker is not itself a file of the merged tree.
// They are fileindex's, which flags them in every index it builds.
const (
	WhiteoutPrefix = fileindex.WhiteoutPrefix
	OpaqueMarker   = fileindex.OpaqueMarker
)

// IsMarker reports whether name (one path component) is a whiteout or an
// opaque marker.
func IsMarker(name string) bool { return strings.HasPrefix(name, WhiteoutPrefix) }

// WhiteoutTarget returns the name a whiteout marker deletes, and false for
// any other name (the opaque marker included).
func WhiteoutTarget(name string) (string, bool) {
	if name == OpaqueMarker || !strings.HasPrefix(name, WhiteoutPrefix) {
		return "", false
	}
	return name[len(WhiteoutPrefix):], true
}

// WhiteoutName is the marker that deletes name.
func WhiteoutName(name string) string { return WhiteoutPrefix + name }

// WhiteoutHeader is the tar entry that deletes name of directory dir (""
// is the root) from the layers below, as the capture routes write it: an
// empty regular file, mode 0644, time zero (docker and containerd write
// the same).
func WhiteoutHeader(dir, name string) *tar.Header {
	return markerHeader(dir, WhiteoutName(name))
}

// OpaqueHeader is the tar entry that hides what the layers below hold in
// directory dir.
func OpaqueHeader(dir string) *tar.Header { return markerHeader(dir, OpaqueMarker) }

func markerHeader(dir, name string) *tar.Header {
	if dir != "" {
		name = dir + "/" + name
	}
	return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, ModTime: time.Unix(0, 0)}
}
