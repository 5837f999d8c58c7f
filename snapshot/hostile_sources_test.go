package snapshot_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/snapshot"
	"github.com/amber-forensics/amber/snapshot/source"
)

// allocated runs fn and returns the bytes it allocated.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestRepeatedConfig: a 15 MB docker-save whose manifest.json lists one
// 15 MiB config 200 times is read once and kept as one image (it took
// 4 GB, and 1,000 times ran out of memory).
func TestRepeatedConfig(t *testing.T) {
	dir := t.TempDir()
	layer := fixture.Layer(fixture.File("a", "a"))
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "rootfs": map[string]any{"type": "layers", "diff_ids": []string{hashing.Sum(layer).String()}},
		"config": map[string]any{"Labels": map[string]string{"pad": strings.Repeat("x", 15<<20)}}})
	var man []map[string]any
	for i := 0; i < 200; i++ {
		man = append(man, map[string]any{"Config": "c.json", "RepoTags": []string{fmt.Sprintf("big:%d", i)}, "Layers": []string{"l/layer.tar"}})
	}
	src := filepath.Join(dir, "big.tar")
	dockerSaveWith(t, src, map[string][]byte{"c.json": cfg, "l/layer.tar": layer}, man)
	var res *snapshot.Result
	var err error
	n := allocated(func() { res, err = capture(t, src, filepath.Join(dir, "out.tar.zst"), snapshot.Options{}) })
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Manifest.Artifacts) != 1 || len(res.Manifest.Artifacts[0].Refs) != 200 {
		t.Errorf("%d artifacts, want one image with 200 refs", len(res.Manifest.Artifacts))
	}
	if n > 1<<30 {
		t.Errorf("capture allocated %d MB for a 15 MB source", n>>20)
	}
}

// TestIndexFanOut: a small layout of nested indexes fanning out 40 ways
// over 4 levels (2.5 million paths to one image) is walked once per
// index.
func TestIndexFanOut(t *testing.T) {
	dir := t.TempDir()
	l := fixture.NewLayout()
	d := l.Image(fixture.Image{Layers: [][]byte{fixture.Layer(fixture.File("leaf", "x"))}})
	for level := 0; level < 4; level++ {
		var ds []fixture.Desc
		for i := 0; i < 40; i++ {
			ds = append(ds, d.With("annotations", map[string]string{"org.opencontainers.image.ref.name": fmt.Sprintf("l%d-%d", level, i)}))
		}
		d = l.Index(ds...)
	}
	if err := l.Write(dir+"/layout", d); err != nil {
		t.Fatal(err)
	}
	var res *snapshot.Result
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		if n := allocated(func() { res, err = capture(t, dir+"/layout", dir+"/out.tar.zst", snapshot.Options{}) }); n > 256<<20 {
			t.Errorf("capture allocated %d MB for a layout of %d KB", n>>20, 48)
		}
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("capture of a fanned-out layout did not end in 60 s")
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Manifest.Artifacts) != 1 || len(res.Manifest.Artifacts[0].Refs) != 160 {
		t.Errorf("%d artifacts (refs %d), want one image with 160 refs", len(res.Manifest.Artifacts), len(res.Manifest.Artifacts[0].Refs))
	}
}

// TestTooManyImages: past source.MaxImages a source is refused, naming
// the cause, before anything is stored.
func TestTooManyImages(t *testing.T) {
	dir := t.TempDir()
	layer := fixture.Layer(fixture.File("a", "a"))
	files := map[string][]byte{"l/layer.tar": layer}
	var man []map[string]any
	for i := 0; i <= source.MaxImages; i++ {
		cfg, _ := json.Marshal(map[string]any{"os": "linux", "n": i, "rootfs": map[string]any{"type": "layers", "diff_ids": []string{hashing.Sum(layer).String()}}})
		files[fmt.Sprintf("c%d.json", i)] = cfg
		man = append(man, map[string]any{"Config": fmt.Sprintf("c%d.json", i), "Layers": []string{"l/layer.tar"}})
	}
	src := filepath.Join(dir, "many.tar")
	dockerSaveWith(t, src, files, man)
	out := filepath.Join(dir, "out.tar.zst")
	_, err := capture(t, src, out, snapshot.Options{})
	if !errors.Is(err, snapshot.ErrSource) || !strings.Contains(err.Error(), "more than 1000 images") {
		t.Errorf("capture of %d images: %v", source.MaxImages+1, err)
	}
	noOutput(t, out)
}

// TestFIFOInLayout: a FIFO (or device) in an OCI layout directory is
// refused by name at once; it hung the capture forever, deaf to signals.
func TestFIFOInLayout(t *testing.T) {
	for _, which := range []string{"index.json", "manifest", "layer"} {
		t.Run(which, func(t *testing.T) {
			dir := t.TempDir()
			l := fixture.NewLayout()
			layer := fixture.Layer(fixture.File("a", "a"))
			img := l.Image(fixture.Image{Tags: []string{"x:1"}, Layers: [][]byte{layer}})
			if err := l.Write(dir+"/layout", img); err != nil {
				t.Fatal(err)
			}
			victim := map[string]string{"index.json": "index.json", "manifest": "blobs/sha256/" + img["digest"].(string)[7:],
				"layer": "blobs/sha256/" + hashing.Sum(layer).Hex()}[which]
			p := filepath.Join(dir, "layout", victim)
			os.Remove(p)
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() {
				_, err := capture(t, dir+"/layout", dir+"/out.tar.zst", snapshot.Options{})
				errc <- err
			}()
			select {
			case err := <-errc:
				if !errors.Is(err, snapshot.ErrSource) || !strings.Contains(err.Error(), "not a regular file") || !strings.Contains(err.Error(), filepath.Base(victim)) {
					t.Errorf("capture with a FIFO as %s: %v", victim, err)
				}
			case <-time.After(10 * time.Second):
				// Unblock the capture's open so the test can end.
				if f, err := os.OpenFile(p, os.O_WRONLY, 0); err == nil {
					f.Close()
				}
				t.Fatalf("capture with a FIFO as %s hangs", victim)
			}
			noOutput(t, dir+"/out.tar.zst")
		})
	}
}
