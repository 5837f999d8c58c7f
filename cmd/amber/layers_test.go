package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/internal/testenv"
)

// TestLayersHardLinksWasted (issue 13): a busybox base whose applets are
// hard links to one binary (busybox --install), and a layer that removes
// /bin. The wasted bytes are the binary's once, as stat counts them, not
// once per name; a file whose inode another name keeps visible is not
// wasted at all.
func TestLayersHardLinksWasted(t *testing.T) {
	testenv.Docker(t)
	busybox := testenv.Tool(t, "busybox")
	dir := t.TempDir()
	base, img := "amber-test-hardlinks-base:1", "amber-test-hardlinks:1"
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", img, base).Run() })
	testenv.Shell(t, fmt.Sprintf(`cd %q
mkdir -p rootfs/bin rootfs/data rootfs/etc
cp %q rootfs/bin/busybox
rootfs/bin/busybox --install rootfs/bin
head -c 4096 /dev/urandom > rootfs/data/blob && ln rootfs/data/blob rootfs/bin/blob
echo 'root:x:0:0:root:/root:/bin/sh' > rootfs/etc/passwd
tar --sort=name -C rootfs -c . | docker import - %s >/dev/null
printf 'FROM %s\nRUN ["/bin/busybox", "rm", "-rf", "/bin"]\n' > Dockerfile
docker build -q -t %s . >/dev/null`, dir, busybox, base, base, img))
	// The oracle: the binary's size and link count, by stat.
	st := strings.Fields(testenv.Run(t, "stat", "-c", "%s %h", filepath.Join(dir, "rootfs/bin/busybox")))
	size, _ := strconv.ParseInt(st[0], 10, 64)
	names, _ := strconv.Atoi(st[1])
	if size == 0 || names < 100 {
		t.Fatalf("busybox --install made %d names of %d bytes", names, size)
	}

	arch := filepath.Join(dir, "case.tar.zst")
	mustAmber(t, "capture", "image", img, "-o", arch)
	var reps []struct {
		Index   int   `json:"index"`
		Wasted  int64 `json:"wasted_bytes"`
		Changes []struct {
			Kind      string `json:"kind"`
			Path      string `json:"path"`
			Size      int64  `json:"size"`
			Fate      string `json:"fate"`
			LinkTo    string `json:"hard_link_to"`
			VisibleAs string `json:"visible_as"`
		} `json:"changes"`
	}
	out := mustAmber(t, "layers", "--json", arch)
	if err := json.Unmarshal([]byte(out), &reps); err != nil || len(reps) != 2 {
		t.Fatalf("layers --json: %v, %d layers\n%s", err, len(reps), out)
	}
	if reps[0].Wasted != size || reps[1].Wasted != 0 {
		t.Errorf("wasted bytes: layer 0 %d, layer 1 %d; want %d (busybox once; /data/blob still visible), 0", reps[0].Wasted, reps[1].Wasted, size)
	}
	// Every name of busybox but one is a hard link to the one that is
	// counted; /bin/blob and /data/blob share an inode that stays visible.
	var counted []string
	links := 0
	var blob []string
	for _, c := range reps[0].Changes {
		switch {
		case c.Path == "/bin/blob" || c.Path == "/data/blob":
			blob = append(blob, fmt.Sprintf("%s %s link=%s visible=%s", c.Path, c.Fate, c.LinkTo, c.VisibleAs))
		case !strings.HasPrefix(c.Path, "/bin/"):
		case c.Size != size || c.Fate != "deleted":
			t.Errorf("%s: %d bytes, fate %q; want %d, deleted", c.Path, c.Size, c.Fate, size)
		case c.LinkTo == "":
			counted = append(counted, c.Path)
		default:
			links++
		}
	}
	if len(counted) != 1 || links != names-1 {
		t.Fatalf("%d names counted (%.100q...), %d hard links; want one name and %d links", len(counted), counted, links, names-1)
	}
	// The base tar is in name order (docker keeps it as imported):
	// /bin/blob holds the data, /data/blob links to it.
	if got := strings.Join(blob, "; "); got != "/bin/blob deleted link= visible=/data/blob; /data/blob  link=/bin/blob visible=" {
		t.Errorf("blob: %s", got)
	}
	// The text form says it too.
	txt := mustAmber(t, "layers", arch)
	for _, want := range []string{
		fmt.Sprintf("A %s  [%d bytes, deleted in layer 1]", counted[0], size),
		fmt.Sprintf("A /bin/ls  [hard link to %s, deleted in layer 1]", counted[0]),
		"A /bin/blob  [4096 bytes, deleted in layer 1, still visible as /data/blob]",
		fmt.Sprintf("%d bytes wasted by later layers", size),
	} {
		if !strings.Contains(txt, want) {
			t.Errorf("amber layers: no %q in\n%.3000s", want, txt)
		}
	}
}
