package snapshot_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot"
	"github.com/amber-forensics/amber/snapshot/engine"
)

// fakeRuntime is a container runtime in memory: one image, containers
// running it, and a fault the test injects at any call. It records the
// pauses and unpauses, so a test can hold the capture to "always
// unpause".
type fakeRuntime struct {
	t       *testing.T
	local   bool
	save    []byte // docker save of the image
	imageID string
	diffIDs []string
	export  []byte // every container's filesystem, as docker export
	ctrs    map[string]*engine.Container
	// fail, when set, answers a call (its name: "Pause", "Export", ...)
	// for a container or image with an error instead.
	fail func(call, id string) error
	// exportBody, when set, replaces the export stream.
	exportBody func(ctx context.Context) io.Reader
	upperDirs  func(c *engine.Container) ([]string, error)

	mu                sync.Mutex
	paused            map[string]bool
	pauses, unpauses  []string
	unpauseCtxWasDone bool
}

func newFakeRuntime(t *testing.T, names ...string) *fakeRuntime {
	t.Helper()
	layer := fixture.Layer(fixture.Dir("etc/"), fixture.File("etc/hostname", "fake\n"), fixture.Dir("srv/"), fixture.File("srv/app", "app\n"))
	img := fixture.Image{Tags: []string{"fake:1"}, Layers: [][]byte{layer}}
	p := filepath.Join(t.TempDir(), "save.tar")
	if err := fixture.DockerSave(p, img); err != nil {
		t.Fatal(err)
	}
	save, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// The container's filesystem: the image's files and one new one.
	export := fixture.Layer(fixture.Dir("etc/"), fixture.File("etc/hostname", "fake\n"), fixture.Dir("srv/"), fixture.File("srv/app", "app\n"),
		fixture.File("srv/dropped", "the attacker was here\n"))
	f := &fakeRuntime{t: t, save: save, imageID: sum(img.Config()), diffIDs: []string{sum(layer)}, export: export,
		ctrs: map[string]*engine.Container{}, paused: map[string]bool{}}
	for i, n := range names {
		id := strings.Repeat(fmt.Sprintf("%x", i+10), 64)
		f.ctrs[n] = &engine.Container{ID: id, Name: "/" + n, Image: f.imageID, ImageRef: "fake:1", State: "running", Running: true, Pid: 4242 + i,
			Driver: "overlay2", Storage: map[string]string{}, Config: []byte(`{"Image":"fake:1"}`), Raw: []byte(`{"Id":"` + id + `"}`)}
	}
	return f
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func (f *fakeRuntime) fault(call, id string) error {
	if f.fail == nil {
		return nil
	}
	return f.fail(call, id)
}

func (f *fakeRuntime) Info() manifest.Engine {
	return manifest.Engine{Host: "fake://", ID: "fake", Name: "fake", Version: "0", APIVersion: "0", Local: f.local}
}

func (f *fakeRuntime) Container(ctx context.Context, ref string) (*engine.Container, error) {
	if err := f.fault("Container", ref); err != nil {
		return nil, err
	}
	c, ok := f.ctrs[ref]
	if !ok {
		return nil, &engine.Fault{Kind: engine.ErrNoSuchObject, Err: errors.New("no such container: " + ref)}
	}
	cc := *c
	return &cc, nil
}

func (f *fakeRuntime) Image(ctx context.Context, ref string) (*engine.Image, error) {
	if err := f.fault("Image", ref); err != nil {
		return nil, err
	}
	if ref != "fake:1" && ref != f.imageID {
		return nil, &engine.Fault{Kind: engine.ErrNoSuchObject, Err: errors.New("no such image: " + ref)}
	}
	return &engine.Image{ID: f.imageID, DiffIDs: f.diffIDs}, nil
}

func (f *fakeRuntime) SaveImage(ctx context.Context, ref string) (io.ReadCloser, error) {
	if err := f.fault("SaveImage", ref); err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(f.save)), nil
}

func (f *fakeRuntime) Export(ctx context.Context, id string) (io.ReadCloser, error) {
	if err := f.fault("Export", id); err != nil {
		return nil, err
	}
	if f.exportBody != nil {
		return io.NopCloser(f.exportBody(ctx)), nil
	}
	return io.NopCloser(bytes.NewReader(f.export)), nil
}

func (f *fakeRuntime) CopyFrom(ctx context.Context, id, path string) (io.ReadCloser, error) {
	return nil, &engine.Fault{Kind: engine.ErrEngine, Err: errors.New("the fake copies nothing")}
}

func (f *fakeRuntime) UpperDirs(c *engine.Container) ([]string, error) {
	if f.upperDirs != nil {
		return f.upperDirs(c)
	}
	return nil, &engine.Unavailable{Why: "the fake has no upper directory"}
}

func (f *fakeRuntime) VolumeDir(name, source string) (string, error) {
	return "", engine.Claimf("the fake keeps no volumes")
}

func (f *fakeRuntime) Changes(ctx context.Context, id string) ([]engine.Change, error) {
	if err := f.fault("Changes", id); err != nil {
		return nil, err
	}
	return []engine.Change{{Kind: 'A', Path: "/srv/dropped"}}, nil
}

type fakeLogs struct{ err error }

func (l fakeLogs) Copy(stdout, stderr io.Writer) error {
	if _, err := io.WriteString(stdout, "2024-03-01T12:00:00Z hello\n"); err != nil {
		return err
	}
	return l.err
}
func (l fakeLogs) Close() error { return nil }

func (f *fakeRuntime) Logs(ctx context.Context, id string, tty bool) (engine.LogStream, error) {
	return fakeLogs{f.fault("Logs.Copy", id)}, nil
}

func (f *fakeRuntime) Pause(ctx context.Context, id string) error {
	if err := f.fault("Pause", id); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paused[id] = true
	f.pauses = append(f.pauses, id)
	return nil
}

func (f *fakeRuntime) Unpause(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ctx.Err() != nil {
		f.unpauseCtxWasDone = true
	}
	if err := f.fault("Unpause", id); err != nil {
		return err
	}
	if !f.paused[id] {
		return engine.ErrNotPaused
	}
	delete(f.paused, id)
	f.unpauses = append(f.unpauses, id)
	return nil
}

func (f *fakeRuntime) Close() error { return nil }

// stillPaused lists the containers the capture left paused.
func (f *fakeRuntime) stillPaused() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.paused {
		out = append(out, id[:12])
	}
	return out
}

func (f *fakeRuntime) capture(ctx context.Context, dir string, pause bool, containers ...string) (*snapshot.Result, error) {
	return snapshot.CaptureEngine(ctx, f, snapshot.EngineRequest{Containers: containers, Output: filepath.Join(dir, "out.tar.zst"),
		Tool: manifest.Tool{Name: "amber", Version: "test"}, Pause: pause, Route: snapshot.RouteAuto})
}

// nothingLeft fails when the capture left anything in dir: the archive,
// its partial file, a sidecar or a temporary file.
func nothingLeft(t *testing.T, dir, when string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("%s: left behind: %s", when, e.Name())
	}
}

// events lists the actions of the archive's sealed custody log.
func events(t *testing.T, res *snapshot.Result) []string {
	t.Helper()
	a := fixture.Open(t, res.Sealed.Path)
	b, err := a.ReadEntry(res.Manifest.Custody.Entry, manifest.MaxCustodySize)
	if err != nil {
		t.Fatal(err)
	}
	evs, _, err := manifest.ParseCustody(bytes.NewReader(b), hashing.Digest{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.Action)
	}
	return out
}

// TestFakeRuntimeCapture: a capture through the Runtime interface alone
// (no engine): paused and unpaused once, both in the custody log, the
// export route taken (the runtime is not local) and the container's new
// file found.
func TestFakeRuntimeCapture(t *testing.T) {
	f := newFakeRuntime(t, "web")
	dir := t.TempDir()
	res, err := f.capture(context.Background(), dir, true, "web")
	if err != nil {
		t.Fatal(err)
	}
	id := f.ctrs["web"].ID
	if len(f.pauses) != 1 || len(f.unpauses) != 1 || f.pauses[0] != id || f.unpauses[0] != id {
		t.Errorf("pauses %v, unpauses %v: want one each of %s", f.pauses, f.unpauses, id)
	}
	a, ok := res.Manifest.Artifact(manifest.KindContainer, "web")
	if !ok {
		t.Fatalf("no container artifact: %+v", res.Manifest.Artifacts)
	}
	if a.Container.Route != snapshot.RouteExport || a.Container.Changes.Added != 1 || !a.Container.Paused {
		t.Errorf("container record: route %q, changes %+v, paused %v", a.Container.Route, a.Container.Changes, a.Container.Paused)
	}
	if evs := strings.Join(events(t, res), " "); !strings.Contains(evs, "acquisition-started paused ") || !strings.Contains(evs, " captured unpaused sealing") {
		t.Errorf("custody events: %s; want paused first, unpaused once all is read", evs)
	}
}

// TestNoEngineChangeList: a runtime that keeps no change list of its own
// (Changes answers *engine.Unavailable, as Podman's storage read directly
// does) does not fail the capture: changes.txt is the content comparison,
// no engine-changes.txt is stored, nothing is counted as a disagreement,
// and one anomaly says why.
func TestNoEngineChangeList(t *testing.T) {
	f := newFakeRuntime(t, "web")
	f.fail = func(call, id string) error {
		if call == "Changes" {
			return &engine.Unavailable{Why: "no list here"}
		}
		return nil
	}
	res, err := f.capture(context.Background(), t.TempDir(), false, "web")
	if err != nil {
		t.Fatal(err)
	}
	a, ok := res.Manifest.Artifact(manifest.KindContainer, "web")
	if !ok {
		t.Fatalf("no container artifact: %+v", res.Manifest.Artifacts)
	}
	if c := a.Container.Changes; c.Added != 1 || c.Disagree != 0 {
		t.Errorf("changes %+v: want the content comparison's one addition, no disagreement", c)
	}
	var members []string
	for _, m := range a.Container.Members {
		members = append(members, m.Path)
	}
	if got := strings.Join(members, " "); !strings.Contains(got, "changes.txt") || strings.Contains(got, "engine-changes.txt") {
		t.Errorf("members %s: want changes.txt and no engine-changes.txt", got)
	}
	var why []string
	for _, an := range res.Manifest.Anomalies {
		if an.Kind == "engine-change-list" {
			why = append(why, an.Detail)
		}
	}
	if len(why) != 1 || !strings.Contains(why[0], "no list here") {
		t.Errorf("engine-change-list anomalies %q: want one giving the runtime's reason", why)
	}
}

// TestPauseFailureUnpausesTheOthers: when the engine refuses to pause the
// second container, the capture fails as an engine error, the first
// container (already paused) is unpaused, and nothing is left.
func TestPauseFailureUnpausesTheOthers(t *testing.T) {
	f := newFakeRuntime(t, "a", "b")
	second := f.ctrs["b"].ID
	f.fail = func(call, id string) error {
		if call == "Pause" && id == second {
			return &engine.Fault{Kind: engine.ErrEngine, Err: errors.New("cannot pause: frozen cgroup busy")}
		}
		return nil
	}
	dir := t.TempDir()
	_, err := f.capture(context.Background(), dir, true, "a", "b")
	if !errors.Is(err, snapshot.ErrEngine) || !strings.Contains(err.Error(), "pausing container b") {
		t.Errorf("error %v: want an engine error naming the pause of b", err)
	}
	if len(f.pauses) != 1 || len(f.unpauses) != 1 || f.unpauses[0] != f.ctrs["a"].ID {
		t.Errorf("pauses %v, unpauses %v: want a paused and unpaused", f.pauses, f.unpauses)
	}
	if left := f.stillPaused(); len(left) > 0 {
		t.Errorf("left paused: %v", left)
	}
	nothingLeft(t, dir, "pause refused")
}

// TestFaultsAfterPauseUnpause: whatever call of the runtime fails after
// the containers are paused (the image's inspect or save, the export, the
// change list, the logs), the capture fails with that call named, every
// paused container is unpaused, and nothing is left at the output or
// beside it.
func TestFaultsAfterPauseUnpause(t *testing.T) {
	for _, call := range []string{"Image", "SaveImage", "Export", "Changes", "Logs.Copy"} {
		t.Run(call, func(t *testing.T) {
			f := newFakeRuntime(t, "a", "b")
			pausedYet := false
			f.fail = func(c, id string) error {
				if c == "Pause" {
					pausedYet = true
				}
				if c == call && pausedYet {
					return &engine.Fault{Kind: engine.ErrEngine, Err: errors.New("engine fault injected at " + call)}
				}
				return nil
			}
			dir := t.TempDir()
			_, err := f.capture(context.Background(), dir, true, "a", "b")
			if err == nil || !strings.Contains(err.Error(), "engine fault injected at "+call) {
				t.Errorf("error %v: want the injected fault", err)
			}
			if call != "Logs.Copy" && !errors.Is(err, snapshot.ErrEngine) {
				t.Errorf("error %v: not an engine error", err)
			}
			if len(f.pauses) != 2 || len(f.unpauses) != 2 {
				t.Errorf("pauses %v, unpauses %v: want both paused and unpaused", f.pauses, f.unpauses)
			}
			if left := f.stillPaused(); len(left) > 0 {
				t.Errorf("left paused: %v", left)
			}
			nothingLeft(t, dir, call+" failed")
		})
	}
}

// TestUnpauseFailureReported: an unpause the engine refuses is the
// capture's error (an engine error that says how to unpause by hand), and
// no archive is sealed; a container that turns out not to have been
// paused is no error.
func TestUnpauseFailureReported(t *testing.T) {
	f := newFakeRuntime(t, "a")
	f.fail = func(call, id string) error {
		if call == "Unpause" {
			return &engine.Fault{Kind: engine.ErrEngine, Err: errors.New("cannot unpause")}
		}
		return nil
	}
	dir := t.TempDir()
	_, err := f.capture(context.Background(), dir, true, "a")
	if !errors.Is(err, snapshot.ErrEngine) || !strings.Contains(err.Error(), "docker unpause "+f.ctrs["a"].ID[:12]) {
		t.Errorf("error %v: want an engine error naming docker unpause", err)
	}
	nothingLeft(t, dir, "unpause refused")

	f = newFakeRuntime(t, "a")
	f.fail = func(call, id string) error {
		if call == "Unpause" {
			return engine.ErrNotPaused
		}
		return nil
	}
	dir = t.TempDir()
	res, err := f.capture(context.Background(), dir, true, "a")
	if err != nil {
		t.Fatalf("a container found not paused: %v", err)
	}
	if evs := strings.Join(events(t, res), " "); strings.Contains(evs, "unpaused") {
		t.Errorf("an unpause that never happened is in the custody log: %s", evs)
	}
}

// failingReader gives n bytes of r, then fails.
type failingReader struct {
	r   io.Reader
	n   int
	err error
	hit func()
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		if f.hit != nil {
			f.hit()
		}
		return 0, f.err
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	k, err := f.r.Read(p)
	f.n -= k
	return k, err
}

// TestEngineDiesMidExport: the export stream breaks off half way (the
// engine died): an engine error, the container unpaused, and no archive,
// partial file or temporary layer left.
func TestEngineDiesMidExport(t *testing.T) {
	f := newFakeRuntime(t, "a")
	f.exportBody = func(ctx context.Context) io.Reader {
		return &failingReader{r: bytes.NewReader(f.export), n: len(f.export) / 2, err: io.ErrUnexpectedEOF}
	}
	dir := t.TempDir()
	_, err := f.capture(context.Background(), dir, true, "a")
	if !errors.Is(err, snapshot.ErrEngine) || !strings.Contains(err.Error(), "export stream") {
		t.Errorf("error %v: want an engine error about the export stream", err)
	}
	if left := f.stillPaused(); len(left) > 0 || len(f.unpauses) != 1 {
		t.Errorf("left paused: %v (unpauses %v)", left, f.unpauses)
	}
	nothingLeft(t, dir, "export broken off")
}

// TestCancelledMidExport: Ctrl-C while the export streams: the capture
// fails (an engine error saying the stream was cancelled), the container is unpaused with a context that still
// lets the engine answer, and nothing is left.
func TestCancelledMidExport(t *testing.T) {
	f := newFakeRuntime(t, "a")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.exportBody = func(context.Context) io.Reader {
		return &failingReader{r: bytes.NewReader(f.export), n: len(f.export) / 2, err: context.Canceled, hit: cancel}
	}
	dir := t.TempDir()
	_, err := f.capture(ctx, dir, true, "a")
	if err == nil || !strings.Contains(err.Error(), context.Canceled.Error()) {
		t.Errorf("error %v: want the cancellation", err)
	}
	if left := f.stillPaused(); len(left) > 0 || len(f.unpauses) != 1 {
		t.Errorf("left paused: %v (unpauses %v)", left, f.unpauses)
	}
	if f.unpauseCtxWasDone {
		t.Error("unpause asked with the cancelled context: an engine would refuse it")
	}
	nothingLeft(t, dir, "cancelled")
}

// idRuntime is a runtime with its own ID grammar (containerd's
// identifiers, here: anything the check says yes to).
type idRuntime struct {
	*fakeRuntime
	check func(id string) error
}

func (r idRuntime) CheckID(id string) error { return r.check(id) }

// TestRuntimeIDGrammar: a runtime whose IDs are not 64 hex digits
// (engine.IDChecker: containerd's "web") has them captured under its own
// rule; a runtime that is no IDChecker keeps Docker's; and whatever a
// runtime's rule says, an ID that is not one path element is refused
// before anything is written.
func TestRuntimeIDGrammar(t *testing.T) {
	yes := func(string) error { return nil }
	for _, tc := range []struct {
		id    string
		check func(string) error
		ok    bool
	}{
		{"web", yes, true},
		{"my.app_1-x", yes, true},
		{"web", nil, false},
		{"web", func(string) error { return errors.New("no") }, false},
		{"../web", yes, false},
		{"..", yes, false},
		{".", yes, false},
		{"a/b", yes, false},
		{"", yes, false},
		{"-web", yes, false},
		{"web\n", yes, false},
		{strings.Repeat("w", 129), yes, false},
	} {
		f := newFakeRuntime(t, "a")
		f.ctrs["a"].ID, f.ctrs["a"].Name = tc.id, tc.id
		var rt engine.Runtime = f
		if tc.check != nil {
			rt = idRuntime{f, tc.check}
		}
		dir := t.TempDir()
		res, err := snapshot.CaptureEngine(context.Background(), rt, snapshot.EngineRequest{Containers: []string{"a"}, Output: filepath.Join(dir, "out.tar.zst"),
			Tool: manifest.Tool{Name: "amber", Version: "test"}, Pause: true, Route: snapshot.RouteAuto})
		if !tc.ok {
			if !errors.Is(err, snapshot.ErrEngineClaim) {
				t.Errorf("ID %q (own rule %v): %v, want refused", tc.id, tc.check != nil, err)
			}
			if len(f.pauses) != 0 {
				t.Errorf("ID %q: paused before the ID was checked", tc.id)
			}
			nothingLeft(t, dir, "ID "+tc.id)
			continue
		}
		if err != nil {
			t.Fatalf("ID %q: %v", tc.id, err)
		}
		a, ok := res.Manifest.Artifact(manifest.KindContainer, tc.id)
		if !ok || a.Container.ID != tc.id {
			t.Errorf("ID %q: no container artifact of that name: %+v", tc.id, res.Manifest.Artifacts)
		}
		fixture.Open(t, res.Sealed.Path)
	}
}

// TestHostileInspect: a runtime's answers that amber does not act on.
// An ID that is not 64 hex digits is refused before anything is written;
// an upper directory the runtime places outside its storage is not read
// (the export route is taken and an engine-claims anomaly recorded), and
// with --route upperdir the capture is refused; a negative PID is not a
// running process (no memory is taken).
func TestHostileInspect(t *testing.T) {
	for _, id := range []string{"../../etc", strings.Repeat("A", 64), "", strings.Repeat("a", 63)} {
		f := newFakeRuntime(t, "a")
		f.ctrs["a"].ID = id
		dir := t.TempDir()
		_, err := f.capture(context.Background(), dir, true, "a")
		if !errors.Is(err, snapshot.ErrEngineClaim) {
			t.Errorf("ID %q: %v, want refused", id, err)
		}
		if len(f.pauses) != 0 {
			t.Errorf("ID %q: paused before the ID was checked", id)
		}
		nothingLeft(t, dir, "ID "+id)
	}

	f := newFakeRuntime(t, "a")
	f.local = true
	f.ctrs["a"].Pid = -1
	f.upperDirs = func(c *engine.Container) ([]string, error) {
		return nil, engine.Claimf("the engine places /var/lib/docker/overlay2/../../../etc, which is not overlay2/x/diff")
	}
	dir := t.TempDir()
	res, err := f.capture(context.Background(), dir, false, "a")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := res.Manifest.Artifact(manifest.KindContainer, "a")
	if a.Container == nil || a.Container.Route != snapshot.RouteExport || a.Container.MemorySkipped == "" || len(a.Container.Processes) != 0 {
		t.Errorf("container record %+v: want the export route and no memory", a.Container)
	}
	found := false
	for _, an := range res.Manifest.Anomalies {
		found = found || an.Kind == "engine-claims-upperdir-outside-root" && strings.Contains(an.Detail, "../../../etc")
	}
	if !found {
		t.Errorf("no engine-claims anomaly: %+v", res.Manifest.Anomalies)
	}

	dir = t.TempDir()
	_, err = snapshot.CaptureEngine(context.Background(), f, snapshot.EngineRequest{Containers: []string{"a"}, Output: filepath.Join(dir, "out.tar.zst"),
		Tool: manifest.Tool{Name: "amber", Version: "test"}, Route: snapshot.RouteUpperdir})
	if !errors.Is(err, snapshot.ErrEngineClaim) {
		t.Errorf("--route upperdir on a refused claim: %v", err)
	}
	nothingLeft(t, dir, "--route upperdir refused")
}

// negativeSize is a tar whose first header gives its size as -1 (base-256,
// the checksum mended): what a hostile runtime may stream.
func negativeSize(t *testing.T) []byte {
	t.Helper()
	b := fixture.Layer(fixture.File("srv/x", "x"))
	h := b[:512]
	for i := 124; i < 136; i++ {
		h[i] = 0xff
	}
	for i := 148; i < 156; i++ {
		h[i] = ' '
	}
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:], fmt.Sprintf("%06o\x00", sum))
	return b
}

// TestHostileRuntimeAnswers: answers of a runtime that amber refuses in
// the middle of a capture (a layer that is no digest, an image that
// changed since the capture began, an export stream with a negative
// size): an engine error, every container unpaused, nothing left.
func TestHostileRuntimeAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mangle func(f *fakeRuntime)
	}{
		{"diff_id not a digest", func(f *fakeRuntime) { f.diffIDs = []string{"sha256:../../../etc/passwd"} }},
		{"image changed", func(f *fakeRuntime) {
			n := 0
			f.fail = func(call, id string) error {
				if call == "Image" {
					if n++; n > 1 {
						f.imageID = sum([]byte("another image"))
					}
				}
				return nil
			}
		}},
		{"negative size in the export", func(f *fakeRuntime) {
			f.exportBody = func(context.Context) io.Reader { return bytes.NewReader(negativeSize(t)) }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeRuntime(t, "a")
			tc.mangle(f)
			dir := t.TempDir()
			_, err := f.capture(context.Background(), dir, true, "a")
			t.Log(err)
			if !errors.Is(err, snapshot.ErrEngine) {
				t.Errorf("error %v: want an engine error", err)
			}
			if left := f.stillPaused(); len(left) > 0 || len(f.unpauses) != 1 {
				t.Errorf("left paused: %v (unpauses %v)", left, f.unpauses)
			}
			nothingLeft(t, dir, tc.name)
		})
	}
}
