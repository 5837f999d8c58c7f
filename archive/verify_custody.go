package archive

import (
	"crypto/md5"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/amber-forensics/amber/manifest"
)

// The sidecars beside an archive: its sum files and the custody log of
// what happened to it after sealing.

// checkSidecars compares the whole-file digests with NAME.sha256 (.md5,
// .sha1) and checks the custody log; with no path (an archive read from
// elsewhere than a file), only the sealed custody log.
func (v *verifier) checkSidecars(path string) {
	base := filepath.Base(path)
	for _, s := range []struct {
		ext string
		h   func() hash.Hash
		got *string
	}{{".sha256", nil, nil}, {".md5", md5.New, &v.md5}, {".sha1", sha1.New, &v.sha1}} {
		if path == "" {
			break
		}
		b, err := os.ReadFile(path + s.ext)
		if err != nil {
			continue
		}
		v.r.Sidecars = append(v.r.Sidecars, filepath.Base(path+s.ext))
		want, name, ok := strings.Cut(strings.TrimRight(string(b), "\n"), "  ")
		name = strings.TrimPrefix(name, "*")
		if !ok || name == "" || strings.ContainsAny(name, "/\n") {
			v.add(base+s.ext, "is not a sum line for %s", base)
			continue
		}
		if name != base {
			// Renamed with the archive: the digest still speaks for the
			// content; only tools that open the named file are misled.
			v.r.Warnings = append(v.r.Warnings, manifest.Problem{Where: base + s.ext,
				Detail: fmt.Sprintf("names %s, not %s: the archive was renamed after capture ('%ssum -c' looks for %s)", name, base, strings.TrimPrefix(s.ext, "."), name)})
		}
		var got string
		if s.h == nil {
			got = v.r.SHA256.Hex()
		} else {
			h := s.h()
			if _, err := io.Copy(h, io.NewSectionReader(v.f, 0, v.r.Size)); err != nil {
				v.add(base+s.ext, "reading archive: %v", err)
				continue
			}
			got = hex.EncodeToString(h.Sum(nil))
			*s.got = got
		}
		if got != want {
			v.add("whole file", "digest is %s, %s says %s", got, base+s.ext, want)
		}
	}
	if v.a != nil {
		v.checkCustody(path)
	}
}

// checkCustody checks NAME.custody.jsonl's chain from the sealed head, the
// archive digests its events record against the file, the events' time
// order, the name the archive was sealed under, and the head noted
// earlier; it records the head.
func (v *verifier) checkCustody(path string) {
	base := filepath.Base(path)
	m := v.a.Manifest
	evs := append([]manifest.Event(nil), v.sealed...)
	head, chainOK := m.Custody.Head, v.sealedOK
	cp := path + ".custody.jsonl"
	if _, err := os.Stat(cp); err == nil && path != "" {
		v.r.Sidecars = append(v.r.Sidecars, filepath.Base(cp))
		side, h, err := manifest.ParseCustodyFile(cp, m.Custody.Head, m.Custody.Events)
		v.r.SidecarEvents = len(side)
		if err != nil {
			v.addProblem(manifest.Problem{Where: filepath.Base(cp), Detail: err.Error(), Custody: true})
			chainOK = false
		}
		head = h
		have := map[string]string{"sha256": v.r.SHA256.Hex(), "md5": v.md5, "sha1": v.sha1}
		for _, e := range side {
			for _, k := range []string{"sha256", "md5", "sha1"} {
				rec, got := e.Details[k], have[k]
				if rec == "" || got == "" || rec == got {
					continue
				}
				when := "after this event"
				if e.Action == "sealed" {
					when = "after it was sealed"
				}
				v.addProblem(manifest.Problem{Where: manifest.CustodyWhere(e, false), Custody: true,
					Detail: fmt.Sprintf("records the archive's %s as %s; the file's is %s: the archive changed %s, or this event was edited", strings.ToUpper(k), rec, got, when)})
			}
		}
		evs = append(evs, side...)
	}
	for _, p := range manifest.TimeOrder(evs, len(v.sealed)) {
		v.addProblem(p)
	}
	// Only a file has a name to compare (not a blob read from elsewhere,
	// whose sidecars are kept under another name).
	if w, ok := manifest.Renamed(evs, base); ok && path != "" && path == v.r.Path {
		v.r.Warnings = append(v.r.Warnings, w)
	}
	if chainOK && len(evs) > 0 {
		v.r.CustodyHead, v.r.CustodyHeadSeq = head, evs[len(evs)-1].Seq
	}
	if want := v.opts.ExpectHead; !want.IsZero() {
		if i, ok := manifest.HeadSeq(evs, head, want); ok {
			seq := evs[i].Seq
			v.r.ExpectedHeadSeq = &seq
		} else {
			v.addProblem(manifest.HeadMissing(want, chainOK))
		}
	}
}
