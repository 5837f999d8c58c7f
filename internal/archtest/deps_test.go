package archtest

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/amber-forensics/amber/"

// allowed lists, per package, the amber packages it may import.
var allowed = map[string][]string{
	"hashing": {},
	// The evidence model: manifest.json, custody, names.
	"manifest": {"hashing"},
	// The per-layer file index and the archive container. archive writes
	// and verifies indexes, so it may use fileindex; never the reverse.
	"fileindex":       {"manifest", "hashing", "internal/extsort", "internal/bufpool"},
	"archive":         {"manifest", "hashing", "fileindex", "internal/extsort", "internal/bufpool", "internal/tmpfile"},
	"archive/cgozstd": {"archive"},
	"imageconfig":     {"internal/textsafe"},
	// OCI layer semantics in one place; acquisition uses them, not the
	// mount layout.
	"layers": {"fileindex", "manifest", "hashing", "internal/textsafe"},
	"view":   {"archive", "fileindex", "manifest", "hashing", "imageconfig", "layers"},
	// Examination: one package per job, over the view.
	"timeline": {"view", "archive", "fileindex", "manifest", "hashing"},
	"treediff": {"view", "archive", "fileindex", "manifest", "hashing"},
	"extract":  {"view", "archive", "fileindex", "manifest", "hashing"},
	"export":   {"view", "archive", "fileindex", "manifest", "hashing", "layers"},
	"fusefs":   {"view", "archive", "fileindex", "manifest", "hashing", "internal/textsafe"},
	// The examiner's report: a data view over the examination packages.
	"report": {"view", "archive", "fileindex", "manifest", "hashing", "layers", "treediff", "imageconfig", "internal/textsafe"},
	// The interactive explorer (amber browse): the examination packages
	// under a terminal interface; never snapshot.
	"browse": {"view", "archive", "fileindex", "manifest", "hashing", "layers", "imageconfig", "extract", "internal/textsafe"},
	// Signatures and trusted time of a sealed archive (amber sign, verify --key).
	"attest": {"archive", "manifest", "hashing"},
	// Acquisition never imports the mount layout (view) or fusefs.
	"snapshot": {"archive", "fileindex", "manifest", "hashing", "layers", "internal/textsafe", "internal/tmpfile", "snapshot/procmem", "snapshot/source", "snapshot/engine"},
	// The seam to container runtimes: a leaf that snapshot and every
	// runtime package import, so that neither needs the other.
	"snapshot/engine":     {"manifest", "hashing"},
	"snapshot/docker":     {"manifest", "hashing", "snapshot/engine"},
	"snapshot/containerd": {"manifest", "hashing", "snapshot/engine", "snapshot/freezer"},
	// The cgroup freezer of a container's processes (pause without a runtime).
	"snapshot/freezer": {"snapshot/engine"},
	// Podman's storage read directly: the container's PID is checked
	// against its cgroup as procmem checks it.
	"snapshot/podman": {"manifest", "hashing", "snapshot/engine", "snapshot/procmem", "snapshot/freezer", "snapshot/internal/layerstore"},
	// A dead host's runtime state read from its files (amber host, capture
	// host): each one more implementation of the seam, the layer checks of
	// the stores that keep tar-split records in one place.
	"snapshot/dockerroot":          {"manifest", "hashing", "snapshot/engine", "snapshot/internal/layerstore"},
	"snapshot/containerdroot":      {"manifest", "hashing", "snapshot/engine", "snapshot/kube"},
	"snapshot/internal/layerstore": {"manifest", "hashing", "snapshot/engine"},
	// An OCI registry: images to capture, and the shared store of sealed
	// evidence (pushed, pulled, read lazily).
	"snapshot/registry": {"archive", "manifest", "hashing", "snapshot/source"},
	// Tests' pushes of evidence artifacts (readers tested without amber push).
	"snapshot/registry/registrytest": {"snapshot/registry"},
	// Kubernetes pods through the CRI: finding a pod's containers, their logs.
	"snapshot/kube": {"snapshot/engine"},
	// Process memory and ELF cores: the standard library and x/sys only.
	"snapshot/procmem": {},
	"cmd/amber":        {"archive", "archive/cgozstd", "fileindex", "manifest", "hashing", "snapshot", "snapshot/engine", "snapshot/docker", "snapshot/containerd", "snapshot/podman", "snapshot/kube", "snapshot/dockerroot", "snapshot/containerdroot", "snapshot/registry", "snapshot/procmem", "view", "layers", "fusefs", "imageconfig", "timeline", "treediff", "extract", "report", "internal/textsafe", "browse", "attest", "export"},
	// The one escaping of evidence strings printed for a person.
	"internal/textsafe": {},
	// Building blocks of archive and fileindex.
	"internal/extsort": {"internal/tmpfile"},
	"internal/bufpool": {},
	"internal/tmpfile": {},
	// Test support may use what it tests; nothing but tests and the
	// generator may use it.
	"internal/fixture":        {"archive", "archive/cgozstd", "manifest", "hashing", "snapshot"},
	"internal/fixture/gen":    {"internal/fixture", "manifest", "hashing", "snapshot"},
	"internal/fixture/bounds": {},
	"internal/testenv":        {},
	// The DFXML check shared by export's and cmd/amber's tests.
	"export/dfxmltest":  {"internal/testenv"},
	"internal/archtest": {},
	// The benchmarks' generator of a synthetic dead host.
	"bench/fakehost": {},

	// Image sources over amber's hardened stores, as go-containerregistry
	// types; they read sources, never write archives.
	"snapshot/source": {"fileindex", "manifest", "hashing"},
}

// Only snapshot/docker talks to Docker, only snapshot/containerd to
// containerd; only snapshot to go-containerregistry.
var external = map[string][]string{
	"github.com/docker/":                     {"snapshot/docker"},
	"github.com/containerd/containerd/":      {"snapshot/containerd", "snapshot/containerdroot"},
	"github.com/google/go-containerregistry": {"snapshot", "snapshot/source", "snapshot/registry", "snapshot/registry/registrytest"},
}

// ociTypes are the go-containerregistry packages that are only OCI types
// (DESIGN.md: one set of OCI types everywhere), which a reader may use
// without talking to a registry.
var ociTypes = map[string][]string{
	"archive": {"github.com/google/go-containerregistry/pkg/v1", "github.com/google/go-containerregistry/pkg/v1/types"},
}

// onlyModules: these packages import, besides the standard library and
// the amber packages allowed above, only modules under these prefixes.
var onlyModules = map[string][]string{
	"snapshot/procmem": {"golang.org/x/sys/"},
	"snapshot/podman":  {"golang.org/x/sys/", "github.com/vbatts/tar-split/", "go.etcd.io/bbolt"},
	// Docker's files: tar-split records and the kernel's openat2 only.
	"snapshot/dockerroot":          {"golang.org/x/sys/"},
	"snapshot/internal/layerstore": {"golang.org/x/sys/", "github.com/vbatts/tar-split/"},
}

func TestImportDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(p.ImportPath, mod)
		ok, known := allowed[name]
		if !known {
			t.Errorf("package %s has no rule in archtest: add one", name)
			continue
		}
		seen++
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, mod) {
				dep := strings.TrimPrefix(imp, mod)
				if !contains(ok, dep) {
					t.Errorf("%s imports %s: not allowed", name, dep)
				}
			}
			if only, ok := onlyModules[name]; ok && !strings.HasPrefix(imp, mod) && strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") && !hasPrefix(imp, only) {
				t.Errorf("%s imports %s: only the standard library and %v", name, imp, only)
			}
			for prefix, who := range external {
				if strings.HasPrefix(imp, prefix) && !contains(who, name) && !contains(ociTypes[name], imp) {
					t.Errorf("%s imports %s: only %v may", name, imp, who)
				}
			}
		}
	}
	if seen < 5 {
		t.Fatalf("only %d packages checked", seen)
	}
}

// TestReadersPureGo: nothing that only reads an archive links the cgo
// zstd encoder (DESIGN.md: readers are pure Go; cmd/amber chooses the
// encoder for capture).
func TestReadersPureGo(t *testing.T) {
	readers := []string{"archive", "fileindex", "manifest", "layers", "view", "fusefs", "treediff", "timeline", "extract", "export"}
	for _, r := range readers {
		out, err := exec.Command("go", "list", "-deps", mod+r).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", r, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, "github.com/DataDog/zstd") || dep == mod+"archive/cgozstd" {
				t.Errorf("%s links %s", r, dep)
			}
		}
	}
	// The check can fail: the command line does link it (with cgo).
	out, err := exec.Command("go", "list", "-deps", mod+"cmd/amber").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), mod+"archive/cgozstd") {
		t.Error("cmd/amber does not link archive/cgozstd: the check above proves nothing")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func hasPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
