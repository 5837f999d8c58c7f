package manifest

import (
	"strings"
)

// SafeName reports whether s can be used as one path component of the mount
// layout: non-empty, not "." or "..", printable ASCII without '/'.
func SafeName(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 200 {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || c == '/' || c == '\\' {
			return false
		}
	}
	return true
}

// PathSafe turns an image reference or container name into a mount-layout
// name, as DESIGN.md says: "lamp-wordpress:v2" -> "lamp-wordpress_v2".
// Registry hosts and "library/" of Docker Hub are dropped; what remains keeps
// [A-Za-z0-9._-], and '/', ':' and '@' become '_'.
func PathSafe(ref string) string {
	r := ref
	if i := strings.Index(r, "/"); i >= 0 {
		host := r[:i]
		if strings.ContainsAny(host, ".:") || host == "localhost" {
			r = r[i+1:]
		}
	}
	r = strings.TrimPrefix(r, "library/")
	var b strings.Builder
	for _, c := range []byte(r) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
			b.WriteByte(c)
		default:
			b.WriteByte('_')
		}
	}
	s := strings.Trim(b.String(), ".")
	if len(s) > 200 {
		s = s[:200]
	}
	if !SafeName(s) {
		return ""
	}
	return s
}
