//go:build linux

package fusefs_test

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/internal/fixture"
)

// modeLayer is a layer tar with the modes given as they are (fixture.Layer
// turns a mode of 0 into its default).
func modeLayer(t *testing.T, entries ...tar.Header) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range entries {
		h.ModTime = fixture.Epoch
		h.Format = tar.FormatPAX
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		body := ""
		if h.Typeflag == tar.TypeReg && !strings.Contains(h.Name, ".wh.") {
			body = "secret " + h.Name + "\n"
		}
		h.Size = int64(len(body))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestModesAsStored: modes of 0000 (RHEL's /etc/shadow, the .wh. markers
// BuildKit and containerd write) and the setuid, setgid and sticky bits
// show through the mount as the tar headers have them, not as go-fuse's
// defaults for "no permissions" (0644, 0755); amber's own entries stay
// 0444 and 0555.
func TestModesAsStored(t *testing.T) {
	l0 := modeLayer(t,
		tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		tar.Header{Name: "etc/shadow", Mode: 0},
		tar.Header{Name: "etc/gshadow", Mode: 0},
		tar.Header{Name: "etc/passwd", Mode: 0o644},
		tar.Header{Name: "d0/", Typeflag: tar.TypeDir, Mode: 0},
		tar.Header{Name: "d0/in", Mode: 0o644},
		tar.Header{Name: "d7777/", Typeflag: tar.TypeDir, Mode: 0o7777},
		tar.Header{Name: "f1", Mode: 0o001},
		tar.Header{Name: "f4000", Mode: 0o4000},
	)
	l1 := modeLayer(t,
		tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		tar.Header{Name: "etc/.wh.gshadow", Mode: 0},
		tar.Header{Name: "d0/", Typeflag: tar.TypeDir, Mode: 0},
		tar.Header{Name: "d0/.wh..wh..opq", Mode: 0},
	)
	p := fixture.Capture(t, t.TempDir(), "modes", fixture.Image{Tags: []string{"modes:1"}, Layers: [][]byte{l0, l1}})
	dir, _ := mount(t, p)
	img := filepath.Join(dir, "images/modes_1")
	want := map[string]os.FileMode{
		"rootfs/etc/shadow": 0, "rootfs/etc/passwd": 0o644, "rootfs/d0": os.ModeDir, "rootfs/d7777": os.ModeDir | 0o777 | os.ModeSetuid | os.ModeSetgid | os.ModeSticky,
		"rootfs/f1": 0o001, "rootfs/f4000": os.ModeSetuid,
		"layers/0/etc/gshadow": 0, "layers/1/etc/.wh.gshadow": 0, "layers/1/d0": os.ModeDir, "layers/1/d0/.wh..wh..opq": 0,
		// amber's own
		"": os.ModeDir | 0o555, "layers": os.ModeDir | 0o555, "config.json": 0o444, "../../manifest.json": 0o444,
	}
	for p, w := range want {
		st, err := os.Lstat(filepath.Join(img, p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if st.Mode() != w {
			t.Errorf("%s: mode %v, want %v", p, st.Mode(), w)
		}
	}
	if os.Geteuid() != 0 {
		return
	}
	// Root reads and lists what mode 0000 closes to others.
	for p, w := range map[string]string{"rootfs/etc/shadow": "secret etc/shadow\n", "layers/0/d0/in": "secret d0/in\n", "layers/1/etc/.wh.gshadow": ""} {
		if b, err := os.ReadFile(filepath.Join(img, p)); err != nil || string(b) != w {
			t.Errorf("reading %s as root: %q %v", p, b, err)
		}
	}
	if ents, err := os.ReadDir(filepath.Join(img, "rootfs/d0")); err != nil || len(ents) != 0 {
		t.Errorf("listing rootfs/d0 (opaque, emptied) as root: %v %v", ents, err)
	}
}
