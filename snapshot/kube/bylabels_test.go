package kube

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// fakeLabelled is a (possibly lying) containerd: its list and records.
type fakeLabelled struct {
	engine.Runtime
	list []engine.Summary
	recs map[string]map[string]any // by the ID asked
}

func (f *fakeLabelled) List(context.Context) ([]engine.Summary, error) { return f.list, nil }

func (f *fakeLabelled) Container(_ context.Context, id string) (*engine.Container, error) {
	r, ok := f.recs[id]
	if !ok {
		return nil, engine.ErrNoSuchObject
	}
	raw, _ := json.Marshal(r)
	rid, _ := r["ID"].(string)
	return &engine.Container{ID: rid, Raw: raw}, nil
}

const (
	lsbID   = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	lappID  = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	liarID  = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
	strayID = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
)

func labelledPod() *fakeLabelled {
	labels := func(kind, pod, ctr string) map[string]string {
		l := map[string]string{labelKind: kind, LabelPodNamespace: "prod", LabelPodName: pod, LabelPodUID: "uid-1"}
		if ctr != "" {
			l[LabelContainerName] = ctr
		}
		return l
	}
	rec := func(id, kind, pod, ctr, sandbox string) map[string]any {
		return map[string]any{"ID": id, "Labels": labels(kind, pod, ctr),
			"Spec": map[string]any{"annotations": map[string]string{annotationSandboxID: sandbox}}}
	}
	f := &fakeLabelled{recs: map[string]map[string]any{
		lsbID:   rec(lsbID, "sandbox", "web", "", lsbID),
		lappID:  rec(lappID, "container", "web", "app", lsbID),
		liarID:  rec(liarID, "container", "other", "app", lsbID),  // listed as web's, its record says other's
		strayID: rec(strayID, "container", "web", "old", strayID), // of another sandbox of the name
	}}
	for _, id := range []string{lsbID, lappID, liarID, strayID} {
		f.list = append(f.list, engine.Summary{ID: id, Pod: "prod/web", Pid: 1, State: "running"})
	}
	return f
}

// TestFindPodByLabels: the sandbox and containers of the pod asked, and
// nothing a record does not say is the pod's own; every lie refused.
func TestFindPodByLabels(t *testing.T) {
	ctx := context.Background()
	p, err := FindPodByLabels(ctx, labelledPod(), "prod", "web")
	if err != nil {
		t.Fatal(err)
	}
	if p.Sandbox.ID != lsbID || p.Sandbox.FoundBy != FoundByLabels || p.UID != "uid-1" || len(p.Containers) != 1 ||
		p.Containers[0].ID != lappID || p.Containers[0].Name != "app" || p.Containers[0].LogPath != "" {
		t.Errorf("found %+v", p)
	}
	for what, lie := range map[string]func(f *fakeLabelled){
		"ID not hex":        func(f *fakeLabelled) { f.list[1].ID = "../../x"; f.recs["../../x"] = f.recs[lappID] },
		"record of another": func(f *fakeLabelled) { f.recs[lappID]["ID"] = liarID },
		"name a path": func(f *fakeLabelled) {
			f.recs[lappID]["Labels"].(map[string]string)[LabelContainerName] = "../etc"
		},
		"UID a path": func(f *fakeLabelled) {
			f.recs[lsbID]["Labels"].(map[string]string)[LabelPodUID] = ".."
		},
		"container of another UID": func(f *fakeLabelled) {
			f.recs[lappID]["Labels"].(map[string]string)[LabelPodUID] = "uid-2"
		},
	} {
		f := labelledPod()
		lie(f)
		if p, err := FindPodByLabels(ctx, f, "prod", "web"); !errors.Is(err, engine.ErrEngineClaim) {
			t.Errorf("%s: %+v, %v; want the claim refused", what, p, err)
		}
	}
	f := labelledPod()
	delete(f.recs, lsbID)
	if _, err := FindPodByLabels(ctx, f, "prod", "web"); !errors.Is(err, engine.ErrNoSuchObject) || !strings.Contains(err.Error(), "no sandbox") {
		t.Errorf("no sandbox: %v", err)
	}
	if _, err := FindPodByLabels(ctx, labelledPod(), "prod", "../web"); !errors.Is(err, engine.ErrNoSuchObject) {
		t.Errorf("a path as the pod's name: %v", err)
	}
}
