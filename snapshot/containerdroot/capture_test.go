//go:build linux

package containerdroot_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot"
	"github.com/amber-forensics/amber/snapshot/containerd"
	"github.com/amber-forensics/amber/snapshot/containerdroot"
	"github.com/amber-forensics/amber/view"
)

// TestCaptureOfflineEqualsLive: a container of the test's own
// containerd, changed by an attacker, captured live through the
// containerd runtime; then its task ended and containerd stopped, its
// root captured offline through containerdroot, read-only: both archives
// verify, and the container's rootfs, changes.txt and image layers are
// the same (type, mode, owner, size, mtime, link target, content hash of
// every entry).
func TestCaptureOfflineEqualsLive(t *testing.T) {
	testenv.Docker(t)
	busybox := testenv.Tool(t, "busybox")
	img, err := testenv.BusyboxImage(busybox, t.TempDir(), "amber-ctrdroot-cap-base:1", "amber-ctrdroot-cap:1",
		"FROM amber-ctrdroot-cap-base:1\nRUN mkdir -p /srv && echo hello > /srv/app && echo gone > /srv/old\n", false)
	if err != nil {
		t.Fatal(err)
	}
	const ns, name = "amber-cap", "docker.io/library/amber-ctrdroot-cap:1"
	d := testenv.Containerd(t)
	d.Ctr(t, ns, "images", "import", img)
	d.Ctr(t, ns, "run", "-d", name, "web", "sh", "-c", "while :; do sleep 3600; done")
	d.Ctr(t, ns, "tasks", "exec", "--exec-id", "attacker", "web", "sh", "-c",
		`set -e; echo new > /srv/added; mkdir /srv/dir; ln -s /srv/app /srv/link; echo HELLO > /srv/app; rm /srv/old`)
	ctx := context.Background()
	rt, err := containerd.Dial(ctx, d.Address, ns)
	if err != nil {
		t.Fatal(err)
	}
	liveOut := filepath.Join(t.TempDir(), "live.tar.zst")
	req := snapshot.EngineRequest{Containers: []string{"web"}, NoMemory: true, Tool: manifest.Tool{Name: "amber", Version: "test"}}
	req.Output = liveOut
	if _, err := snapshot.CaptureEngine(ctx, rt, req); err != nil {
		t.Fatal(err)
	}
	rt.Close()
	d.Ctr(t, ns, "tasks", "kill", "-s", "SIGKILL", "web")
	testenv.Shell(t, "for i in $(seq 50); do ctr -a "+d.Address+" -n "+ns+" tasks ls | grep -q RUNNING || exit 0; sleep 0.1; done")
	d.Ctr(t, ns, "tasks", "delete", "web")
	d.Kill(t, syscall.SIGTERM)

	ro := t.TempDir()
	testenv.Run(t, "mount", "--bind", d.Root, ro)
	t.Cleanup(func() { exec.Command("umount", "-l", ro).Run() })
	testenv.Run(t, "mount", "-o", "remount,bind,ro", ro)
	st, err := containerdroot.Open(ro, "/")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	offOut := filepath.Join(t.TempDir(), "offline.tar.zst")
	req.Output = offOut
	res, err := snapshot.CaptureEngine(ctx, st, req)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{liveOut, offOut} {
		if rep, err := archive.Verify(out, archive.VerifyOptions{}); err != nil || len(rep.Problems) > 0 {
			t.Fatalf("verify %s: %v %+v", out, err, rep)
		}
	}
	if acq := res.Manifest.Acquisition.Docker; acq == nil || acq.Offline == nil || acq.Host != "containerd-root:/" {
		t.Errorf("offline acquisition: %+v", acq)
	}
	lv, ov := &view.View{A: fixture.Open(t, liveOut)}, &view.View{A: fixture.Open(t, offOut)}
	for _, p := range []string{"containers/web/rootfs", "containers/web/pristine"} {
		l, o := listView(t, lv, p), listView(t, ov, p)
		if len(l) == 0 {
			t.Errorf("%s: empty in the live capture", p)
		}
		for k, v := range l {
			if o[k] != v {
				t.Errorf("%s/%s: live %q, offline %q", p, k, v, o[k])
			}
		}
		for k, v := range o {
			if _, ok := l[k]; !ok {
				t.Errorf("%s/%s: only offline: %q", p, k, v)
			}
		}
	}
	if l, o := member(t, lv, "containers/web/changes.txt"), member(t, ov, "containers/web/changes.txt"); l != o || !strings.Contains(o, "A /srv/added\n") {
		t.Errorf("changes.txt: live\n%s\noffline\n%s", l, o)
	}
	for _, an := range res.Manifest.Anomalies {
		t.Logf("offline anomaly: %s: %s", an.Kind, an.Detail)
	}
}

func listView(t *testing.T, v *view.View, root string) map[string]string {
	t.Helper()
	top, err := v.Stat(root)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	err = v.Walk(top, func(e *view.Entry) error {
		if e.Path == top.Path {
			return nil
		}
		rel := strings.TrimPrefix(e.Path, top.Path+"/")
		typ, extra, size := view.TypeName(e.Type), "", int64(0)
		switch e.Type {
		case fileindex.TypeSymlink:
			extra = e.Node.Rec.Linkname
		case fileindex.TypeReg:
			r, err := v.Open(e)
			if err != nil {
				return err
			}
			h := sha256.New()
			if _, err := io.Copy(h, r); err != nil {
				return err
			}
			extra, size = hex.EncodeToString(h.Sum(nil)), e.Size
		}
		out[rel] = fmt.Sprintf("%s %o %d:%d %d %d.%09d %s", typ, e.Mode&0o7777, e.Node.Rec.UID, e.Node.Rec.GID, size, e.ModTime.Unix(), e.ModTime.Nanosecond(), extra)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func member(t *testing.T, v *view.View, p string) string {
	t.Helper()
	e, err := v.Stat(p)
	if err != nil {
		t.Errorf("%s: %v", p, err)
		return ""
	}
	r, err := v.Open(e)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
