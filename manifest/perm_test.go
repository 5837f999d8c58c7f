package manifest

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestArchiveCreated0600: the archive is 0600 from the moment its
// .partial exists (created so, not chmod'ed after), whatever the umask
// would allow; Perm 0666 leaves it to the umask.
func TestArchiveCreated0600(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	for _, c := range []struct {
		perm, want os.FileMode
	}{{0, 0o600}, {0o666, 0o644}} {
		p := filepath.Join(dir, "a.tar.zst")
		w, err := Create(p, WriterOptions{Perm: c.perm})
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(p + ".partial")
		w.Abort()
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != c.want {
			t.Errorf("Perm %#o: .partial created %#o, want %#o", c.perm, got, c.want)
		}
	}
}
