//go:build linux

package containerdroot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/pkg/identifiers"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// CheckID takes containerd's own IDs: identifiers (letters, digits, '_',
// '.', '-', 76 at most), not only Docker's 64 hex digits.
func (s *Store) CheckID(id string) error { return identifiers.Validate(id) }

// findContainer finds the container ref names, "namespace/id" or an ID
// unique across namespaces but Docker's own (moby: unless it was first
// asked for as moby/<id>), and reads its whole record.
func (s *Store) findContainer(ref string, withSpec bool) (container, error) {
	ns, id, qualified := strings.Cut(ref, "/")
	if !qualified {
		id = ref
	}
	if identifiers.Validate(id) != nil {
		return container{}, &engine.Fault{Kind: engine.ErrNoSuchObject, Err: fmt.Errorf("no such container: %q is no containerd ID", ref)}
	}
	cs, err := s.containers(withSpec)
	if err != nil {
		return container{}, err
	}
	// The capture asks for a container's logs by its bare ID: the
	// namespace it named when it inspected it decides.
	s.mu.Lock()
	want, ok := s.chosen[id]
	s.mu.Unlock()
	var found []container
	for _, c := range cs {
		if c.ID != id || (qualified && c.Namespace != ns) || (!qualified && c.Namespace == dockerNamespace && want != dockerNamespace) {
			continue
		}
		found = append(found, c)
	}
	if len(found) > 1 {
		for _, c := range found {
			if ok && c.Namespace == want {
				return c, nil
			}
		}
	}
	switch len(found) {
	case 0:
		return container{}, &engine.Fault{Kind: engine.ErrNoSuchObject, Err: fmt.Errorf("no such container: %s", ref)}
	case 1:
		if qualified {
			s.mu.Lock()
			s.chosen[id] = ns
			s.mu.Unlock()
		}
		return found[0], nil
	}
	var nss []string
	for _, c := range found {
		nss = append(nss, c.Namespace)
	}
	return container{}, &engine.Fault{Kind: engine.ErrNoSuchObject, Err: fmt.Errorf("container %s is in %d namespaces (%s): give namespace/%s", id, len(found), strings.Join(nss, ", "), id)}
}

// criMetadata is the extension where containerd's CRI plugin keeps its
// record of a Kubernetes container.
const criMetadata = "io.cri-containerd.container.metadata"

// inspectRecord is a container as its record in the dead host's
// containerd root describes it, stored as inspect.json.
type inspectRecord struct {
	Namespace   string            `json:"Namespace"`
	ID          string            `json:"ID"`
	Labels      map[string]string `json:"Labels"`
	Image       string            `json:"Image"`
	ImageID     string            `json:"ImageID,omitempty"`
	Runtime     string            `json:"Runtime"`
	Snapshotter string            `json:"Snapshotter"`
	SnapshotKey string            `json:"SnapshotKey"`
	// SnapshotID is the overlayfs snapshotter's number of the active
	// snapshot; UpperDir its fs directory.
	SnapshotID    string          `json:"SnapshotID,omitempty"`
	UpperDir      string          `json:"UpperDir,omitempty"`
	SnapshotError string          `json:"SnapshotError,omitempty"`
	SandboxID     string          `json:"SandboxID,omitempty"`
	CreatedAt     time.Time       `json:"CreatedAt"`
	UpdatedAt     time.Time       `json:"UpdatedAt"`
	Extensions    []string        `json:"Extensions,omitempty"`
	CRIMetadata   json.RawMessage `json:"CRIMetadata,omitempty"`
	Spec          json.RawMessage `json:"Spec,omitempty"`
	// State is StateOffline: no task state survives in the root.
	State string `json:"State"`
	// Offline says where the record was read: the data root.
	Offline string `json:"Offline"`
}

// dockerConfig is the part of a Docker container's Config that a
// container's OCI spec and record say (as the live runtime gives it).
type dockerConfig struct {
	Hostname   string            `json:"Hostname,omitempty"`
	User       string            `json:"User,omitempty"`
	Tty        bool              `json:"Tty"`
	Env        []string          `json:"Env"`
	Cmd        []string          `json:"Cmd"`
	Image      string            `json:"Image"`
	WorkingDir string            `json:"WorkingDir"`
	Labels     map[string]string `json:"Labels"`
}

// Container inspects a container ("namespace/id", or an ID unique across
// namespaces) from its record: never running here (Running, Paused false,
// Pid 0), its state StateOffline; its upper directory the overlayfs
// snapshotter's fs directory of its active snapshot.
func (s *Store) Container(ctx context.Context, ref string) (*engine.Container, error) {
	rec, err := s.findContainer(ref, true)
	if err != nil {
		return nil, wrap(err, "container "+ref+" in containerd's root "+s.dataRoot)
	}
	what := fmt.Sprintf("container %s/%s in %s", rec.Namespace, rec.ID, metaDB)
	if rec.Err != nil {
		return nil, wrap(rec.Err, what)
	}
	ir := inspectRecord{Namespace: rec.Namespace, ID: rec.ID, Labels: rec.Labels, Image: rec.Image, Runtime: rec.Runtime,
		Snapshotter: rec.Snapshotter, SnapshotKey: rec.SnapshotKey, SandboxID: rec.SandboxID, CreatedAt: rec.CreatedAt,
		UpdatedAt: rec.UpdatedAt, State: StateOffline, Offline: s.realData}
	for _, k := range sortedKeys(rec.Extensions) {
		ir.Extensions = append(ir.Extensions, k)
		if v := rec.Extensions[k].GetValue(); k == criMetadata && json.Valid(v) {
			ir.CRIMetadata = v
		}
	}
	c := &engine.Container{ID: rec.ID, Name: nameOf(rec), ImageRef: rec.Image, State: StateOffline, Driver: rec.Snapshotter,
		Storage: map[string]string{"Snapshotter": rec.Snapshotter, "SnapshotKey": rec.SnapshotKey}}
	if c.Name == "(sandbox)" {
		c.Name = rec.ID
	}
	var spec specs.Spec
	if rec.Spec != nil {
		if !json.Valid(rec.Spec) {
			return nil, engine.Claimf("%s: its spec is not JSON (%.200s)", what, rec.SpecType)
		}
		ir.Spec = rec.Spec
		if err := json.Unmarshal(rec.Spec, &spec); err != nil {
			return nil, engine.Claimf("%s: its spec: %v", what, err)
		}
	}
	cfg := dockerConfig{Image: rec.Image, Labels: rec.Labels, Hostname: spec.Hostname}
	if p := spec.Process; p != nil {
		c.Tty = p.Terminal
		cfg.Tty, cfg.Env, cfg.Cmd, cfg.WorkingDir = p.Terminal, p.Env, p.Args, p.Cwd
		cfg.User = fmt.Sprintf("%d:%d", p.User.UID, p.User.GID)
	}
	if b, err := json.Marshal(cfg); err == nil {
		c.Config = b
	}
	// Host paths bound into the container are recorded, never walked.
	for _, m := range spec.Mounts {
		if slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind") || m.Type == "bind" {
			c.Mounts = append(c.Mounts, engine.Mount{Type: "bind", Source: m.Source, Destination: m.Destination, RW: !slices.Contains(m.Options, "ro")})
		}
	}
	if rec.Snapshotter != "" && rec.SnapshotKey != "" {
		upper, id, err := s.upperDir(rec)
		if err != nil && errors.Is(err, engine.ErrEngineClaim) {
			return nil, wrap(err, what)
		}
		if err != nil {
			ir.SnapshotError, c.Storage["SnapshotError"] = err.Error(), err.Error()
		} else {
			ir.SnapshotID, ir.UpperDir, c.Storage["UpperDir"] = id, upper, upper
		}
	}
	// The image it runs, by its config's digest, as Docker names images;
	// looked up in its own namespace.
	if rec.Image != "" {
		res, err := s.findImage(rec.Namespace + "/" + rec.Image)
		switch {
		case err == nil:
			c.Image, ir.ImageID = res.config.Digest.String(), res.config.Digest.String()
			s.mu.Lock()
			s.imageNS[res.Digest] = rec.Namespace
			s.mu.Unlock()
		case !errors.Is(err, engine.ErrNoSuchObject):
			return nil, wrap(err, "the image "+rec.Image+" of "+what)
		}
	}
	raw, err := json.MarshalIndent(ir, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("recording %s: %w", what, err)
	}
	c.Raw = raw
	return c, nil
}

var snapshotID = regexp.MustCompile(`^[1-9][0-9]{0,19}$`)

// upperDir is the fs directory of the container's active snapshot in the
// overlayfs snapshotter, checked to be a real directory beneath its
// snapshots directory (no symbolic link anywhere), and the snapshot's
// number.
func (s *Store) upperDir(rec container) (string, string, error) {
	if rec.Snapshotter != overlayfs {
		return "", "", &engine.Unavailable{Why: fmt.Sprintf("the snapshotter is %.64q, not overlayfs: amber does not read it offline", rec.Snapshotter)}
	}
	name, err := s.snapshotName(rec.Namespace, rec.Snapshotter, rec.SnapshotKey)
	if err != nil {
		return "", "", err
	}
	snap, err := s.overlaySnap(name)
	if err != nil {
		return "", "", err
	}
	if snap.Kind != kindActive {
		return "", "", engine.Claimf("the container's snapshot %q is of kind %d in the overlayfs snapshotter's database, not active", name, snap.Kind)
	}
	id := strconv.FormatUint(snap.ID, 10)
	dir, err := s.dirBeneath(overlayRoot + "/snapshots/" + id + "/fs")
	if err != nil {
		return "", "", err
	}
	return dir, id, nil
}

// UpperDirs returns the container's upper directory: the overlayfs
// snapshotter's <root>/snapshots/<number>/fs of its active snapshot, a
// real directory beneath the data root (checked again here: the path is
// the capture's to read). containerd has no init layer.
func (s *Store) UpperDirs(c *engine.Container) ([]string, error) {
	upper := c.Storage["UpperDir"]
	switch {
	case c.Driver != overlayfs:
		return nil, &engine.Unavailable{Why: fmt.Sprintf("the snapshotter is %.64q, not overlayfs: amber does not read it offline", c.Driver)}
	case upper == "" && c.Storage["SnapshotError"] != "":
		return nil, &engine.Unavailable{Why: "the container's snapshot: " + c.Storage["SnapshotError"]}
	case upper == "":
		return nil, &engine.Unavailable{Why: "the container has no active snapshot"}
	}
	prefix := filepath.Join(s.realData, overlayRoot, "snapshots") + "/"
	n, ok := strings.CutSuffix(strings.TrimPrefix(upper, prefix), "/fs")
	if !strings.HasPrefix(upper, prefix) || !ok || !snapshotID.MatchString(n) {
		return nil, engine.Claimf("the container's upper directory %s is not snapshots/<number>/fs of the overlayfs snapshotter in %s", upper, s.realData)
	}
	dir, err := s.dirBeneath(overlayRoot + "/snapshots/" + n + "/fs")
	if err != nil {
		return nil, err
	}
	return []string{dir}, nil
}

// VolumeDir refuses: containerd has no named volumes (a container's
// mounts are binds of host paths, recorded and never walked).
func (s *Store) VolumeDir(name, source string) (string, error) {
	return "", engine.Claimf("containerd keeps no named volumes (%s at %s): not read", name, source)
}

// Changes answers that a dead host's containerd keeps no change list.
func (s *Store) Changes(ctx context.Context, id string) ([]engine.Change, error) {
	return nil, &engine.Unavailable{Why: "containerd keeps no change list; changes.txt is the content comparison with the image"}
}

// Export is unavailable: no containerd runs to export a filesystem; the
// upper directory is read directly.
func (s *Store) Export(ctx context.Context, id string) (io.ReadCloser, error) {
	return nil, &engine.Unavailable{Why: "no containerd runs on a dead host's root: the container's files are read from its upper directory"}
}

// CopyFrom is unavailable, as Export.
func (s *Store) CopyFrom(ctx context.Context, id, path string) (io.ReadCloser, error) {
	return nil, &engine.Unavailable{Why: "no containerd runs on a dead host's root: the container's files are read from its upper directory"}
}

// errOffline: nothing runs on a dead host.
var errOffline = errors.New("the container is not running: it was read from a dead host's containerd root")

// Pause refuses: no container of a dead host runs.
func (s *Store) Pause(ctx context.Context, id string) error {
	return &engine.Fault{Kind: engine.ErrEngine, Err: errOffline}
}

// Unpause answers that the container was not paused.
func (s *Store) Unpause(ctx context.Context, id string) error { return engine.ErrNotPaused }
