//go:build linux

package fusefs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
)

// TestPushSiblings: reading one file of a directory stores the next ones
// into the kernel's page cache, so that reading them asks nothing more of
// the mount and gives the archived bytes; with pushing off, every file is
// a READ. Files listed before the one read, directories only listed, and
// files of other directories get nothing pushed.
func TestPushSiblings(t *testing.T) {
	testenv.FUSE(t)
	var es []fixture.Entry
	want := map[string][]byte{}
	for d := 0; d < 3; d++ {
		for f := 0; f < 40; f++ {
			name := fmt.Sprintf("d%d/f%02d", d, f)
			body := bytes.Repeat([]byte(name+" "), 50+f*100) // up to ~40 KB
			want[name] = body
			es = append(es, fixture.File(name, string(body)))
		}
	}
	p := fixture.Capture(t, t.TempDir(), "push", fixture.Image{Tags: []string{"push:1"}, Layers: [][]byte{fixture.Layer(es...)}})
	for _, noPush := range []bool{false, true} {
		t.Run(fmt.Sprintf("noPush=%v", noPush), func(t *testing.T) {
			a, err := archive.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if !a.FramesSealed() {
				t.Fatal("fixture archive without sealed frames")
			}
			dir := t.TempDir()
			srv, f, err := mount(a, dir, Options{NoPush: noPush})
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.WaitMount(); err != nil {
				t.Fatal(err)
			}
			defer srv.Unmount()
			root := filepath.Join(dir, "images/push_1/rootfs")
			for d := 0; d < 3; d++ {
				if _, err := os.ReadDir(filepath.Join(root, fmt.Sprintf("d%d", d))); err != nil {
					t.Fatal(err)
				}
			}
			read := func(name string) {
				t.Helper()
				b, err := os.ReadFile(filepath.Join(root, name))
				if err != nil || !bytes.Equal(b, want[name]) {
					t.Fatalf("%s: %d bytes, want %d (%v)", name, len(b), len(want[name]), err)
				}
			}
			read("d1/f10")
			if noPush {
				time.Sleep(200 * time.Millisecond)
			} else {
				// The 29 files after f10 in d1, on the pusher's time.
				for deadline := time.Now().Add(10 * time.Second); f.pushes.Load() < 29 && time.Now().Before(deadline); {
					time.Sleep(10 * time.Millisecond)
				}
			}
			if got := f.pushes.Load(); !noPush && got != 29 || noPush && got != 0 {
				t.Fatalf("%d files pushed (no push: %v)", got, noPush)
			}
			reads := f.reads.Load()
			for i := 11; i < 40; i++ {
				read(fmt.Sprintf("d1/f%02d", i))
			}
			if got := f.reads.Load() - reads; !noPush && got != 0 || noPush && got < 29 {
				t.Errorf("reading d1/f11..f39 took %d READs (no push: %v)", got, noPush)
			}
			// Before f10 and in d2: nothing was pushed; each is a READ.
			reads = f.reads.Load()
			read("d1/f03")
			read("d2/f20")
			if got := f.reads.Load() - reads; got < 2 {
				t.Errorf("files not pushed were served with %d READs", got)
			}
		})
	}
}
