package layers

import "strings"

// The markers of the OCI image spec's layer format ("Whiteouts",
// https://github.com/opencontainers/image-spec/blob/main/layer.md): an
// entry ".wh.NAME" deletes NAME of the layers below; an entry
// ".wh..wh..opq" in a directory hides everything the layers below have in
// it. A marker is not itself a file of the merged tree.
const (
	WhiteoutPrefix = ".wh."
	OpaqueMarker   = ".wh..wh..opq"
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
