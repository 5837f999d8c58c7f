package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/manifest"
)

// TestCaptureBusyFile: a 64 MiB file rewritten in place, in a loop, by
// the container during a live capture without --pause: what is stored is
// one whole version of it, or the capture says that it changed while it
// was read (issue 14 found 54 MB of one version and 13 MB of another
// sealed without a word). The archive verifies either way.
func TestCaptureBusyFile(t *testing.T) {
	testenv.Root(t)
	dockerImage(t)
	name := "amber-ctr-busy"
	exec.Command("docker", "rm", "-f", name).Run()
	const size = 64 << 20
	script := fmt.Sprintf(`head -c %d /dev/zero | tr '\0' a > /src/a; head -c %d /dev/zero | tr '\0' b > /src/b; cp /src/a /busy; touch /ready
while :; do dd if=/src/b of=/busy bs=1M conv=notrunc 2>/dev/null; dd if=/src/a of=/busy bs=1M conv=notrunc 2>/dev/null; done`, size, size)
	id := strings.TrimSpace(testenv.Run(t, "docker", "run", "-d", "--name", name, "--tmpfs", "/src:size=160m", "amber-test:1", "sh", "-c", script))
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", id).Run() })
	for i := 0; i < 300 && exec.Command("docker", "exec", id, "test", "-e", "/ready").Run() != nil; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	dir := t.TempDir()
	arch := filepath.Join(dir, "busy.tar.zst")
	mustAmber(t, "capture", "container", name, "--no-memory", "-o", arch)
	mustAmber(t, "verify", arch)
	m := readManifest(t, arch)
	var flagged *manifest.Anomaly
	for i, a := range m.Anomalies {
		if a.Kind == "changed-during-capture" && strings.TrimPrefix(a.Path, "/") == "busy" {
			flagged = &m.Anomalies[i]
		}
	}
	got := mustAmber(t, "cat", arch, "containers/"+name+"/rootfs/busy")
	whole := len(got) == size && (strings.Count(got, "a") == size || strings.Count(got, "b") == size)
	switch {
	case flagged != nil:
		t.Logf("flagged: %s", flagged.Detail)
		for _, want := range []string{"size", "mtime", "ctime"} {
			if !strings.Contains(flagged.Detail, want) {
				t.Errorf("the anomaly does not give both states (%s): %s", want, flagged.Detail)
			}
		}
	case whole:
		t.Logf("stored one whole version, %q", got[:1])
	default:
		t.Errorf("sealed torn with no anomaly: %d bytes, %d a, %d b, anomalies %+v", len(got), strings.Count(got, "a"), strings.Count(got, "b"), m.Anomalies)
	}
	// With --pause, as the README advises for a busy container, nothing
	// changes while it is read.
	paused := filepath.Join(dir, "paused.tar.zst")
	mustAmber(t, "capture", "container", name, "--no-memory", "--pause", "-o", paused)
	for _, a := range readManifest(t, paused).Anomalies {
		if a.Kind == "changed-during-capture" {
			t.Errorf("--pause: %+v", a)
		}
	}
}
