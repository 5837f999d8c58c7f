//go:build linux

package fusefs

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/view"
)

// TestInodeBudget: find over 3,000 files with a budget of 256 inodes: the
// kernel is asked to forget the oldest, the nodes kept fall back under the
// budget, and every file still reads with its indexed SHA-256 afterwards
// (looked up again, with the same inode numbers). Both ways of asking:
// NOTIFY_PRUNE (Linux 6.15+) and one NOTIFY_INVAL_ENTRY per name. The
// layer's index is read in pages (as for a layer of a million files).
func TestInodeBudget(t *testing.T) {
	for _, entryOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("entryOnly=%v", entryOnly), func(t *testing.T) { testInodeBudget(t, entryOnly) })
	}
}

func testInodeBudget(t *testing.T, entryOnly bool) {
	testenv.FUSE(t)
	var es []fixture.Entry
	for d := 0; d < 30; d++ {
		for f := 0; f < 100; f++ {
			es = append(es, fixture.File(fmt.Sprintf("d%02d/f%03d", d, f), fmt.Sprintf("content %d %d\n", d, f)))
		}
	}
	p := fixture.Capture(t, t.TempDir(), "many", fixture.Image{Tags: []string{"many:1"}, Layers: [][]byte{fixture.Layer(es...)}})
	a, err := archive.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.SetPagedIndexMin(0)
	dir := t.TempDir()
	const max = 256
	srv, f, err := mount(a, dir, Options{MaxInodes: max})
	if err != nil {
		t.Fatal(err)
	}
	f.inodes.entryOnly.Store(entryOnly)
	ix, err := a.Index(a.Manifest.Artifacts[0].Layers[0].Digest)
	if err != nil || ix.Bytes() != nil {
		t.Fatalf("the index is not read in pages: %v", err)
	}
	if err := srv.WaitMount(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if srv.Unmount() != nil {
			Unmount(dir)
		}
	}()
	root := filepath.Join(dir, "images/many_1/rootfs")
	v := &view.View{A: a}
	var want strings.Builder
	re, err := v.Stat("images/many_1/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	v.Walk(re, func(e *view.Entry) error {
		if e.Type == fileindex.TypeReg {
			fmt.Fprintf(&want, "%s  ./%s\n", e.SHA256().Hex(), strings.TrimPrefix(e.Path, "images/many_1/rootfs/"))
		}
		return nil
	})
	check := func(when string) {
		cmd := exec.Command("sha256sum", "-c", "--strict", "--quiet", "-")
		cmd.Dir = root
		cmd.Stdin = strings.NewReader(want.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sha256sum -c %s: %v\n%.1000s", when, err, out)
		}
	}
	check("on the first walk")
	first := testenv.Shell(t, "cd "+root+" && find . -printf '%i %p\\n' | sort")
	f.inodes.trim()
	deadline := time.Now().Add(10 * time.Second)
	for f.inodes.live() > max && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		f.inodes.trim()
	}
	if got := f.inodes.live(); got > max {
		t.Errorf("%d nodes kept after trimming, budget %d", got, max)
	}
	if f.inodes.pruned.Load() == 0 {
		t.Error("nothing was pruned")
	}
	check("after pruning")
	if again := testenv.Shell(t, "cd "+root+" && find . -printf '%i %p\\n' | sort"); again != first {
		t.Errorf("inode numbers changed after pruning")
	}
}

// live is the number of nodes the kernel may still hold.
func (b *budget) live() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}
