package containerd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/status"

	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/freezer"
)

// DefaultAddress is containerd's own socket.
const DefaultAddress = "/run/containerd/containerd.sock"

// overlayfs is the snapshotter whose upper directory amber reads.
const overlayfs = "overlayfs"

// Runtime is a connection to containerd, in one namespace.
type Runtime struct {
	c       *client.Client
	address string
	ns      string
	info    manifest.Engine
	// overlayRoot is the overlayfs snapshotter's root directory as
	// containerd reports it: the only place where amber reads a
	// container's upper directory ("" when it has none).
	overlayRoot string
	// frozen is the cgroup freezer of each task Pause froze: Unpause
	// thaws it itself when containerd cannot be reached.
	mu     sync.Mutex
	frozen map[string]freezer.Freezer
}

var _ engine.Runtime = (*Runtime)(nil)

// Dial connects to containerd at address (a unix socket; "" is
// DefaultAddress) for the containers and images of namespace, and records
// who it is.
func Dial(ctx context.Context, address, namespace string) (*Runtime, error) {
	if address == "" {
		address = DefaultAddress
	}
	if err := identifiers.Validate(namespace); err != nil {
		return nil, fmt.Errorf("containerd namespace %q: %w", namespace, err)
	}
	r := &Runtime{address: address, ns: namespace, frozen: map[string]freezer.Freezer{}}
	// No socket there: say so at once (the client would wait out its
	// timeout, and every auto lookup with it).
	if st, err := os.Stat(address); err != nil || st.Mode()&os.ModeSocket == 0 {
		if err == nil {
			err = fmt.Errorf("%s is not a socket", address)
		}
		return nil, engine.Wrap(&engine.Fault{Kind: engine.ErrEngine, Note: "is containerd running? (--address)", Err: err}, "reaching containerd at "+address)
	}
	c, err := client.New(address, client.WithDefaultNamespace(namespace), client.WithTimeout(10*time.Second))
	if err != nil {
		return nil, r.wrap(err, "reaching containerd at "+address)
	}
	r.c = c
	ctx = r.nsCtx(ctx)
	v, err := c.Version(ctx)
	if err != nil {
		c.Close()
		return nil, r.wrap(err, "reaching containerd at "+address)
	}
	srv, err := c.Server(ctx)
	if err != nil {
		c.Close()
		return nil, r.wrap(err, "asking containerd who it is")
	}
	// The overlayfs snapshotter exports its root directory.
	plugins, err := c.IntrospectionService().Plugins(ctx, "type==io.containerd.snapshotter.v1,id=="+overlayfs)
	if err != nil {
		c.Close()
		return nil, r.wrap(err, "asking containerd for its snapshotters")
	}
	for _, p := range plugins.GetPlugins() {
		if p.GetInitErr() == nil {
			r.overlayRoot = p.GetExports()["root"]
		}
	}
	host, _ := os.Hostname()
	sock := address
	if abs, err := filepath.Abs(address); err == nil {
		sock = abs
	}
	// A unix socket is this host's; the client speaks containerd's v1
	// gRPC services.
	r.info = manifest.Engine{Host: "unix://" + sock, ID: srv.UUID, Name: host, Version: strings.TrimSpace(v.Version + " " + v.Revision),
		APIVersion: "grpc v1", Runtime: "containerd", Namespace: namespace, Local: true}
	if r.overlayRoot != "" {
		r.info.StorageDriver = overlayfs
	}
	return r, nil
}

// Info describes containerd as Dial found it.
func (r *Runtime) Info() manifest.Engine { return r.info }

// Close releases the connection.
func (r *Runtime) Close() error { return r.c.Close() }

// nsCtx puts the runtime's namespace into ctx: every call is of it.
func (r *Runtime) nsCtx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, r.ns)
}

// fault classifies an error of the client for engine.Wrap: a cancellation
// stays what it is.
func (r *Runtime) fault(err error) error {
	if err == nil {
		return nil
	}
	// The task service answers in gRPC's codes, the stores in errdefs'
	// (which ToNative would take for unknown).
	native := err
	if _, ok := status.FromError(err); ok {
		native = errgrpc.ToNative(err)
	}
	var f *engine.Fault
	switch {
	case errors.As(err, &f):
		return err
	case errors.Is(err, engine.ErrEngineClaim):
		return err
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.Is(native, context.Canceled), errors.Is(native, context.DeadlineExceeded):
		return err
	case cerrdefs.IsNotFound(err), cerrdefs.IsNotFound(native):
		return &engine.Fault{Kind: engine.ErrNoSuchObject, Err: err}
	case cerrdefs.IsUnavailable(native):
		return &engine.Fault{Kind: engine.ErrEngine, Note: fmt.Sprintf("cannot connect (is containerd running? address %q)", r.address), Err: err}
	}
	return &engine.Fault{Kind: engine.ErrEngine, Err: err}
}

// wrap classifies an error with what was asked.
func (r *Runtime) wrap(err error, what string) error { return engine.Wrap(r.fault(err), what) }

// A containerd ID or name amber looks up: containerd's own identifier
// rules (letters, digits, '_', '.', '-'; 76 at most).
var identifier = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,75}$`)

var _ engine.IDChecker = (*Runtime)(nil)

// CheckID takes containerd's own IDs: identifiers (letters, digits, '_',
// '.', '-', 76 at most; ctr run IMG web), not only Docker's 64 hex digits.
func (r *Runtime) CheckID(id string) error { return identifiers.Validate(id) }

// Container inspects a container of the namespace: by its ID, a unique
// prefix of one, or its nerdctl name (containerd itself names none).
func (r *Runtime) Container(ctx context.Context, ref string) (*engine.Container, error) {
	ctx = r.nsCtx(ctx)
	if !identifier.MatchString(ref) {
		return nil, &engine.Fault{Kind: engine.ErrNoSuchObject, Err: fmt.Errorf("no such container: %q is no containerd ID", ref)}
	}
	rec, err := r.c.ContainerService().Get(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		rec, err = r.lookup(ctx, ref)
	}
	if err != nil {
		return nil, r.wrap(err, "container "+ref+" in namespace "+r.ns)
	}
	return r.inspect(ctx, rec)
}

// lookup finds the one container whose ID starts with ref or whose
// nerdctl name is ref.
func (r *Runtime) lookup(ctx context.Context, ref string) (containers.Container, error) {
	all, err := r.c.ContainerService().List(ctx)
	if err != nil {
		return containers.Container{}, err
	}
	var found []containers.Container
	for _, c := range all {
		if strings.HasPrefix(c.ID, ref) || c.Labels["nerdctl/name"] == ref {
			found = append(found, c)
		}
	}
	switch len(found) {
	case 0:
		return containers.Container{}, fmt.Errorf("no such container: %s: %w", ref, cerrdefs.ErrNotFound)
	case 1:
		return found[0], nil
	}
	var ids []string
	for _, c := range found {
		ids = append(ids, c.ID)
	}
	return containers.Container{}, &engine.Fault{Kind: engine.ErrNoSuchObject, Err: fmt.Errorf("%s names %d containers: %s", ref, len(found), strings.Join(ids, ", "))}
}

// criMetadata is the extension where containerd's CRI plugin keeps its
// record of a Kubernetes container.
const criMetadata = "io.cri-containerd.container.metadata"

// inspectRecord is a container as containerd describes it, stored as
// inspect.json: its record, its active snapshot's mounts and its task.
type inspectRecord struct {
	Namespace      string            `json:"Namespace"`
	ID             string            `json:"ID"`
	Labels         map[string]string `json:"Labels"`
	Image          string            `json:"Image"`
	ImageID        string            `json:"ImageID,omitempty"`
	Runtime        string            `json:"Runtime"`
	Snapshotter    string            `json:"Snapshotter"`
	SnapshotKey    string            `json:"SnapshotKey"`
	SnapshotMounts []snapshotMount   `json:"SnapshotMounts,omitempty"`
	SnapshotError  string            `json:"SnapshotError,omitempty"`
	SandboxID      string            `json:"SandboxID,omitempty"`
	CreatedAt      time.Time         `json:"CreatedAt"`
	UpdatedAt      time.Time         `json:"UpdatedAt"`
	Extensions     []string          `json:"Extensions,omitempty"`
	// CRIMetadata is the CRI plugin's own record of a Kubernetes
	// container (extension io.cri-containerd.container.metadata), when it
	// is JSON: its log path among other things.
	CRIMetadata json.RawMessage `json:"CRIMetadata,omitempty"`
	Spec        json.RawMessage `json:"Spec,omitempty"`
	Task        *taskRecord     `json:"Task"`
}

type snapshotMount struct {
	Type    string   `json:"Type"`
	Source  string   `json:"Source"`
	Options []string `json:"Options"`
}

type taskRecord struct {
	Pid        uint32    `json:"Pid"`
	Status     string    `json:"Status"`
	ExitStatus uint32    `json:"ExitStatus"`
	ExitedAt   time.Time `json:"ExitedAt,omitzero"`
}

// dockerConfig is the part of a Docker container's Config that a
// container's OCI spec and record say, kept as the captured container's
// container_config.
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

func (r *Runtime) inspect(ctx context.Context, rec containers.Container) (*engine.Container, error) {
	ir := inspectRecord{Namespace: r.ns, ID: rec.ID, Labels: rec.Labels, Image: rec.Image, Runtime: rec.Runtime.Name,
		Snapshotter: rec.Snapshotter, SnapshotKey: rec.SnapshotKey, SandboxID: rec.SandboxID, CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt}
	for k, v := range rec.Extensions {
		ir.Extensions = append(ir.Extensions, k)
		if k == criMetadata && v != nil && len(v.GetValue()) <= 1<<20 && json.Valid(v.GetValue()) {
			ir.CRIMetadata = v.GetValue()
		}
	}
	slices.Sort(ir.Extensions)
	c := &engine.Container{ID: rec.ID, Name: rec.ID, ImageRef: rec.Image, Driver: rec.Snapshotter,
		Storage: map[string]string{"Snapshotter": rec.Snapshotter, "SnapshotKey": rec.SnapshotKey}}
	if n := rec.Labels["nerdctl/name"]; identifier.MatchString(n) {
		c.Name = n
	}
	var spec specs.Spec
	if rec.Spec != nil {
		b := rec.Spec.GetValue()
		if !json.Valid(b) {
			return nil, engine.Claimf("containerd answers container %s with a spec that is not JSON (%s)", rec.ID, rec.Spec.GetTypeUrl())
		}
		ir.Spec = b
		if err := json.Unmarshal(b, &spec); err != nil {
			return nil, engine.Claimf("containerd answers container %s with a spec amber cannot read: %v", rec.ID, err)
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
	// Host paths bound into the container are recorded, never walked;
	// the kernel's own filesystems (proc, sysfs, the /dev tmpfs) are not
	// the container's.
	for _, m := range spec.Mounts {
		if slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind") || m.Type == "bind" {
			c.Mounts = append(c.Mounts, engine.Mount{Type: "bind", Source: m.Source, Destination: m.Destination, RW: !slices.Contains(m.Options, "ro")})
		}
	}
	// The active snapshot's mounts say where its upper directory is.
	if rec.Snapshotter != "" && rec.SnapshotKey != "" {
		mounts, err := r.c.SnapshotService(rec.Snapshotter).Mounts(ctx, rec.SnapshotKey)
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return nil, err
			}
			ir.SnapshotError = err.Error()
			c.Storage["SnapshotError"] = err.Error()
		}
		for _, m := range mounts {
			ir.SnapshotMounts = append(ir.SnapshotMounts, snapshotMount{Type: m.Type, Source: m.Source, Options: m.Options})
		}
		overlayStorage(c.Storage, ir.SnapshotMounts)
	}
	// The image it runs, by its config's digest, as Docker names images.
	if rec.Image != "" {
		if img, err := r.resolve(ctx, rec.Image); err == nil {
			c.Image, ir.ImageID = img.config.Digest.String(), img.config.Digest.String()
		} else if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		} else if !errors.Is(r.fault(err), engine.ErrNoSuchObject) {
			return nil, r.wrap(err, "the image "+rec.Image+" of container "+rec.ID)
		}
	}
	// Its task: no task is a container that is not running.
	resp, err := r.c.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: rec.ID})
	switch {
	case err != nil && errors.Is(r.fault(err), engine.ErrNoSuchObject):
		c.State = "created"
	case err != nil:
		return nil, r.wrap(err, "the task of container "+rec.ID)
	default:
		p := resp.GetProcess()
		tr := &taskRecord{Pid: p.GetPid(), Status: strings.ToLower(p.GetStatus().String()), ExitStatus: p.GetExitStatus()}
		if t := p.GetExitedAt(); t != nil {
			tr.ExitedAt = t.AsTime()
		}
		ir.Task = tr
		c.State = tr.Status
		c.Running = p.GetStatus() == task.Status_RUNNING || p.GetStatus() == task.Status_PAUSED || p.GetStatus() == task.Status_PAUSING
		c.Paused = p.GetStatus() == task.Status_PAUSED || p.GetStatus() == task.Status_PAUSING
		if c.Running && p.GetPid() > 0 && p.GetPid() < 1<<22 {
			c.Pid = int(p.GetPid())
		}
	}
	raw, err := json.MarshalIndent(ir, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("recording container %s: %w", rec.ID, err)
	}
	c.Raw = raw
	return c, nil
}

// overlayStorage records the overlay mount's directories: UpperDir,
// LowerDir (colon-separated, top first) and WorkDir. A snapshot mounted
// otherwise (a bind mount, several mounts) records none.
func overlayStorage(st map[string]string, mounts []snapshotMount) {
	if len(mounts) != 1 || mounts[0].Type != "overlay" {
		return
	}
	for _, o := range mounts[0].Options {
		k, v, ok := strings.Cut(o, "=")
		if !ok {
			continue
		}
		switch k {
		case "upperdir":
			st["UpperDir"] = v
		case "lowerdir":
			st["LowerDir"] = v
		case "workdir":
			st["WorkDir"] = v
		}
	}
}

var snapshotID = regexp.MustCompile(`^[0-9]+$`)

// UpperDirs returns the overlayfs snapshotter's upper directory of the
// container's active snapshot, from the snapshot's mounts: read directly
// only where the snapshotter keeps them,
// <root>/snapshots/<number>/fs, symbolic links resolved. containerd has
// no init layer: the upper directory is the container's own files.
func (r *Runtime) UpperDirs(c *engine.Container) ([]string, error) {
	upper := c.Storage["UpperDir"]
	switch {
	case c.Driver != overlayfs:
		return nil, &engine.Unavailable{Why: "the snapshotter is " + c.Driver + ", not overlayfs"}
	case r.overlayRoot == "":
		return nil, &engine.Unavailable{Why: "containerd reports no overlayfs snapshotter root"}
	case upper == "" && c.Storage["SnapshotError"] != "":
		return nil, &engine.Unavailable{Why: "the container's snapshot: " + c.Storage["SnapshotError"]}
	case upper == "":
		return nil, &engine.Unavailable{Why: "the container's snapshot is not an overlay mount with an upper directory"}
	}
	root := r.overlayRoot
	if !filepath.IsAbs(root) {
		return nil, engine.Claimf("containerd reports the overlayfs snapshotter's root as %q, not an absolute path", root)
	}
	n := filepath.Base(filepath.Dir(filepath.Clean(upper)))
	want := filepath.Join(root, "snapshots", n, "fs")
	if !snapshotID.MatchString(n) || filepath.Clean(upper) != want {
		return nil, engine.Claimf("containerd places the container's upper directory at %s, not at snapshots/<number>/fs under the overlayfs snapshotter's root %s", upper, root)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, engine.Claimf("the overlayfs snapshotter's root %s: %v", root, err)
	}
	real, err := filepath.EvalSymlinks(want)
	if err != nil {
		return nil, engine.Claimf("containerd places the container's upper directory at %s: %v", upper, err)
	}
	if real != filepath.Join(realRoot, "snapshots", n, "fs") {
		return nil, engine.Claimf("containerd places the container's upper directory at %s, which is really %s, outside the overlayfs snapshotter's root %s", upper, real, realRoot)
	}
	return []string{real}, nil
}

var _ engine.SnapshotMounter = (*Runtime)(nil)

// SnapshotMounts gives the mounts of the container's active snapshot for
// the snapshot route, when the snapshotter is not overlayfs (whose upper
// directory is read directly): one bind mount of a directory
// <root>/snapshots/<number> of the snapshotter's own root (native),
// symbolic links resolved. Anything else (a block device, several mounts)
// is Unavailable; a directory elsewhere is a claim refused.
func (r *Runtime) SnapshotMounts(ctx context.Context, c *engine.Container) ([]engine.SnapshotMount, error) {
	ctx = r.nsCtx(ctx)
	sn, key := c.Storage["Snapshotter"], c.Storage["SnapshotKey"]
	if sn == "" || key == "" {
		return nil, &engine.Unavailable{Why: "the container has no snapshot"}
	}
	if err := identifiers.Validate(sn); err != nil {
		return nil, engine.Claimf("containerd names the container's snapshotter %q: %v", sn, err)
	}
	plugins, err := r.c.IntrospectionService().Plugins(ctx, "type==io.containerd.snapshotter.v1,id=="+sn)
	if err != nil {
		return nil, r.wrap(err, "asking containerd for the snapshotter "+sn)
	}
	root := ""
	for _, p := range plugins.GetPlugins() {
		if p.GetInitErr() == nil {
			root = p.GetExports()["root"]
		}
	}
	if root == "" && filepath.IsAbs(r.overlayRoot) {
		// containerd 1.6's native snapshotter exports none: a plugin's
		// root is <containerd's root>/<type>.<id>, as overlayfs's says.
		root = filepath.Join(filepath.Dir(r.overlayRoot), "io.containerd.snapshotter.v1."+sn)
	}
	if !filepath.IsAbs(root) {
		return nil, &engine.Unavailable{Why: fmt.Sprintf("containerd reports no root directory of the snapshotter %s", sn)}
	}
	mounts, err := r.c.SnapshotService(sn).Mounts(ctx, key)
	if err != nil {
		return nil, r.wrap(err, "the mounts of snapshot "+key)
	}
	if len(mounts) != 1 || mounts[0].Type != "bind" {
		return nil, &engine.Unavailable{Why: fmt.Sprintf("the snapshot of %s is %d mounts, not one bind mount of a directory", sn, len(mounts))}
	}
	src := mounts[0].Source
	n := filepath.Base(filepath.Clean(src))
	want := filepath.Join(root, "snapshots", n)
	if !snapshotID.MatchString(n) || filepath.Clean(src) != want {
		return nil, engine.Claimf("containerd places the container's snapshot at %s, not at snapshots/<number> under the %s snapshotter's root %s", src, sn, root)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, engine.Claimf("the %s snapshotter's root %s: %v", sn, root, err)
	}
	real, err := filepath.EvalSymlinks(want)
	if err != nil {
		return nil, engine.Claimf("containerd places the container's snapshot at %s: %v", src, err)
	}
	if real != filepath.Join(realRoot, "snapshots", n) {
		return nil, engine.Claimf("containerd places the container's snapshot at %s, which is really %s, outside the %s snapshotter's root %s", src, real, sn, realRoot)
	}
	return []engine.SnapshotMount{{Type: "bind", Source: real, Options: []string{"ro"}}}, nil
}

// VolumeDir refuses: containerd has no named volumes (a container's
// mounts are binds of host paths, recorded and never walked).
func (r *Runtime) VolumeDir(name, source string) (string, error) {
	return "", engine.Claimf("containerd keeps no named volumes (%s at %s)", name, source)
}

// errNoExport: containerd has no API that streams a container's
// filesystem; only its overlayfs upper directory can be read, locally.
var errNoExport = errors.New("containerd has no export of a container's filesystem: only the overlayfs snapshotter's upper directory is read, on the containerd host")

// Export refuses: see errNoExport.
func (r *Runtime) Export(ctx context.Context, id string) (io.ReadCloser, error) {
	return nil, &engine.Fault{Kind: engine.ErrEngine, Err: errNoExport}
}

// CopyFrom refuses: see errNoExport.
func (r *Runtime) CopyFrom(ctx context.Context, id, path string) (io.ReadCloser, error) {
	return nil, &engine.Fault{Kind: engine.ErrEngine, Err: errNoExport}
}

// Changes answers that containerd keeps no change list: the capture lists
// the changes by content comparison with the image alone.
func (r *Runtime) Changes(ctx context.Context, id string) ([]engine.Change, error) {
	return nil, &engine.Unavailable{Why: "containerd keeps no change list (its diff service would write a new blob); changes.txt is the content comparison with the image"}
}

// Logs answers that containerd keeps no logs.
func (r *Runtime) Logs(ctx context.Context, id string, tty bool) (engine.LogStream, error) {
	return nil, &engine.Unavailable{Why: "containerd keeps no logs of a container (ctr run -d discards them; a Kubernetes container's are the CRI log files under /var/log/pods)"}
}

// Pause freezes the container's task (cgroup freezer), after noting its
// cgroup's freezer: see Unpause.
func (r *Runtime) Pause(ctx context.Context, id string) error {
	ctx = r.nsCtx(ctx)
	resp, err := r.c.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id})
	if err != nil {
		return r.fault(err)
	}
	// Without a freezer found, the pause is containerd's alone (as
	// before): a capture never fails for want of the fallback.
	if pid := resp.GetProcess().GetPid(); pid > 0 && pid < 1<<22 {
		if f, err := freezer.Of("", "", int(pid), id); err == nil {
			r.mu.Lock()
			r.frozen[id] = f
			r.mu.Unlock()
		}
	}
	_, err = r.c.TaskService().Pause(ctx, &tasks.PauseTaskRequest{ContainerID: id})
	return r.fault(err)
}

// Unpause thaws the container's task; ErrNotPaused when it is not frozen.
// When containerd cannot be reached (stopped or crashed during the
// capture), the task's shim and frozen processes live on and nobody would
// thaw them: amber thaws the cgroup Pause froze itself, as runc resume
// does (containerd, restarted, reads the task as running).
func (r *Runtime) Unpause(ctx context.Context, id string) error {
	err := r.resume(ctx, id)
	r.mu.Lock()
	f, ok := r.frozen[id]
	r.mu.Unlock()
	if err != nil && ok && !errors.Is(err, engine.ErrNotPaused) && !errors.Is(err, engine.ErrNoSuchObject) {
		if terr := f.ThawAndHold(settle); terr == nil || errors.Is(terr, engine.ErrNotPaused) {
			err = terr
		} else {
			err = errors.Join(err, fmt.Errorf("thawing its cgroup %s: %w", filepath.Dir(f.File()), terr))
		}
	}
	if err == nil || errors.Is(err, engine.ErrNotPaused) {
		r.mu.Lock()
		delete(r.frozen, id)
		r.mu.Unlock()
	}
	return err
}

// settle is how long Unpause keeps a cgroup it thawed itself thawed: a
// pause containerd passed on to the task's shim just before it went away
// may still be carried out by the shim.
const settle = time.Second

// resume asks containerd to resume the task.
func (r *Runtime) resume(ctx context.Context, id string) error {
	ctx = r.nsCtx(ctx)
	resp, err := r.c.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id})
	if err != nil {
		return r.fault(err)
	}
	if s := resp.GetProcess().GetStatus(); s != task.Status_PAUSED && s != task.Status_PAUSING {
		return engine.ErrNotPaused
	}
	_, err = r.c.TaskService().Resume(ctx, &tasks.ResumeTaskRequest{ContainerID: id})
	return r.fault(err)
}
