package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"

	"github.com/amber-forensics/amber/manifest"
)

// Runtime is a container runtime as a capture sees it. Every method may
// be asked concurrently with another (the change list is asked while the
// capture goes on). Errors are classified: see Fault and Wrap.
type Runtime interface {
	// Info describes the runtime for the acquisition record. Local says
	// it runs on this host: memory and direct reads need that.
	Info() manifest.Engine
	// Container inspects a container by name or ID.
	Container(ctx context.Context, ref string) (*Container, error)
	// Image inspects an image by reference or ID.
	Image(ctx context.Context, ref string) (*Image, error)
	// SaveImage streams the image as `docker save` does: a tar holding a
	// docker-save manifest.json or an OCI layout.
	SaveImage(ctx context.Context, ref string) (io.ReadCloser, error)
	// Export streams the container's whole filesystem as a tar (the
	// export route).
	Export(ctx context.Context, id string) (io.ReadCloser, error)
	// CopyFrom streams the tree at path in the container as a tar whose
	// top entry is path's last name (docker cp).
	CopyFrom(ctx context.Context, id, path string) (io.ReadCloser, error)
	// UpperDirs returns the directories holding the container's own
	// files, top first, for the upperdir route to read directly: checked
	// to lie where the runtime keeps them, symbolic links resolved. An
	// *Unavailable error says why the route cannot be taken (another
	// storage driver, no upper directory); an ErrEngineClaim error is a
	// place amber refuses to read.
	UpperDirs(c *Container) ([]string, error)
	// VolumeDir checks that source, the runtime's place for the named
	// volume, is where it keeps volumes, and returns the real path to
	// read (an ErrEngineClaim error otherwise).
	VolumeDir(name, source string) (string, error)
	// Changes is the runtime's own change list of the container
	// (docker diff). An *Unavailable error says the runtime keeps none:
	// the capture's content comparison then stands alone.
	Changes(ctx context.Context, id string) ([]Change, error)
	// Logs opens the container's stdout and stderr as the runtime keeps
	// them, each line prefixed with its timestamp; tty says the
	// container has a terminal (one stream, not multiplexed).
	Logs(ctx context.Context, id string, tty bool) (LogStream, error)
	// Pause freezes the container's processes.
	Pause(ctx context.Context, id string) error
	// Unpause thaws them; ErrNotPaused when they were not frozen.
	Unpause(ctx context.Context, id string) error
	// Close releases the connection.
	Close() error
}

// IDChecker is a runtime whose container IDs are not Docker's 64 hex
// digits (containerd's are identifiers: "web"). CheckID says whether id
// is one of its own; CheckID below holds every answer to the rules that
// keep an ID one path element.
type IDChecker interface {
	CheckID(id string) error
}

// fullID is Docker's container ID, the rule of a runtime that is no
// IDChecker.
var fullID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// safeID bounds every runtime's IDs: an ID names the container's cgroup
// and its files in the archive, so it is one path element, never "." or
// "..", whatever grammar a runtime claims.
var safeID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// CheckID checks a container ID the runtime answered with: its own
// grammar (IDChecker), else 64 hex digits; always one path element. An
// ID that is not one is an ErrEngineClaim.
func CheckID(rt Runtime, id string) error {
	if !safeID.MatchString(id) {
		return Claimf("the engine answers with container ID %q, not an identifier", id)
	}
	if c, ok := rt.(IDChecker); ok {
		if err := c.CheckID(id); err != nil {
			return Claimf("the engine answers with container ID %q: %v", id, err)
		}
		return nil
	}
	if !fullID.MatchString(id) {
		return Claimf("the engine answers with container ID %q, not 64 hex digits", id)
	}
	return nil
}

// IsFullID says whether id is a 64-hex ID (Docker's), whose first 12
// digits are its short form.
func IsFullID(id string) bool { return fullID.MatchString(id) }

// ShortID is the ID as a person types it: the first 12 of 64 hex digits,
// any other ID whole.
func ShortID(id string) string {
	if IsFullID(id) {
		return id[:12]
	}
	return id
}

// SnapshotMounter is a runtime that gives a container's filesystem as the
// mounts that make it (containerd's active snapshot), for a snapshotter
// whose upper directory cannot be read alone (native): the snapshot route
// mounts them read-only in a private directory and compares the tree with
// the image. SnapshotMounts checks that every source lies where the
// runtime keeps snapshots (an ErrEngineClaim otherwise); an *Unavailable
// says why they cannot be mounted (a block device, no snapshot).
type SnapshotMounter interface {
	SnapshotMounts(ctx context.Context, c *Container) ([]SnapshotMount, error)
}

// SnapshotMount is one mount of a container's snapshot: Type "bind" (a
// directory) is the one amber mounts.
type SnapshotMount struct {
	Type, Source string
	Options      []string
}

// Container is a container as the runtime inspects it.
type Container struct {
	// ID is the runtime's ID: checked by the capture (CheckID) to be 64
	// hex digits, or an ID of the runtime's own grammar (IDChecker).
	ID string
	// Name is the runtime's name for it ("/web" for Docker).
	Name string
	// Image is the ID of the image it runs (sha256:...); ImageRef the
	// name it was created from, if any.
	Image, ImageRef string
	// State is the runtime's word for it ("running", "exited"; "" when
	// it gives none); Pid its first process, 0 when none.
	State           string
	Running, Paused bool
	Pid             int
	// Tty: the container has a terminal (its logs are one stream).
	Tty bool
	// Driver is the storage driver; Storage the runtime's own
	// description of where the container's layers lie, for UpperDirs
	// (Docker: GraphDriver.Data, UpperDir and LowerDir).
	Driver  string
	Storage map[string]string
	Mounts  []Mount
	// Config is the container's configuration as JSON (nil: none), kept
	// in the container's OCI config as container_config.
	Config json.RawMessage
	// Raw is the runtime's whole answer, stored as inspect.json.
	Raw []byte
}

// Mount is one of a container's mounts.
type Mount struct {
	// Type is "volume", "bind", "tmpfs", ...
	Type, Name, Source, Destination string
	RW                              bool
}

// Image is an image as the runtime inspects it.
type Image struct {
	ID      string
	DiffIDs []string // its layers, base first, as the runtime lists them
}

// Change is one line of the runtime's change list: Kind 'A', 'C' or 'D'.
type Change struct {
	Kind byte
	Path string
}

// LogStream is a container's logs being read.
type LogStream interface {
	// Copy writes stdout and stderr to their writers until the logs end,
	// and returns a writer's error as the writer gave it.
	Copy(stdout, stderr io.Writer) error
	Close() error
}

// ErrEngine reports a container runtime that cannot be reached or that
// failed.
var ErrEngine = errors.New("snapshot: container runtime")

// ErrNoSuchObject reports a container or image the runtime does not know.
var ErrNoSuchObject = errors.New("snapshot: no such container or image")

// ErrEngineClaim reports a runtime's answer that amber refuses to act on:
// a path outside the runtime's own storage, an ID that is not one. It is
// an engine failure (errors.Is(err, ErrEngine)).
var ErrEngineClaim = fmt.Errorf("%w: an answer amber does not trust", ErrEngine)

// ErrNotPaused is Unpause's answer for a container that was not paused
// (the pause never happened).
var ErrNotPaused = errors.New("the container is not paused")

// claimError is an ErrEngineClaim whose message is the claim alone, as
// anomalies and skipped mounts record it.
type claimError struct{ msg string }

func (e *claimError) Error() string { return e.msg }

func (e *claimError) Is(target error) bool { return target == ErrEngineClaim || target == ErrEngine }

// Claimf is an ErrEngineClaim error saying what was refused.
func Claimf(format string, a ...any) error { return &claimError{fmt.Sprintf(format, a...)} }

// Unavailable says why a route cannot be taken; its message is the reason
// alone, as the route anomaly records it.
type Unavailable struct{ Why string }

func (u *Unavailable) Error() string { return u.Why }

// Fault is a runtime's failure, classified by the runtime package that
// saw it: Kind is ErrEngine or ErrNoSuchObject; Note, when set, says what
// to check ("cannot connect (is dockerd running? ...)").
type Fault struct {
	Kind error
	Note string
	Err  error
}

// Error is the runtime's own message: Wrap adds the note where it says
// what was asked.
func (f *Fault) Error() string { return f.Err.Error() }

func (f *Fault) Unwrap() []error { return []error{f.Kind, f.Err} }

// Wrap gives a runtime's error the context of what was asked: a
// cancellation stays one, a Fault keeps its class, anything else is an
// ErrEngine.
func Wrap(err error, what string) error {
	var f *Fault
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.Is(err, ErrEngineClaim):
		// A claim refused keeps its class (and its ErrEngine).
		return fmt.Errorf("%s: %w", what, err)
	case errors.As(err, &f) && f.Note != "":
		return fmt.Errorf("%w: %s: %s: %v", f.Kind, what, f.Note, f.Err)
	case errors.As(err, &f):
		return fmt.Errorf("%w: %s: %v", f.Kind, what, f.Err)
	}
	return fmt.Errorf("%w: %s: %v", ErrEngine, what, err)
}

// ContextReader reads r until ctx is done, then fails with ctx's error: a
// long copy from a runtime's stream stops when the capture is cancelled.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx, r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Summary is one container as a runtime lists it (amber ps).
type Summary struct {
	Runtime   string `json:"runtime"`
	Namespace string `json:"namespace,omitempty"`
	// Pod is the Kubernetes pod ("namespace/name") the container is
	// part of, from the labels the kubelet sets; "" for none.
	Pod   string `json:"pod,omitempty"`
	ID    string `json:"id"`
	Name  string `json:"name"`
	Image string `json:"image"`
	State string `json:"state"`
	// Pid is the container's first process (0: none running).
	Pid int `json:"pid,omitempty"`
	// Created and Started are RFC 3339 times, when the runtime records
	// them (a dead host's list: when each container was made and last
	// started).
	Created string `json:"created,omitempty"`
	Started string `json:"started,omitempty"`
}

// Lister is a runtime that can list its containers: amber ps, and
// --runtime auto finding which runtime knows a name.
type Lister interface {
	List(ctx context.Context) ([]Summary, error)
}

// The labels kubelet sets on the containers it asks a runtime for.
const (
	LabelPodNamespace  = "io.kubernetes.pod.namespace"
	LabelPodName       = "io.kubernetes.pod.name"
	LabelContainerName = "io.kubernetes.container.name"
)

// PodOf is the pod ("namespace/name") that the labels a kubelet sets name,
// or "".
func PodOf(labels map[string]string) string {
	ns, name := labels[LabelPodNamespace], labels[LabelPodName]
	if name == "" {
		return ""
	}
	return ns + "/" + name
}
