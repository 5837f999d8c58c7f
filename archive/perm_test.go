package archive

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestArchiveCreated0600: the archive is 0600 from the moment it exists
// (created so, unnamed or as .partial, not chmod'ed after), whatever the
// umask would allow; Perm 0666 leaves it to the umask.
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
		st, err := w.f.Stat()
		w.Abort()
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != c.want {
			t.Errorf("Perm %#o: .partial created %#o, want %#o", c.perm, got, c.want)
		}
	}
}

// TestNothingNamedUntilSealed: while an archive is written nothing bears
// its name or NAME.partial (an unnamed file, where the file system has
// them): a capture killed with SIGKILL leaves nothing.
func TestNothingNamedUntilSealed(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.tar.zst")
	w, err := Create(p, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, err := w.Add("x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("while writing, the directory holds %v", ents)
	}
	if !w.unnamed {
		t.Fatalf("%s has no unnamed files (O_TMPFILE): tmpfs and ext4 do", dir)
	}
}

// TestStalePartialRemoved: where a named .partial is used, one left by a
// capture that died (its lock free) is removed by the next capture; one
// being written (locked) is not.
func TestStalePartialRemoved(t *testing.T) {
	dir := t.TempDir()
	partial := filepath.Join(dir, "a.tar.zst.partial")
	os.WriteFile(partial, []byte("left by kill -9"), 0o600)
	f, err := createPartial(partial, 0o600)
	if err != nil {
		t.Fatalf("a stale partial: %v", err)
	}
	if _, err := createPartial(partial, 0o600); err == nil {
		t.Error("a partial being written (locked) was taken over")
	}
	f.Close()
	os.Remove(partial)
}
