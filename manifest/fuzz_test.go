package manifest

import (
	"bytes"
	"testing"

	"github.com/amber-forensics/amber/hashing"
)

func FuzzParseManifest(f *testing.F) {
	m := &Manifest{Format: FormatName, FormatVersion: FormatVersion, Artifacts: []Artifact{{Kind: KindImage, Name: "x"}}, Entries: []Entry{{Name: "a", HeaderOffset: 0, Offset: 512, Size: 3}}}
	b, _ := m.Marshal()
	f.Add(b)
	f.Add([]byte(`{"format":"amber-evidence","format_version":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		if _, err := m.Marshal(); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseCustody(f *testing.F) {
	c := NewChain(hashing.Digest{}, 0)
	c.Append(Event{Action: "a", Details: map[string]string{"k": "v"}})
	c.Append(Event{Action: "b"})
	f.Add(c.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) { ParseCustody(bytes.NewReader(b), hashing.Digest{}, 0) })
}
