package dfxmltest

import (
	"encoding/base64"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/amber-forensics/amber/internal/testenv"
)

// File is one fileobject as list.py reads it (the name's and the link
// target's exact bytes in base64).
type File struct {
	PathB64 string `json:"path_b64"`
	Type    string `json:"type"`
	SHA256  string `json:"sha256"`
	LinkB64 string `json:"link_b64"`
	MD5     string `json:"md5"`
	SHA1    string `json:"sha1"`
}

// Path is the file's name, byte for byte.
func (f File) Path() string {
	b, _ := base64.StdEncoding.DecodeString(f.PathB64)
	return string(b)
}

// Doc is a document as list.py reads it: its volumes (one a layer) with
// their files, and the fileobjects outside any volume.
type Doc struct {
	Volumes []struct {
		Label  string `json:"label"`
		Digest string `json:"digest"`
		Files  []File `json:"files"`
	} `json:"volumes"`
	Files []File `json:"files"`
}

// testdata is export/testdata/dfxml, found from this file.
func testdata() string {
	_, f, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(f), "..", "testdata", "dfxml")
}

// Check validates the DFXML document at path against dfxml.xsd with
// xmllint and returns it as Python's XML parser reads it.
func Check(t testing.TB, path string) Doc {
	t.Helper()
	xmllint := testenv.Tool(t, "xmllint")
	py := testenv.Tool(t, testenv.DebianPython)
	if out, err := exec.Command(xmllint, "--noout", "--schema", filepath.Join(testdata(), "dfxml.xsd"), path).CombinedOutput(); err != nil {
		t.Fatalf("xmllint --schema dfxml.xsd: %v\n%s", err, out)
	}
	out, err := exec.Command(py, filepath.Join(testdata(), "list.py"), path).Output()
	if err != nil {
		t.Fatalf("list.py: %v", err)
	}
	var d Doc
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatal(err)
	}
	return d
}
