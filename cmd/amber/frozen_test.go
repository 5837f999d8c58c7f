package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// frozenV1SHA256 pins the committed v1 archive: it must never be rewritten.
const frozenV1SHA256 = "a8d6d6eecddeae9542f544e82aa6704467f961961496120eb2139909f891cb1e"

// TestFrozenV1 proves this amber still opens, lists and verifies the
// archive written by the first version of the format.
func TestFrozenV1(t *testing.T) {
	dir := t.TempDir()
	for _, ext := range []string{"", ".sha256", ".md5", ".sha1", ".custody.jsonl"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "v1", "webapp.tar.zst"+ext))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "webapp.tar.zst"+ext), b, 0o644)
	}
	arch := filepath.Join(dir, "webapp.tar.zst")
	if got := sha256File(t, arch); got != frozenV1SHA256 {
		t.Fatalf("testdata/v1/webapp.tar.zst changed (sha256 %s); the frozen archive must never be rewritten", got)
	}
	v := mustAmber(t, "verify", arch)
	if !strings.HasPrefix(v, "OK ") || !strings.Contains(v, "16 files re-hashed") {
		t.Fatalf("verify:\n%s", v)
	}
	if got := mustAmber(t, "cat", arch, "images/webapp_v1/layers/1/srv/.aws/credentials"); !strings.Contains(got, "AKIAIOSFODNN7EXAMPLE") {
		t.Errorf("credential not in layers/1: %q", got)
	}
	if r := amber(t, "cat", arch, "images/webapp_v1/rootfs/srv/.aws/credentials"); r.code != exitNotFound {
		t.Errorf("deleted credential visible in rootfs: exit %d", r.code)
	}
	if !strings.Contains(mustAmber(t, "ls", arch), "format v1") {
		t.Error("ls does not report format v1")
	}
	if !strings.Contains(mustAmber(t, "log", arch), "chain intact") {
		t.Error("custody chain of the frozen archive")
	}
}
