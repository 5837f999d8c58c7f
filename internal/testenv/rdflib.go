package testenv

import (
	"os/exec"
	"testing"
)

// DebianPython is Debian's python3, which has the python3-* packages make
// deps installs; a python3 earlier on PATH may be another installation
// without them.
const DebianPython = "/usr/bin/python3"

// PythonModule returns DebianPython after checking that it imports module
// (from Debian's package pkg), failing in CI and skipping elsewhere when
// it does not.
func PythonModule(t testing.TB, module, pkg string) string {
	t.Helper()
	if out, err := exec.Command(DebianPython, "-c", "import "+module).CombinedOutput(); err != nil {
		missing(t, "%s cannot import %s (Debian's %s; make deps installs it): %v %s", DebianPython, module, pkg, err, out)
	}
	return DebianPython
}

// RDFLib is DebianPython with rdflib: an RDF reader independent of amber,
// for CASE/UCO's JSON-LD.
func RDFLib(t testing.TB) string { return PythonModule(t, "rdflib", "python3-rdflib") }
