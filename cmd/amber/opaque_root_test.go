package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
)

// TestOpaqueRootHidesNothing: a .wh..wh..opq at a layer's root hid every
// lower layer in amber's merged views, while overlayfs ignores an opaque
// mark on a layer's root and docker export shows all the lower content: a
// few bytes hid an implant. The merged views now match docker export, and
// amber layers reports no lower file as deleted.
func TestOpaqueRootHidesNothing(t *testing.T) {
	testenv.Docker(t)
	testenv.FUSE(t)
	testenv.Root(t)
	dir := t.TempDir()
	img := fixture.Image{Tags: []string{"amber-test-opqroot:1"}, Layers: [][]byte{
		fixture.Layer(fixture.Dir("bin/"), fixture.Entry{Name: "bin/implant", Body: "evil\n", Mode: 0o755}, fixture.Dir("etc/"),
			fixture.File("etc/passwd", "root:x:0:0::/root:/bin/sh\n"), fixture.Dir("srv/"), fixture.File("srv/a", "a\n")),
		fixture.Layer(fixture.Opaque(""), fixture.Dir("etc/"), fixture.File("etc/motd", "hello\n")),
	}}
	src := filepath.Join(dir, "img.tar")
	if err := fixture.DockerSave(src, img); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "docker", "load", "-i", src)
	t.Cleanup(func() { testenv.Run(t, "docker", "rmi", "-f", "amber-test-opqroot:1") })
	exported := dockerExport(t, "amber-test-opqroot:1")
	if _, err := os.Stat(filepath.Join(exported, "bin/implant")); err != nil {
		t.Fatalf("docker export of the image lacks the lower layer's file (the engine hides it too?): %v", err)
	}

	arch := filepath.Join(dir, "case.tar.zst")
	mustAmber(t, "capture", "image", src, "-o", arch)
	mnt := mountArchive(t, arch, filepath.Join(dir, "mnt"))
	for _, view := range []string{"images/amber-test-opqroot_1/rootfs", "images/amber-test-opqroot_1/stages/1"} {
		got := dropDirMtimes(findListing(t, filepath.Join(mnt, view), func(string) bool { return false }), "etc")
		want := dropDirMtimes(findListing(t, exported, runtimePaths), "etc")
		if got != want {
			t.Errorf("%s differs from docker export:\n%s", view, lineDiff(want, got))
		}
	}
	if ls := mustAmber(t, "ls", "-r", "--sha256sum", arch, "images/amber-test-opqroot_1/rootfs"); !strings.Contains(ls, "bin/implant") {
		t.Errorf("ls --sha256sum of rootfs lacks bin/implant:\n%s", ls)
	}
	// The marker itself stays visible in the layer alone.
	if _, err := os.Lstat(filepath.Join(mnt, "images/amber-test-opqroot_1/layers/1/.wh..wh..opq")); err != nil {
		t.Errorf("layers/1 hides its marker: %v", err)
	}
	var reps []struct {
		Index   int `json:"index"`
		Deleted int `json:"deleted"`
	}
	if err := json.Unmarshal([]byte(mustAmber(t, "layers", "--json", arch)), &reps); err != nil || len(reps) != 2 {
		t.Fatalf("layers --json: %v", err)
	}
	if reps[1].Deleted != 0 {
		t.Errorf("amber layers says layer 1 deleted %d paths; the runtime shows them all", reps[1].Deleted)
	}
	if d := mustAmber(t, "diff", arch+":images/amber-test-opqroot_1/stages/0", arch+":images/amber-test-opqroot_1/rootfs"); strings.Contains(d, "D /bin/implant") {
		t.Errorf("diff of stages says the implant was deleted:\n%s", d)
	}
}
