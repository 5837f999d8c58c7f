package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/internal/fixture"
)

// lsLayers runs amber ls -r --json on a view path and returns each entry's
// "layer" (-1 where there is none).
func lsLayers(t *testing.T, arch, p string) map[string]int {
	t.Helper()
	out := mustAmber(t, "ls", "-r", "--json", arch, p)
	got := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var e struct {
			Path  string `json:"path"`
			Layer *int   `json:"layer"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("ls --json line %q: %v", sc.Text(), err)
		}
		got[e.Path] = -1
		if e.Layer != nil {
			got[e.Path] = *e.Layer
		}
	}
	return got
}

// TestLsLayerField: "layer" in ls --json is the number of the layer (as in
// layers/N) that the entry's record comes from: N for everything in
// layers/N, and in a merged view the layer whose record is visible.
func TestLsLayerField(t *testing.T) {
	arch := fixture.Capture(t, t.TempDir(), "wh", fixture.WhiteoutImage())
	for n := 0; n < 3; n++ {
		got := lsLayers(t, arch, fmt.Sprint("images/wh_1/layers/", n))
		if len(got) < 3 {
			t.Fatalf("layers/%d: only %d entries", n, len(got))
		}
		for p, l := range got {
			if l != n {
				t.Errorf("layers/%d: %s has layer %d", n, p, l)
			}
		}
	}
	// From the fixture's layers (internal/fixture/images.go): which one
	// holds the record each path of the merged trees shows.
	for view, want := range map[string]map[string]int{
		"images/wh_1/rootfs": {".": 2, "etc": 0, "etc/passwd": 0, "etc/shadow": 2, "d": 1, "d/z": 1, "f": 1, "f/inner": 1,
			"g": 1, "t": 1, "tl": 0},
		"images/wh_1/stages/1": {".": 1, "etc": 0, "etc/passwd": 0, "a": 0, "a/b": 0, "a/b/c": 0, "d": 1, "d/z": 1, "f": 1, "f/inner": 1,
			"g": 1, "t": 1, "tl": 0},
		"images/wh_1/stages/0": {".": 0, "etc": 0, "etc/passwd": 0, "etc/shadow": 0, "a": 0, "a/b": 0, "a/b/c": 0, "d": 0, "d/x": 0, "d/y": 0,
			"f": 0, "g": 0, "g/h": 0, "t": 0, "tl": 0},
	} {
		got := lsLayers(t, arch, view)
		if len(got) != len(want) {
			t.Errorf("%s: %d entries, want %d: %v", view, len(got), len(want), got)
		}
		for p, l := range want {
			if g, ok := got[p]; !ok || g != l {
				t.Errorf("%s: %s has layer %d (listed: %v), want %d", view, p, g, ok, l)
			}
		}
	}
}
