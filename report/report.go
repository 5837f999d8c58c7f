package report

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/imageconfig"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/treediff"
	"github.com/amber-forensics/amber/view"
)

// Signature is one signature found beside the archive, as the caller
// checked it (or did not: Checked false). The report shows it; it does
// not verify it.
type Signature struct {
	KeyID  string `json:"key_id"`
	Signer string `json:"signer,omitempty"` // the signer's certificate subject, when the envelope carries one
	// Examiner is who the signed statement names; VerifiedWith what the
	// signature was checked with (a key file, the --ca root).
	Examiner     string     `json:"examiner,omitempty"`
	VerifiedWith string     `json:"verified_with,omitempty"`
	Algorithm    string     `json:"algorithm,omitempty"`
	Checked      bool       `json:"checked"`
	Valid        bool       `json:"valid"`
	Problem      string     `json:"problem,omitempty"`
	Timestamp    *time.Time `json:"timestamp,omitempty"` // an RFC 3161 token's time, when one was found
	TSA          string     `json:"tsa,omitempty"`
}

// Input is what Build reads besides the archive's own members.
type Input struct {
	Archive *archive.Archive
	// Name is the archive as the examiner named it (a path, or docker://REF).
	Name string
	// Sidecars is the path the sidecars are found at (Sidecars.sha256,
	// .md5, .sha1, .custody.jsonl); empty when there are none to read.
	Sidecars string
	// Verification is the run made just before (archive.Verify), dated
	// VerifiedAt, taking VerifySeconds; nil when none was made.
	Verification  *archive.Report
	VerifiedAt    time.Time
	VerifySeconds float64
	Signatures    []Signature
	// SignaturesFrom names where the signatures were looked for.
	SignaturesFrom string
	// Files lists every file of every layer with its SHA-256.
	Files bool
	// Generated dates the report; GeneratedBy names the tool making it.
	Generated   time.Time
	GeneratedBy string
}

// Report is the examiner's report: every figure read from the archive, its
// sidecars and the verification run.
type Report struct {
	Generated      time.Time            `json:"generated"`
	GeneratedBy    string               `json:"generated_by"`
	Archive        ArchiveFile          `json:"archive"`
	Case           manifest.Case        `json:"case"`
	Tool           manifest.Tool        `json:"tool"`
	FormatVersion  int                  `json:"format_version"`
	Acquisition    manifest.Acquisition `json:"acquisition"`
	Signatures     []Signature          `json:"signatures"`
	SignaturesFrom string               `json:"signatures_from,omitempty"`
	Verification   Verification         `json:"verification"`
	Custody        Custody              `json:"custody"`
	Artifacts      []Artifact           `json:"artifacts"`
	Findings       Findings             `json:"findings"`
	// Files is set with Input.Files: every file of every layer.
	Files []LayerFiles `json:"files,omitempty"`
}

// ArchiveFile is the archive file and its hashes.
type ArchiveFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size,omitempty"`
	Hashes []Hash `json:"hashes"`
}

// Hash is one digest of the whole archive file and where it comes from.
type Hash struct {
	Algorithm string `json:"algorithm"` // SHA-256, MD5, SHA-1
	Value     string `json:"value"`     // hex
	Source    string `json:"source"`    // "computed at report time", or the sidecar or event recording it
	// Status compares a recorded value with the file: "matches the file",
	// "DIFFERS from the file", "checked by the verification run", or "" for
	// the value computed now.
	Status string `json:"status,omitempty"`
	OK     bool   `json:"ok"`
	// sidecar: Source is a sum sidecar, which verify checks.
	sidecar bool
}

// Verification is the run made at report time, as amber verify makes it.
type Verification struct {
	Run     bool      `json:"run"`
	At      time.Time `json:"at,omitzero"`
	Seconds float64   `json:"seconds,omitempty"`
	// Result is "intact", or "FAILED (N problems)", or "not run".
	Result string          `json:"result"`
	OK     bool            `json:"ok"`
	Report *archive.Report `json:"report,omitempty"`
}

// Custody is the custody log: the events sealed inside the archive, then
// those appended to its sidecar, and whether the chain holds.
type Custody struct {
	Intact bool `json:"intact"`
	// Status says so in words ("intact: 4 sealed + 2 later events"), or
	// names the first break.
	Status   string         `json:"status"`
	Problems []string       `json:"problems,omitempty"`
	Sealed   int            `json:"sealed_events"`
	Later    int            `json:"later_events"`
	Head     hashing.Digest `json:"head,omitzero"`
	Events   []CustodyEvent `json:"events"`
	Sidecar  string         `json:"sidecar,omitempty"`
	Warnings []string       `json:"warnings,omitempty"`
	raw      []manifest.Event
}

// CustodyEvent is one event and where it is stored ("sealed" or "sidecar").
type CustodyEvent struct {
	manifest.Event
	Stored string `json:"stored"`
}

// Artifact is one captured artifact.
type Artifact struct {
	Kind       string         `json:"kind"`
	Name       string         `json:"name"`
	Refs       []string       `json:"refs,omitempty"`
	ImageID    hashing.Digest `json:"image_id,omitzero"`
	Platform   string         `json:"platform,omitempty"`
	Manifest   hashing.Digest `json:"manifest,omitzero"`
	Config     hashing.Digest `json:"config,omitzero"`
	MerkleRoot hashing.Digest `json:"merkle_root,omitzero"`
	Files      int            `json:"files"`
	Layers     []Layer        `json:"layers,omitempty"`
	// Blobs are an OCI artifact's blobs.
	Blobs     []manifest.Blob     `json:"blobs,omitempty"`
	Container *manifest.Container `json:"container,omitempty"`
	Pod       *manifest.Pod       `json:"pod,omitempty"`
	// ConfigProblem says why created-by is not shown (a config that does
	// not parse, or whose history does not pair with the layers).
	ConfigProblem string `json:"config_problem,omitempty"`
}

// Layer is one layer of an artifact.
type Layer struct {
	Index      int                `json:"index"`
	Digest     hashing.Digest     `json:"digest"`
	Size       int64              `json:"size"`
	Files      int                `json:"files"`
	MerkleRoot hashing.Digest     `json:"merkle_root"`
	CreatedBy  string             `json:"created_by,omitempty"`
	Missing    bool               `json:"not_present,omitempty"`
	ClaimedID  hashing.Digest     `json:"claimed_diff_id,omitzero"`
	Trailing   *manifest.Trailing `json:"trailing,omitempty"`
}

// Findings are what an examiner reads first.
type Findings struct {
	Containers []ContainerChanges `json:"container_changes"`
	// EngineDisagreements are the paths on which the runtime's own change
	// list and amber's content comparison differ.
	EngineDisagreements []manifest.Anomaly `json:"engine_disagreements"`
	Anomalies           []manifest.Anomaly `json:"anomalies"`
	Memory              []Memory           `json:"memory"`
	// MemorySkipped says, per container, why its memory was not taken.
	MemorySkipped map[string]string `json:"memory_skipped,omitempty"`
}

// ContainerChanges is a container against its image (amber diff ARCHIVE
// containers/NAME), from the file indexes.
type ContainerChanges struct {
	Container string `json:"container"`
	Image     string `json:"image,omitempty"`
	Added     int    `json:"added"`
	Changed   int    `json:"changed"`
	Deleted   int    `json:"deleted"`
	// ContentOnly counts the C paths whose content changed while every
	// other recorded field (size, mtime, mode, owner) stayed: an edit made
	// to pass unnoticed.
	ContentOnly int `json:"content_only"`
	// Recorded are the counts the capture recorded (changes.txt).
	Recorded manifest.ChangeCounts `json:"recorded"`
	Changes  []Change              `json:"changes"`
	Problem  string                `json:"problem,omitempty"`
}

// Change is one path that differs between a container and its image.
type Change struct {
	Kind string `json:"kind"` // A, C or D
	Path string `json:"path"`
	// PathBase64 is the path's bytes when they are not UTF-8.
	PathBase64   string         `json:"path_base64,omitempty"`
	What         []string       `json:"what,omitempty"`
	ContentOnly  bool           `json:"content_only,omitempty"`
	ChildrenOnly bool           `json:"children_only,omitempty"`
	Old          *treediff.Info `json:"old,omitempty"`
	New          *treediff.Info `json:"new,omitempty"`
}

// Memory is one process's memory dump.
type Memory struct {
	Container  string         `json:"container"`
	PID        int            `json:"pid"`
	Comm       string         `json:"comm"`
	Dir        string         `json:"dir"`
	Mappings   int            `json:"mappings"`
	Bytes      int64          `json:"bytes"`
	CoreSize   int64          `json:"core_size"`
	CoreSHA256 hashing.Digest `json:"core_sha256,omitzero"`
	Unreadable int            `json:"unreadable_regions"`
	Lost       string         `json:"lost,omitempty"`
}

// LayerFiles lists the files of one layer as stored (whiteout markers
// included), once however many artifacts share the layer.
type LayerFiles struct {
	Digest hashing.Digest `json:"digest"`
	// In names the artifacts and the layer's place in each
	// ("images/web_1 layer 0").
	In    []string   `json:"in"`
	Files []FileHash `json:"files"`
}

// FileHash is one file of a layer.
type FileHash struct {
	Path       string         `json:"path"`
	PathBase64 string         `json:"path_base64,omitempty"`
	Type       string         `json:"type"`
	Size       int64          `json:"size"`
	SHA256     hashing.Digest `json:"sha256,omitzero"`
	Link       string         `json:"link,omitempty"`
}

// Build reads the report of in.Archive.
func Build(in Input) (*Report, error) {
	a := in.Archive
	if a == nil || a.Manifest == nil {
		return nil, errors.New("report: no archive")
	}
	m := a.Manifest
	r := &Report{
		Generated: in.Generated.UTC(), GeneratedBy: in.GeneratedBy,
		Case: m.Case, Tool: m.Tool, FormatVersion: m.FormatVersion, Acquisition: m.Acquisition,
		Signatures: in.Signatures, SignaturesFrom: in.SignaturesFrom,
		Artifacts: []Artifact{},
	}
	if r.Signatures == nil {
		r.Signatures = []Signature{}
	}
	r.Acquisition.Started, r.Acquisition.Finished = r.Acquisition.Started.UTC(), r.Acquisition.Finished.UTC()
	r.Verification = verification(in)
	r.Custody = custody(a, in.Sidecars)
	r.Archive = archiveFile(in, r.Custody.raw)
	for i := range m.Artifacts {
		r.Artifacts = append(r.Artifacts, artifact(a, &m.Artifacts[i]))
	}
	f, err := findings(a)
	if err != nil {
		return nil, err
	}
	r.Findings = f
	if in.Files {
		if r.Files, err = files(a); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func verification(in Input) Verification {
	v := Verification{Result: "not run"}
	if in.Verification == nil {
		return v
	}
	vr := in.Verification
	v.Run, v.At, v.Seconds, v.Report, v.OK = true, in.VerifiedAt.UTC(), in.VerifySeconds, vr, vr.OK()
	v.Result = "intact"
	if !vr.OK() {
		v.Result = fmt.Sprintf("FAILED (%d problems)", len(vr.Problems))
	}
	if v.Report.Problems == nil {
		v.Report.Problems = []manifest.Problem{}
	}
	if v.Report.Warnings == nil {
		v.Report.Warnings = []manifest.Problem{}
	}
	return v
}

// archiveFile lists the archive's hashes: the SHA-256 the verification run
// computed, then what the sidecars and the sealed event record.
func archiveFile(in Input, evs []manifest.Event) ArchiveFile {
	f := ArchiveFile{Name: in.Name, Hashes: []Hash{}}
	var computed string
	if vr := in.Verification; vr != nil {
		f.Size = vr.Size
		computed = vr.SHA256.Hex()
		f.Hashes = append(f.Hashes, Hash{Algorithm: "SHA-256", Value: computed, Source: "computed at report time (verification run)", OK: true})
	}
	if in.Sidecars == "" {
		return f
	}
	base := filepath.Base(in.Sidecars)
	for _, s := range []struct{ ext, alg string }{{".sha256", "SHA-256"}, {".md5", "MD5"}, {".sha1", "SHA-1"}} {
		b, err := readSmall(in.Sidecars+s.ext, 64<<10)
		if err != nil {
			continue
		}
		want, _, _ := strings.Cut(strings.TrimRight(string(b), "\n"), "  ")
		h := Hash{Algorithm: s.alg, Value: strings.TrimSpace(want), Source: base + s.ext, sidecar: true}
		h.Status, h.OK = recordedStatus(in.Verification, s.alg, h.Value, computed, base+s.ext)
		f.Hashes = append(f.Hashes, h)
	}
	// The sealed event records the digests capture computed as it wrote.
	for _, e := range evs {
		if e.Action != "sealed" {
			continue
		}
		for _, k := range []struct{ key, alg string }{{"sha256", "SHA-256"}, {"md5", "MD5"}, {"sha1", "SHA-1"}} {
			if v := e.Details[k.key]; v != "" {
				h := Hash{Algorithm: k.alg, Value: v, Source: fmt.Sprintf("custody log seq %d (sealed, %s)", e.Seq, e.Time.UTC().Format(time.RFC3339))}
				h.Status, h.OK = recordedStatus(in.Verification, k.alg, v, computed, "")
				if k.alg != "SHA-256" {
					h.Status, h.OK = eventStatus(in.Verification, f.Hashes, e, k.alg)
				}
				f.Hashes = append(f.Hashes, h)
			}
		}
		break
	}
	return f
}

// readSmall reads the start of a sidecar: a sum line is short, and the
// file is beside the evidence, where anyone could have made it huge.
func readSmall(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}

// recordedStatus compares a recorded digest with the file: SHA-256 with
// the one computed now; MD5 and SHA-1 as the verification run checked
// them (it computes them when their sidecar is there, and names the
// sidecar in a problem when they differ).
func recordedStatus(vr *archive.Report, alg, value, computed, sidecar string) (string, bool) {
	if vr == nil {
		return "not checked (no verification run)", false
	}
	if alg == "SHA-256" {
		if strings.EqualFold(value, computed) {
			return "matches the file", true
		}
		return "DIFFERS from the file", false
	}
	if sidecar == "" {
		return "recorded (the verification run checks the .md5/.sha1 sidecars)", true
	}
	for _, p := range vr.Problems {
		if strings.Contains(p.Detail, sidecar) || p.Where == sidecar {
			return "DIFFERS from the file: " + p.Detail, false
		}
	}
	return "matches the file (checked by the verification run)", true
}

// eventStatus says whether the MD5 or SHA-1 the sealed event records is
// the file's: verify computes them only when their sidecar is there, and
// then checks every event's against the file, naming the event when one
// differs.
func eventStatus(vr *archive.Report, hs []Hash, e manifest.Event, alg string) (string, bool) {
	if vr == nil {
		return "not checked (no verification run)", false
	}
	where := manifest.CustodyWhere(e, false)
	for _, p := range vr.Problems {
		if p.Where == where && strings.Contains(p.Detail, strings.ReplaceAll(alg, "-", "")) {
			return "DIFFERS from the file: " + p.Detail, false
		}
	}
	for _, h := range hs {
		if h.Algorithm == alg && h.sidecar {
			return "matches the file (checked by the verification run)", true
		}
	}
	return "recorded; not checked (no " + strings.ToLower(strings.ReplaceAll(alg, "-", "")) + " sidecar for the verification run to compute it)", false
}

// custody reads the sealed log and the sidecar's, as amber log does.
func custody(a *archive.Archive, sidecars string) Custody {
	m := a.Manifest
	c := Custody{Events: []CustodyEvent{}}
	cb, err := a.ReadEntry(m.Custody.Entry, manifest.MaxCustodySize)
	if err != nil {
		c.Status = "BROKEN: the sealed log cannot be read: " + err.Error()
		return c
	}
	sealed, head, err := manifest.ParseCustody(bytes.NewReader(cb), hashing.Digest{}, 0)
	if err == nil && (head != m.Custody.Head || len(sealed) != m.Custody.Events) {
		err = fmt.Errorf("%w: sealed log ends at %s, the manifest says %s", manifest.ErrChainBroken, head.Hex(), m.Custody.Head.Hex())
	}
	add := func(evs []manifest.Event, where string) {
		for _, e := range evs {
			e.Time = e.Time.UTC()
			c.Events = append(c.Events, CustodyEvent{Event: e, Stored: where})
			c.raw = append(c.raw, e)
		}
	}
	add(sealed, "sealed")
	c.Sealed = len(sealed)
	if err != nil {
		c.Status = "BROKEN: " + err.Error()
		c.Problems = append(c.Problems, err.Error())
		return c
	}
	if sidecars != "" {
		c.Sidecar = filepath.Base(sidecars) + ".custody.jsonl"
		side, h, serr := manifest.ParseCustodyFile(sidecars+".custody.jsonl", m.Custody.Head, m.Custody.Events)
		switch {
		case errors.Is(serr, os.ErrNotExist):
			c.Sidecar = ""
		default:
			add(side, "sidecar")
			c.Later, head = len(side), h
			if serr != nil {
				c.Status = "BROKEN: " + c.Sidecar + ": " + serr.Error()
				c.Problems = append(c.Problems, c.Sidecar+": "+serr.Error())
				return c
			}
		}
	}
	for _, p := range manifest.TimeOrder(c.raw, len(sealed)) {
		c.Problems = append(c.Problems, p.String())
	}
	if w, renamed := manifest.Renamed(c.raw, filepath.Base(sidecars)); renamed && sidecars != "" {
		c.Warnings = append(c.Warnings, w.String())
	}
	c.Head = head
	if len(c.Problems) > 0 {
		c.Status = fmt.Sprintf("FAILED: %d problem(s); the chain of %d sealed + %d later events holds", len(c.Problems), c.Sealed, c.Later)
		return c
	}
	c.Intact = true
	c.Status = fmt.Sprintf("intact: %d sealed + %d later events, chained from the sealed head", c.Sealed, c.Later)
	return c
}

func artifact(a *archive.Archive, art *manifest.Artifact) Artifact {
	out := Artifact{Kind: art.Kind, Name: art.Name, Refs: art.Refs, ImageID: art.ImageID, Platform: art.Platform,
		Manifest: art.Manifest.Digest, Config: art.Config.Digest, MerkleRoot: art.MerkleRoot, Files: art.Files,
		Blobs: art.Blobs, Container: art.Container, Pod: art.Pod}
	createdBy := map[int]string{}
	if len(art.Layers) > 0 && !art.Config.Digest.IsZero() {
		b, err := a.ReadEntry(manifest.BlobName(art.Config.Digest), imageconfig.MaxConfigSize)
		var c *imageconfig.Config
		if err == nil {
			c, err = imageconfig.Parse(b)
		}
		if err != nil {
			out.ConfigProblem = "created-by not shown: " + err.Error()
		} else {
			steps, ok := c.Steps()
			if !ok {
				out.ConfigProblem = "the config's history does not pair with the layers (squashed or edited): created-by shown as far as it goes"
			}
			for _, s := range steps {
				if s.Layer >= 0 {
					createdBy[s.Layer] = s.CreatedBy
				}
			}
		}
	}
	for i, l := range art.Layers {
		out.Layers = append(out.Layers, Layer{Index: i, Digest: l.Digest, Size: l.Size, Files: l.Files, MerkleRoot: l.MerkleRoot,
			CreatedBy: createdBy[i], Missing: l.Missing, ClaimedID: l.DiffID, Trailing: l.Trailing})
	}
	return out
}

func findings(a *archive.Archive) (Findings, error) {
	m := a.Manifest
	f := Findings{Containers: []ContainerChanges{}, EngineDisagreements: []manifest.Anomaly{}, Anomalies: []manifest.Anomaly{}, Memory: []Memory{}}
	for _, an := range m.Anomalies {
		// One without a path says the runtime keeps no list to compare.
		if an.Kind == "engine-change-list" && an.Path != "" {
			f.EngineDisagreements = append(f.EngineDisagreements, an)
		} else {
			f.Anomalies = append(f.Anomalies, an)
		}
	}
	v := &view.View{A: a}
	for i := range m.Artifacts {
		art := &m.Artifacts[i]
		if art.Kind != manifest.KindContainer || art.Container == nil {
			continue
		}
		cc, err := containerChanges(v, art)
		if err != nil {
			return f, err
		}
		f.Containers = append(f.Containers, cc)
		if art.Container.MemorySkipped != "" {
			if f.MemorySkipped == nil {
				f.MemorySkipped = map[string]string{}
			}
			f.MemorySkipped[art.Name] = art.Container.MemorySkipped
		}
		for _, p := range art.Container.Processes {
			mem := Memory{Container: art.Name, PID: p.PID, Comm: p.Comm, Dir: p.Dir, Mappings: p.Mappings, Bytes: p.Bytes,
				Unreadable: len(p.Unreadable), Lost: p.Lost}
			for _, mb := range art.Container.Members {
				if mb.Path == p.Dir+"/core" {
					mem.CoreSize, mem.CoreSHA256 = mb.Size, mb.SHA256
				}
			}
			f.Memory = append(f.Memory, mem)
		}
	}
	return f, nil
}

// containerChanges compares the container with its image as amber diff
// ARCHIVE containers/NAME does (pristine -> rootfs), from the indexes. A
// tree that cannot be read is a problem of this container's, said in the
// report, not a reason to give no report.
func containerChanges(v *view.View, art *manifest.Artifact) (ContainerChanges, error) {
	cc := ContainerChanges{Container: art.Name, Image: art.Container.Image, Recorded: art.Container.Changes, Changes: []Change{}}
	root := func(p string) (treediff.Tree, error) {
		en, err := v.Stat(p)
		if err != nil {
			return nil, err
		}
		if !en.IsDir() {
			return nil, fmt.Errorf("%s is not a directory", p)
		}
		return treediff.ViewTree{V: v, Dir: en}, nil
	}
	base := "containers/" + art.Name
	ta, err := root(base + "/pristine")
	if err != nil {
		cc.Problem = "not compared: " + err.Error()
		return cc, nil
	}
	tb, err := root(base + "/rootfs")
	if err != nil {
		cc.Problem = "not compared: " + err.Error()
		return cc, nil
	}
	changes, err := treediff.Compare(ta, tb, treediff.Options{})
	if err != nil {
		if errors.Is(err, fileindex.ErrBadIndex) || errors.Is(err, manifest.ErrCorrupt) {
			cc.Problem = "not compared: " + err.Error()
			return cc, nil
		}
		return cc, fmt.Errorf("comparing %s with its image: %w", base, err)
	}
	for _, ch := range changes {
		c := Change{Kind: string(ch.Kind), Path: ch.Path, What: ch.What, ChildrenOnly: ch.ChildrenOnly, Old: ch.Old, New: ch.New}
		if !utf8.ValidString(ch.Path) {
			c.PathBase64 = base64.StdEncoding.EncodeToString([]byte(ch.Path))
		}
		switch ch.Kind {
		case 'A':
			cc.Added++
		case 'D':
			cc.Deleted++
		case 'C':
			cc.Changed++
			if len(ch.What) == 1 && ch.What[0] == treediff.FieldContent {
				c.ContentOnly = true
				cc.ContentOnly++
			}
		}
		cc.Changes = append(cc.Changes, c)
	}
	return cc, nil
}

// files lists every layer's files from its index, each layer once.
func files(a *archive.Archive) ([]LayerFiles, error) {
	var out []LayerFiles
	at := map[hashing.Digest]int{}
	for _, art := range a.Manifest.Artifacts {
		for i, l := range art.Layers {
			where := fmt.Sprintf("%ss/%s layer %d", art.Kind, art.Name, i)
			if k, ok := at[l.Digest]; ok {
				out[k].In = append(out[k].In, where)
				continue
			}
			at[l.Digest] = len(out)
			lf := LayerFiles{Digest: l.Digest, In: []string{where}, Files: []FileHash{}}
			if !l.Missing {
				ix, err := a.Index(l.Digest)
				if err != nil {
					return nil, fmt.Errorf("the file index of layer %s: %w", l.Digest, err)
				}
				for k := uint32(0); k < ix.Len(); k++ {
					rec, err := ix.Record(k)
					if err != nil {
						return nil, fmt.Errorf("the file index of layer %s: %w", l.Digest, err)
					}
					if rec.Has(fileindex.FlagImplicit) {
						continue // a parent no tar entry holds: not a file of the layer
					}
					fh := FileHash{Path: "/" + rec.Path, Type: view.TypeName(rec.Type), Size: rec.Size, Link: rec.Linkname}
					if rec.Type == fileindex.TypeReg || rec.Type == fileindex.TypeLink {
						fh.SHA256 = rec.SHA256
					}
					if !utf8.ValidString(fh.Path) {
						fh.PathBase64 = base64.StdEncoding.EncodeToString([]byte(fh.Path))
					}
					lf.Files = append(lf.Files, fh)
				}
			}
			out = append(out, lf)
		}
	}
	return out, nil
}

// sortedKeys lists a map's keys in order (event details).
func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
