package timeline

import (
	"testing"

	"github.com/amber-forensics/amber/fileindex"
)

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"a|b": "a%7Cb", "50%": "50%25", "new\nline": `new\nline`, `back\slash`: `back\\slash`, "tab\t": `tab\t`,
		"bell\a": `bell\x07`, "bad\xffbyte": "bad\xffbyte", "plain/path name": "plain/path name",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestModeString(t *testing.T) {
	for _, c := range []struct {
		typ  byte
		mode uint32
		want string
	}{
		{fileindex.TypeReg, 0o644, "r/rrw-r--r--"}, {fileindex.TypeDir, 0o755, "d/drwxr-xr-x"}, {fileindex.TypeSymlink, 0o777, "l/lrwxrwxrwx"},
		{fileindex.TypeReg, 0o4755, "r/rrwsr-xr-x"}, {fileindex.TypeDir, 0o1777, "d/drwxrwxrwt"}, {fileindex.TypeReg, 0o2644, "r/rrw-r-Sr--"},
		{fileindex.TypeChar, 0o600, "c/crw-------"}, {fileindex.TypeFifo, 0o644, "p/prw-r--r--"},
	} {
		if got := ModeString(c.typ, c.mode); got != c.want {
			t.Errorf("ModeString(%c, %o) = %q, want %q", c.typ, c.mode, got, c.want)
		}
	}
}
