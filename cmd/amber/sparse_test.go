package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
)

// TestSparseBomb: a 30 KB layer of eight 1 TiB sparse files (made by GNU
// tar) is refused at once by the expansion limit (exit 6); with the limit
// lifted, SIGINT stops the capture within a second (exit 130) and SIGKILL
// leaves nothing at any name.
func TestSparseBomb(t *testing.T) {
	testenv.Tool(t, "tar")
	dir := t.TempDir()
	layer, err := fixture.SparseLayer(dir)
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "sparse.tar")
	if err := fixture.DockerSave(img, fixture.Image{Tags: []string{"sparse:1"}, Layers: [][]byte{layer}}); err != nil {
		t.Fatal(err)
	}
	outDir := filepath.Join(dir, "out")
	os.Mkdir(outDir, 0o755)
	start := time.Now()
	r := amber(t, "capture", "image", img, "-o", filepath.Join(outDir, "a.tar.zst"))
	if r.code != exitSource || !strings.Contains(r.stderr, "--max-expansion 0 lifts it") || time.Since(start) > 20*time.Second {
		t.Errorf("capture of the sparse bomb: exit %d after %v:\n%s", r.code, time.Since(start), r.stderr)
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL} {
		cmd := exec.Command(amberBin, "capture", "image", "--max-expansion", "0", img, "-o", filepath.Join(outDir, "b.tar.zst"))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitWriting(t, cmd.Process.Pid, outDir)
		time.Sleep(500 * time.Millisecond)
		cmd.Process.Signal(sig)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatalf("%v: the capture expanding sparse holes went on for 5 s", sig)
		}
		if sig != syscall.SIGKILL && cmd.ProcessState.ExitCode() != exitInterrupted {
			t.Errorf("%v: exit %d, want %d", sig, cmd.ProcessState.ExitCode(), exitInterrupted)
		}
		if left, _ := os.ReadDir(outDir); len(left) > 0 {
			t.Errorf("%v: left in the output's folder: %v", sig, left)
		}
	}
}
