package layers

import "testing"

func TestMarkers(t *testing.T) {
	for _, c := range []struct {
		name   string
		marker bool
		target string
		ok     bool
	}{
		{".wh.passwd", true, "passwd", true},
		{".wh..wh..opq", true, "", false},
		{".wh..", true, ".", true},
		{"passwd", false, "", false},
		{"a.wh.b", false, "", false},
	} {
		target, ok := WhiteoutTarget(c.name)
		if IsMarker(c.name) != c.marker || target != c.target || ok != c.ok {
			t.Errorf("%q: marker %v, target %q %v", c.name, IsMarker(c.name), target, ok)
		}
		if ok && WhiteoutName(target) != c.name {
			t.Errorf("WhiteoutName(%q) = %q", target, WhiteoutName(target))
		}
	}
}
