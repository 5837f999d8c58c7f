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
	"hashing":     {},
	"manifest":    {"hashing"},
	"imageconfig": {"internal/textsafe"},
	"timeline":    {"manifest", "hashing", "view"},
	"treediff":    {"manifest", "hashing", "view"},
	"extract":     {"manifest", "hashing", "view"},
	"view":        {"manifest", "hashing", "imageconfig", "layers"},
	// OCI layer semantics in one place; acquisition uses them, not the
	// mount layout.
	"layers":   {"manifest", "hashing", "internal/textsafe"},
	"snapshot": {"manifest", "hashing", "layers", "internal/textsafe", "snapshot/procmem"},
	// Process memory and ELF cores: the standard library and x/sys only.
	"snapshot/procmem": {},
	"fusefs":           {"manifest", "hashing", "view"},
	"cmd/amber":        {"manifest", "hashing", "snapshot", "view", "layers", "fusefs", "imageconfig", "timeline", "treediff", "extract", "internal/textsafe"},
	// The one escaping of evidence strings printed for a person.
	"internal/textsafe": {},
	// Test support may use what it tests; nothing but tests and the
	// generator may use it.
	"internal/fixture":        {"manifest", "hashing", "snapshot"},
	"internal/fixture/gen":    {"internal/fixture", "manifest", "hashing", "snapshot"},
	"internal/fixture/bounds": {},
	"internal/testenv":        {},
	"internal/archtest":       {},
}

// Only snapshot talks to Docker or go-containerregistry.
var external = map[string][]string{
	"github.com/docker/":                     {"snapshot"},
	"github.com/google/go-containerregistry": {"snapshot"},
}

// onlyModules: these packages import, besides the standard library and
// the amber packages allowed above, only modules under these prefixes.
var onlyModules = map[string][]string{
	"snapshot/procmem": {"golang.org/x/sys/"},
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
				if strings.HasPrefix(imp, prefix) && !contains(who, name) {
					t.Errorf("%s imports %s: only %v may", name, imp, who)
				}
			}
		}
	}
	if seen < 5 {
		t.Fatalf("only %d packages checked", seen)
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
