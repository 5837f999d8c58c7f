package attest

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	ita1 "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
)

const (
	// PayloadType is the DSSE payload type of an in-toto Statement.
	PayloadType = "application/vnd.in-toto+json"
	// PredicateType is amber's acquisition record (doc.go lists its fields).
	PredicateType = "https://amber-forensics.dev/acquisition/v1"
	// ManifestName is the archive member the predicate's manifest digest is of.
	ManifestName = "amber/manifest.json"
)

// ErrStatement: an envelope's statement that is not amber's, or not
// about this archive.
var ErrStatement = errors.New("attest: statement")

// Subject is what a statement is signed for: the sealed archive.
type Subject struct {
	// Name is the archive's file name (no directory).
	Name string
	// SHA256 is the archive file's digest; ManifestSHA256 its manifest's
	// (the trailer's, checked when the archive was opened).
	SHA256, ManifestSHA256 hashing.Digest
	Manifest               *manifest.Manifest
}

// Predicate is amber's acquisition record (PredicateType).
type Predicate struct {
	Case        string      `json:"case,omitempty"`
	Exhibit     string      `json:"exhibit,omitempty"`
	Examiner    string      `json:"examiner,omitempty"`
	Notes       string      `json:"notes,omitempty"`
	Tool        PTool       `json:"tool"`
	Host        PHost       `json:"host"`
	CommandLine []string    `json:"command_line"`
	Started     string      `json:"started"`
	Finished    string      `json:"finished"`
	Sources     []PSource   `json:"sources"`
	Engine      *PEngine    `json:"engine,omitempty"`
	Artifacts   []PArtifact `json:"artifacts"`
	Manifest    PManifest   `json:"manifest"`
	Custody     PCustody    `json:"custody"`
}

// PTool is the program that sealed the archive.
type PTool struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// PHost is the machine and user that captured.
type PHost struct {
	Name   string `json:"name"`
	OS     string `json:"os"`
	Kernel string `json:"kernel,omitempty"`
	User   string `json:"user"`
	UID    int    `json:"uid"`
}

// PSource is one input of the capture.
type PSource struct {
	Kind   string `json:"kind"`
	Path   string `json:"path"`
	SHA256 string `json:"sha256,omitempty"`
	Size   int64  `json:"size,omitempty"`
}

// PEngine is the runtime captured from.
type PEngine struct {
	Runtime    string `json:"runtime,omitempty"`
	Name       string `json:"name,omitempty"`
	Version    string `json:"version,omitempty"`
	APIVersion string `json:"api_version,omitempty"`
	Host       string `json:"host,omitempty"`
}

// PArtifact is one captured image, container, volume, pod or artifact.
type PArtifact struct {
	Kind       string   `json:"kind"`
	Name       string   `json:"name"`
	Refs       []string `json:"refs,omitempty"`
	ImageID    string   `json:"image_id,omitempty"`
	MerkleRoot string   `json:"merkle_root,omitempty"`
	Files      int      `json:"files"`
	Layers     int      `json:"layers"`
}

// PManifest names the archive's manifest and its digest.
type PManifest struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// PCustody is the sealed custody log's head.
type PCustody struct {
	Head   string `json:"head"`
	Events int    `json:"events"`
}

func utc(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func hexOrEmpty(d hashing.Digest) string {
	if d.IsZero() {
		return ""
	}
	return d.String()
}

// NewPredicate reads the acquisition record from the manifest.
func NewPredicate(s Subject) Predicate {
	m := s.Manifest
	a := m.Acquisition
	p := Predicate{
		Case: m.Case.Case, Exhibit: m.Case.Exhibit, Examiner: m.Case.Examiner, Notes: m.Case.Notes,
		Tool:        PTool{Name: m.Tool.Name, Version: m.Tool.Version},
		Host:        PHost{Name: a.Host, OS: a.OS, Kernel: a.Kernel, User: a.User, UID: a.UID},
		CommandLine: append([]string{}, a.CommandLine...),
		Started:     utc(a.Started), Finished: utc(a.Finished),
		Sources:   []PSource{},
		Artifacts: []PArtifact{},
		Manifest:  PManifest{Name: ManifestName, Digest: map[string]string{"sha256": s.ManifestSHA256.Hex()}},
		Custody:   PCustody{Head: hexOrEmpty(m.Custody.Head), Events: m.Custody.Events},
	}
	for _, src := range a.Sources {
		ps := PSource{Kind: src.Kind, Path: src.Path, Size: src.Size}
		if !src.SHA256.IsZero() {
			ps.SHA256 = src.SHA256.Hex()
		}
		p.Sources = append(p.Sources, ps)
	}
	if d := a.Docker; d != nil {
		p.Engine = &PEngine{Runtime: d.Runtime, Name: d.Name, Version: d.Version, APIVersion: d.APIVersion, Host: d.Host}
		if p.Engine.Runtime == "" {
			p.Engine.Runtime = "docker"
		}
	} else if a.Engine != "" {
		p.Engine = &PEngine{Runtime: a.Engine}
	}
	for _, art := range m.Artifacts {
		p.Artifacts = append(p.Artifacts, PArtifact{Kind: art.Kind, Name: art.Name, Refs: art.Refs,
			ImageID: hexOrEmpty(art.ImageID), MerkleRoot: hexOrEmpty(art.MerkleRoot), Files: art.Files, Layers: len(art.Layers)})
	}
	return p
}

// Statement renders the in-toto Statement v1 about s, as the DSSE
// payload.
func Statement(s Subject) ([]byte, error) {
	pj, err := json.Marshal(NewPredicate(s))
	if err != nil {
		return nil, err
	}
	pred := &structpb.Struct{}
	if err := protojson.Unmarshal(pj, pred); err != nil {
		return nil, fmt.Errorf("predicate: %w", err)
	}
	st := &ita1.Statement{
		Type:          ita1.StatementTypeUri,
		Subject:       []*ita1.ResourceDescriptor{{Name: s.Name, Digest: map[string]string{"sha256": s.SHA256.Hex()}}},
		PredicateType: PredicateType,
		Predicate:     pred,
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("statement: %w", err)
	}
	return protojson.Marshal(st)
}

// ParsedStatement is what a payload says.
type ParsedStatement struct {
	SubjectName   string
	SubjectSHA256 string
	Predicate     Predicate
}

// ParseStatement reads a payload: an in-toto Statement v1 of amber's
// predicate type with one subject that has a SHA-256.
func ParseStatement(payload []byte) (*ParsedStatement, error) {
	var st ita1.Statement
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(payload, &st); err != nil {
		return nil, fmt.Errorf("%w: not an in-toto statement: %v", ErrStatement, err)
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStatement, err)
	}
	if st.GetType() != ita1.StatementTypeUri {
		return nil, fmt.Errorf("%w: type %q, not %s", ErrStatement, st.GetType(), ita1.StatementTypeUri)
	}
	if st.GetPredicateType() != PredicateType {
		return nil, fmt.Errorf("%w: predicate type %q, not %s", ErrStatement, st.GetPredicateType(), PredicateType)
	}
	if len(st.GetSubject()) != 1 {
		return nil, fmt.Errorf("%w: %d subjects, want the archive alone", ErrStatement, len(st.GetSubject()))
	}
	sub := st.GetSubject()[0]
	ps := &ParsedStatement{SubjectName: sub.GetName(), SubjectSHA256: sub.GetDigest()["sha256"]}
	if ps.SubjectSHA256 == "" {
		return nil, fmt.Errorf("%w: its subject has no sha256", ErrStatement)
	}
	pj, err := protojson.Marshal(st.GetPredicate())
	if err != nil {
		return nil, fmt.Errorf("%w: predicate: %v", ErrStatement, err)
	}
	if err := json.Unmarshal(pj, &ps.Predicate); err != nil {
		return nil, fmt.Errorf("%w: predicate: %v", ErrStatement, err)
	}
	return ps, nil
}
