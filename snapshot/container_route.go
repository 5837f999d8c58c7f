package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/amber-forensics/amber/layers"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/engine"
)

// Routes for a container's filesystem, as EngineRequest.Route asks.
const (
	RouteAuto     = "auto"
	RouteUpperdir = "upperdir"
	RouteExport   = "export"
	// RouteSnapshot is the container's snapshot mounted read-only
	// (taken by auto when the upper directory cannot be read).
	RouteSnapshot = "snapshot"
)

// route is one way of reading a container's (or a volume's) files into
// one layer: the overlay upper directory, the runtime's export stream, a
// directory read directly, the runtime's copy of a path. A new runtime's
// way (a containerd snapshot mount, a dead host's disk) is one more
// implementation.
type route interface {
	// Name is the route as the manifest and the custody log record it.
	Name() string
	// needsImage says the route compares what it reads with the image
	// (pristine), so it runs once the image is captured; a route that
	// does not reads first, the container's files being more volatile
	// than its image.
	needsImage() bool
	// read writes the files into lf, recording in anomalies what it
	// could not store as found.
	read(ctx context.Context, pristine *layers.Stack, lf *layerFile, anomalies *[]manifest.Anomaly) error
}

// dirRoute reads directories directly (upperRoute): an overlay upper
// directory over the runtime's init layer, or a volume's directory.
type dirRoute struct {
	name    string
	dirs    []string
	overlay bool
}

func (r dirRoute) Name() string     { return r.name }
func (r dirRoute) needsImage() bool { return false }
func (r dirRoute) read(_ context.Context, _ *layers.Stack, lf *layerFile, anomalies *[]manifest.Anomaly) error {
	return upperRoute(r.dirs, r.overlay, lf, anomalies)
}

// exportRoute reads the runtime's export stream and compares it with the
// image (readExport).
type exportRoute struct {
	rt engine.Runtime
	id string
}

func (r exportRoute) Name() string     { return RouteExport }
func (r exportRoute) needsImage() bool { return true }
func (r exportRoute) read(ctx context.Context, pristine *layers.Stack, lf *layerFile, anomalies *[]manifest.Anomaly) error {
	return readExport(ctx, r.rt, r.id, pristine, lf, anomalies)
}

// snapshotRoute mounts the container's snapshot read-only in a private
// directory (a snapshotter with no upper directory to read: containerd's
// native), reads the whole tree as the upperdir route reads a volume, and
// compares it with the image as the export route compares the export
// stream (readTree); the mount is undone before the comparison, and on
// failure.
type snapshotRoute struct {
	rt     engine.Runtime
	id     string
	mounts []engine.SnapshotMount
}

func (r snapshotRoute) Name() string     { return RouteSnapshot }
func (r snapshotRoute) needsImage() bool { return true }
func (r snapshotRoute) read(ctx context.Context, pristine *layers.Stack, lf *layerFile, anomalies *[]manifest.Anomaly) error {
	return readSnapshot(ctx, r.rt, r.id, r.mounts, pristine, lf, anomalies)
}

// copyRoute reads the tree at a path of the container through the
// runtime (copyFromContainer): a volume of a remote engine.
type copyRoute struct {
	rt       engine.Runtime
	id, path string
}

func (r copyRoute) Name() string     { return "engine" }
func (r copyRoute) needsImage() bool { return false }
func (r copyRoute) read(ctx context.Context, _ *layers.Stack, lf *layerFile, _ *[]manifest.Anomaly) error {
	return copyFromContainer(ctx, r.rt, r.id, r.path, lf)
}

// containerFS is a container's filesystem as read: its changes layer in
// a temporary file, and the engine's change list, asked for only once the
// filesystem has been read (the engine reads the directories to answer).
type containerFS struct {
	route     route
	lf        *layerFile
	anomalies []manifest.Anomaly
	diff      chan engineDiff
}

type engineDiff struct {
	changes []engine.Change
	err     error
}

// chooseRoute picks the route for a container's filesystem: the upper
// directory when asked or (auto) when the runtime is local and reports one
// it keeps, else the export. Why the upper directory was not taken is an
// anomaly; with --route upperdir, an error.
func chooseRoute(ctx context.Context, rt engine.Runtime, c *ctrCapture, asked string, fs *containerFS) (route, error) {
	export := exportRoute{rt: rt, id: c.ci.ID}
	if asked != RouteAuto && asked != RouteUpperdir {
		return export, nil
	}
	why := ""
	var dirs []string
	var err error
	var un *engine.Unavailable
	if !rt.Info().Local {
		why = "the engine is not on this host"
	} else if dirs, err = rt.UpperDirs(c.ci); errors.As(err, &un) {
		why = un.Why
	} else if err == nil && len(dirs) == 0 {
		why = "the engine does not report an upper directory"
	}
	if why == "" && err != nil {
		// The engine points at a directory that is not its own: the
		// filesystem is still read, through its API.
		if asked == RouteUpperdir {
			return nil, fmt.Errorf("--route upperdir: %w", err)
		}
		fs.anomalies = append(fs.anomalies, manifest.Anomaly{Kind: "engine-claims-upperdir-outside-root", Detail: "filesystem read through the engine's export: " + err.Error()})
		return export, nil
	}
	if why == "" {
		if _, err := os.Stat(dirs[0]); err != nil {
			why = "the upper directory cannot be read: " + err.Error()
		}
	}
	if why != "" && asked == RouteAuto && un != nil {
		// No upper directory (another snapshotter): the snapshot's mounts,
		// when the runtime gives them.
		if sm, ok := rt.(engine.SnapshotMounter); ok {
			mounts, err := sm.SnapshotMounts(ctx, c.ci)
			if err == nil {
				fs.anomalies = append(fs.anomalies, manifest.Anomaly{Kind: "route", Detail: "filesystem read from the snapshot mounted read-only: " + why})
				return snapshotRoute{rt: rt, id: c.ci.ID, mounts: mounts}, nil
			}
			why += "; the snapshot: " + err.Error()
		}
	}
	if why != "" {
		if asked == RouteUpperdir {
			return nil, fmt.Errorf("%w: --route upperdir: %s", ErrNotLocal, why)
		}
		fs.anomalies = append(fs.anomalies, manifest.Anomaly{Kind: "route", Detail: "filesystem read through the engine's export: " + why})
		return export, nil
	}
	return dirRoute{name: RouteUpperdir, dirs: dirs, overlay: true}, nil
}

// readEarly chooses the container's route and reads it now unless it
// needs the image. An upper directory whose overlay features need the
// lower layers to make sense (redirects, metacopy) falls back to the
// export route when the route was not asked for.
func (e *engineCapture) readEarly(c *ctrCapture) error {
	c.fs = &containerFS{}
	r, err := chooseRoute(e.ctx, e.rt, c, e.req.Route, c.fs)
	if err != nil {
		return err
	}
	c.fs.route = r
	if r.needsImage() {
		return nil
	}
	err = c.fs.read(e.ctx, e.rt, c, filepath.Dir(e.req.Output), nil, e.progress)
	if errors.Is(err, errRouteUnsupported) && e.req.Route == RouteAuto {
		c.fs.anomalies = append(c.fs.anomalies, manifest.Anomaly{Kind: "route", Detail: "filesystem read through the engine's export: " + err.Error()})
		c.fs.lf.remove()
		c.fs.lf, c.fs.route = nil, exportRoute{rt: e.rt, id: c.ci.ID}
		return nil
	}
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: container %s: %w", ErrContainerGone, c.name, err)
	}
	if err != nil {
		return fmt.Errorf("container %s: %w", c.name, err)
	}
	return nil
}

// read reads the route into a new changes layer in dir, then starts
// asking the runtime for its change list.
func (fs *containerFS) read(ctx context.Context, rt engine.Runtime, c *ctrCapture, dir string, pristine *layers.Stack, progress func(string)) error {
	progress(fmt.Sprintf("container %s: filesystem (%s)", c.name, fs.route.Name()))
	lf, err := newLayerFile(dir)
	if err != nil {
		return err
	}
	fs.lf = lf
	if err := fs.route.read(ctx, pristine, lf, &fs.anomalies); err != nil {
		return err
	}
	fs.askEngine(ctx, rt, c)
	return nil
}

// askEngine starts asking the engine for its change list.
func (fs *containerFS) askEngine(ctx context.Context, rt engine.Runtime, c *ctrCapture) {
	fs.diff = make(chan engineDiff, 1)
	go func() {
		ch, err := rt.Changes(ctx, c.ci.ID)
		fs.diff <- engineDiff{ch, err}
	}()
}

func (fs *containerFS) remove() {
	if fs.lf != nil {
		fs.lf.remove()
	}
	if fs.diff != nil {
		<-fs.diff // the request ends with the capture's context
		fs.diff = nil
	}
}
