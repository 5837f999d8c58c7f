package testenv

import (
	"os/exec"
	"testing"
)

// DebianPython is Debian's python3, which has python3-rdflib; a python3
// earlier on PATH may be another installation without it.
const DebianPython = "/usr/bin/python3"

// RDFLib returns DebianPython after checking that it imports rdflib (an
// RDF reader independent of amber, for CASE/UCO's JSON-LD), failing in
// CI and skipping elsewhere when it does not.
func RDFLib(t testing.TB) string {
	t.Helper()
	if out, err := exec.Command(DebianPython, "-c", "import rdflib").CombinedOutput(); err != nil {
		missing(t, "%s cannot import rdflib (Debian's python3-rdflib; make deps installs it): %v %s", DebianPython, err, out)
	}
	return DebianPython
}
