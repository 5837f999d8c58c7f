//go:build linux

package dockerroot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/internal/layerstore"
)

// record is what amber reads of a container's config.v2.json.
type record struct {
	ID      string
	Created time.Time
	Name    string
	Image   string
	Driver  string
	State   struct {
		Running, Paused, Restarting, Dead, RemovalInProgress bool
		StartedAt, FinishedAt                                time.Time
		ExitCode                                             int
	}
	Config struct {
		Image  string
		Tty    bool
		Labels map[string]string
	}
	MountPoints map[string]struct {
		Type, Name, Source, Destination string
		RW                              bool
	}
}

// status is Docker's status word for the state recorded (moby's
// container.State.StateString).
func (r *record) status() string {
	st := r.State
	switch {
	case st.Running && st.Paused:
		return "paused"
	case st.Running && st.Restarting:
		return "restarting"
	case st.Running:
		return "running"
	case st.RemovalInProgress:
		return "removing"
	case st.Dead:
		return "dead"
	case st.StartedAt.IsZero():
		return "created"
	}
	return "exited"
}

// containerIDs lists the data root's containers/ directory: the names
// that are container IDs.
func (s *Store) containerIDs() ([]string, error) { return s.hexNames("containers", "containers") }

// hexNames lists the names in rel (under the data root) that are 64 hex
// digits, sorted; none when rel is not there. what names it in errors.
func (s *Store) hexNames(rel, what string) ([]string, error) {
	f, err := layerstore.OpenAt(s.dfd, s.real, rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing %s: %w", what, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", f.Name(), err)
	}
	ids := names[:0]
	for _, n := range names {
		if hex64.MatchString(n) {
			ids = append(ids, n)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// readRecord reads and decodes one container's config.v2.json (raw is the
// file as read).
func (s *Store) readRecord(id string) (*record, []byte, error) {
	rel := path.Join("containers", id, "config.v2.json")
	b, err := s.readFile(rel, maxJSON)
	if err != nil {
		return nil, nil, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, nil, fmt.Errorf("%s/%s: %w", s.real, rel, err)
	}
	if r.ID != id {
		return nil, nil, engine.Claimf("%s/%s names container %q, not its directory's %s: refused", s.real, rel, trunc(r.ID), id)
	}
	return &r, b, nil
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// List lists the containers of the data root with the state each had
// when the host went down. A container whose record cannot be read is
// listed with state "unreadable: <why>".
func (s *Store) List(ctx context.Context) ([]engine.Summary, error) {
	ids, err := s.containerIDs()
	if err != nil {
		return nil, err
	}
	out := make([]engine.Summary, 0, len(ids))
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sm := engine.Summary{Runtime: "docker-root", ID: id}
		r, _, err := s.readRecord(id)
		if err != nil {
			sm.State = "unreadable: " + err.Error()
			out = append(out, sm)
			continue
		}
		sm.Name = strings.TrimPrefix(r.Name, "/")
		sm.Image = r.Config.Image
		if sm.Image == "" {
			sm.Image = r.Image
		}
		sm.State = r.status()
		sm.Pod = engine.PodOf(r.Config.Labels)
		sm.Created, sm.Started = rfc3339(r.Created), rfc3339(r.State.StartedAt)
		out = append(out, sm)
	}
	return out, nil
}

// findContainer finds a container by full ID, name (with or without its
// "/") or unique ID prefix, as docker does.
func (s *Store) findContainer(ref string) (string, error) {
	if hex64.MatchString(ref) && s.isDir(path.Join("containers", ref)) {
		return ref, nil
	}
	ids, err := s.containerIDs()
	if err != nil {
		return "", err
	}
	name := "/" + strings.TrimPrefix(ref, "/")
	for _, id := range ids {
		// A name needs every record read: a small file each.
		if r, _, err := s.readRecord(id); err == nil && r.Name == name {
			return id, nil
		}
	}
	var cands []string
	if ref != "" && strings.Trim(ref, "0123456789abcdef") == "" {
		for _, id := range ids {
			if strings.HasPrefix(id, ref) {
				cands = append(cands, id)
			}
		}
	}
	switch len(cands) {
	case 1:
		return cands[0], nil
	case 0:
		return "", &engine.Fault{Kind: engine.ErrNoSuchObject, Err: fmt.Errorf("no container %q in the Docker data root %s", ref, s.real)}
	}
	return "", fmt.Errorf("container %q is ambiguous in %s: %s", ref, s.real, strings.Join(cands, ", "))
}

// Container reads a container's record. It is never running here:
// Running and Paused are false, Pid 0; State is Docker's word for the
// state recorded at shutdown.
func (s *Store) Container(ctx context.Context, ref string) (*engine.Container, error) {
	id, err := s.findContainer(ref)
	if err != nil {
		return nil, err
	}
	r, raw, err := s.readRecord(id)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", ref, err)
	}
	c := &engine.Container{ID: id, Name: r.Name, Image: r.Image, ImageRef: r.Config.Image, State: r.status(), Tty: r.Config.Tty, Driver: r.Driver}
	var whole struct{ Config json.RawMessage }
	if json.Unmarshal(raw, &whole) == nil && len(whole.Config) > 0 && !bytes.Equal(whole.Config, []byte("null")) {
		c.Config = whole.Config
	}
	dests := make([]string, 0, len(r.MountPoints))
	for d := range r.MountPoints {
		dests = append(dests, d)
	}
	sort.Strings(dests)
	for _, d := range dests {
		m := r.MountPoints[d]
		c.Mounts = append(c.Mounts, engine.Mount{Type: m.Type, Name: m.Name, Source: m.Source, Destination: m.Destination, RW: m.RW})
	}
	// The layer store's record of the container's read-write layer.
	c.Storage = map[string]string{}
	if mid, err := s.readID(path.Join("image", s.driver, "layerdb/mounts", id, "mount-id"), false); err == nil && s.driver != "" {
		c.Storage["MountID"] = mid
		if s.driver == "overlay2" {
			c.Storage["UpperDir"] = path.Join(s.real, "overlay2", mid, "diff")
		}
		if iid, err := s.readFile(path.Join("image", s.driver, "layerdb/mounts", id, "init-id"), maxSmall); err == nil && string(bytes.TrimSpace(iid)) == mid+"-init" {
			c.Storage["InitID"] = mid + "-init"
		}
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		c.Storage["Error"] = err.Error()
	}
	hostConfig := json.RawMessage("null")
	if b, err := s.readFile(path.Join("containers", id, "hostconfig.json"), maxJSON); err == nil && json.Valid(b) {
		hostConfig = b
	}
	c.Raw, err = json.MarshalIndent(struct {
		ID         string `json:"Id"`
		Name       string
		Runtime    string
		Source     string
		DataRoot   string
		Config     json.RawMessage
		HostConfig json.RawMessage
	}{id, r.Name, "docker", "offline", s.real, raw, hostConfig}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", ref, err)
	}
	return c, nil
}
