package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/golden")

// TestGolden pins the text and JSON outputs of the examination commands on
// the committed webapp image (a plain docker-save tarball, indexed on the
// fly). go test ./cmd/amber -run TestGolden -update rewrites them; review
// the diff before committing.
func TestGolden(t *testing.T) {
	src := filepath.Join("..", "..", "testdata", "images", "webapp-docker-save.tar")
	for _, c := range []struct {
		name string
		args []string
	}{
		{"layers.txt", []string{"layers", src}},
		{"layers.json", []string{"layers", "--json", src}},
		{"blame.txt", []string{"blame", src, "images/webapp_v1", "/srv/.aws/credentials"}},
		{"diff-stages.txt", []string{"diff", src + ":images/webapp_v1/stages/0", src + ":images/webapp_v1/stages/2"}},
		{"diff-stages.json", []string{"diff", "--json", src + ":images/webapp_v1/stages/0", src + ":images/webapp_v1/stages/2"}},
		{"history.txt", []string{"history", src}},
		{"history.json", []string{"history", "--json", src}},
		{"dockerfile.txt", []string{"dockerfile", src}},
		{"inspect.txt", []string{"inspect", src}},
		{"inspect.json", []string{"inspect", "--json", src}},
		{"timeline.body", []string{"timeline", "--no-custody", src}},
		{"timeline.json", []string{"timeline", "--no-custody", "--json", src}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := mustAmber(t, c.args...)
			p := filepath.Join("..", "..", "testdata", "golden", c.name)
			if *update {
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(p)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("amber %s differs from %s:\n%s", strings.Join(c.args, " "), p, lineDiff(string(want), got))
			}
		})
	}
}
