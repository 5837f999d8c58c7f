//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/containerdroot"
	"github.com/amber-forensics/amber/snapshot/dockerroot"
	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/podman"
)

// hostFlags say where a dead host's runtimes keep their state, inside its
// root.
type hostFlags struct {
	dockerRoot, containerdRoot, podmanRoot string
	runtime                                string // "" or auto: every one found; docker; containerd; podman
}

// The places a Linux host's runtimes keep their state by default.
const (
	defaultDockerRoot     = "/var/lib/docker"
	defaultContainerdRoot = "/var/lib/containerd"
	defaultPodmanRoot     = "/var/lib/containers/storage"
)

func (h *hostFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&h.dockerRoot, "docker-root", "", "Docker's data root inside ROOT (default "+defaultDockerRoot+", when it is there)")
	f.StringVar(&h.containerdRoot, "containerd-root", "", "containerd's root inside ROOT (default "+defaultContainerdRoot+", when it is there)")
	f.StringVar(&h.podmanRoot, "podman-root", "", "Podman's storage (graph root) inside ROOT (default "+defaultPodmanRoot+", when it is there)")
	f.StringVar(&h.runtime, "runtime", "auto", "which runtime's state to read: auto (every one found), docker, containerd or podman")
}

// hostRuntime is one runtime's state found on a dead host's disk.
type hostRuntime struct {
	Name     string            `json:"runtime"`
	DataRoot string            `json:"data_root"`
	Driver   string            `json:"storage_driver,omitempty"`
	Offline  *manifest.Offline `json:"offline,omitempty"`
	// Error says why it was found but cannot be read.
	Error string         `json:"error,omitempty"`
	rt    engine.Runtime `json:"-"`
}

// openHost finds and opens the runtimes whose state lies under root. A
// data root named by a flag must be there; a default one that is not is
// passed over.
func openHost(root string, h hostFlags) ([]*hostRuntime, error) {
	// ROOT is the examiner's own path (where the evidence is mounted):
	// made absolute with its links resolved here, once, so that the
	// mount recorded is the one that holds it.
	abs, err := filepath.Abs(root)
	if err == nil {
		root, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return nil, usageError{fmt.Errorf("ROOT %s: %w", root, err)}
	}
	st, err := os.Stat(root)
	if err != nil {
		return nil, usageError{fmt.Errorf("ROOT %s: %w", root, err)}
	}
	if !st.IsDir() {
		return nil, usageError{fmt.Errorf("ROOT %s is not a directory (mount the disk image first: mount -o ro,noload IMAGE DIR)", root)}
	}
	switch h.runtime {
	case "", "auto", "docker", "containerd", "podman":
	default:
		return nil, usageError{fmt.Errorf("--runtime %q: use auto, docker, containerd or podman", h.runtime)}
	}
	want := func(name string) bool { return h.runtime == "" || h.runtime == "auto" || h.runtime == name }
	var out []*hostRuntime
	for _, c := range []struct {
		name, flag, def string
		open            func(root, data string) (engine.Runtime, string, error)
	}{
		{"docker", h.dockerRoot, defaultDockerRoot, func(root, data string) (engine.Runtime, string, error) {
			s, err := dockerroot.Open(root, data)
			if err != nil {
				return nil, "", err
			}
			return s, s.Driver(), nil
		}},
		{"containerd", h.containerdRoot, defaultContainerdRoot, func(root, data string) (engine.Runtime, string, error) {
			s, err := containerdroot.Open(root, data)
			if err != nil {
				return nil, "", err
			}
			return s, "overlayfs", nil
		}},
		{"podman", h.podmanRoot, defaultPodmanRoot, func(root, data string) (engine.Runtime, string, error) {
			s, err := podman.OpenOffline(root, data)
			if err != nil {
				return nil, "", err
			}
			return s, "overlay", nil
		}},
	} {
		if !want(c.name) {
			continue
		}
		data, named := c.flag, c.flag != ""
		if !named {
			data = c.def
		}
		if !filepath.IsAbs(data) {
			data = "/" + data
		}
		hr := &hostRuntime{Name: c.name, DataRoot: data}
		rt, driver, err := c.open(root, data)
		switch {
		case err != nil && !named && errors.Is(err, fs.ErrNotExist):
			// Not on this disk, at its default place (resolved inside
			// ROOT by the runtime package, not by this host's links).
			continue
		case err != nil && named:
			closeHost(out)
			return nil, fmt.Errorf("--%s-root %s: %w", c.name, data, err)
		case err != nil:
			hr.Error = err.Error()
		default:
			hr.rt, hr.Driver, hr.Offline = rt, driver, rt.Info().Offline
		}
		out = append(out, hr)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no container runtime's state under %s (looked for %s, %s and %s; name another place with --docker-root, --containerd-root or --podman-root)",
			engine.ErrNoSuchObject, root, defaultDockerRoot, defaultContainerdRoot, defaultPodmanRoot)
	}
	return out, nil
}

func closeHost(rts []*hostRuntime) {
	for _, r := range rts {
		if r.rt != nil {
			r.rt.Close()
		}
	}
}

func (e *env) newHostCmd() *cobra.Command {
	var h hostFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "host ROOT",
		Short: "List what a dead host's disk holds: runtimes, containers, images",
		Long: `host reads the container runtimes' state on a host's disk — a disk image
or a cloud volume snapshot mounted read-only at ROOT, with no engine
running — and lists it: the runtimes found (Docker's data root, containerd's
root, Podman's storage), every container (ID, name, image, its state when
the host went down, when it was created and last started, its Kubernetes
pod) and every image (ID, references, size). No layer is read, nothing is
written under ROOT, and nothing a JSON file or a link there names is
followed out of ROOT. amber capture host captures from it.`,
		Example: `  mount -o ro,noload /cases/web-3.img /mnt/evidence
  amber host /mnt/evidence
  amber host /mnt/evidence --json | jq -r '.containers[] | select(.state=="running") | .name'
  amber host / --docker-root /data/docker`,
		Args: argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error { return e.runHost(args[0], h, asJSON) },
	}
	h.add(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print the lists as JSON")
	return c
}

func (e *env) runHost(root string, h hostFlags, asJSON bool) error {
	rts, err := openHost(root, h)
	if err != nil {
		return err
	}
	defer closeHost(rts)
	ctrs, imgs := []engine.Summary{}, []engine.ImageSummary{}
	for _, r := range rts {
		if r.rt == nil {
			continue
		}
		if l, ok := r.rt.(engine.Lister); ok {
			ss, err := l.List(e.ctx)
			if err != nil {
				r.Error = "listing containers: " + err.Error()
			}
			ctrs = append(ctrs, ss...)
		}
		if l, ok := r.rt.(engine.ImageLister); ok {
			ii, err := l.ListImages(e.ctx)
			if err != nil && r.Error == "" {
				r.Error = "listing images: " + err.Error()
			}
			imgs = append(imgs, ii...)
		}
	}
	read := 0
	for _, r := range rts {
		if r.rt != nil && r.Error == "" {
			read++
		}
	}
	sort.SliceStable(ctrs, func(i, j int) bool { return ctrs[i].Created < ctrs[j].Created })
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(map[string]any{"root": root, "runtimes": rts, "containers": ctrs, "images": imgs}); err != nil {
			return err
		}
		return nothingRead(read, rts)
	}
	w := e.stdout
	fmt.Fprintf(w, "ROOT %s\n", escapeName(root))
	for _, r := range rts {
		line := fmt.Sprintf("  %-10s %s", r.Name, escapeName(r.DataRoot))
		if r.Driver != "" {
			line += " (" + r.Driver + ")"
		}
		if o := r.Offline; o != nil && o.Device != "" {
			line += fmt.Sprintf("  on %s, %s, mounted %s at %s", escapeName(o.Device), o.FSType, escapeName(o.Options), escapeName(o.Mount))
		}
		fmt.Fprintln(w, line)
		if r.Error != "" {
			fmt.Fprintf(w, "             error: %s\n", escapeName(r.Error))
		}
	}
	fmt.Fprintf(w, "\n%d containers\n", len(ctrs))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUNTIME\tNAMESPACE\tPOD\tCONTAINER\tID\tIMAGE\tSTATE\tCREATED\tSTARTED")
	for _, s := range ctrs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Runtime, dash(escapeName(s.Namespace)), dash(escapeName(s.Pod)),
			escapeName(s.Name), escapeName(engine.ShortID(s.ID)), escapeName(s.Image), escapeName(s.State), dash(s.Created), dash(s.Started))
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d images\n", len(imgs))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUNTIME\tNAMESPACE\tID\tREFS\tSIZE\tCREATED")
	for _, i := range imgs {
		id := strings.TrimPrefix(i.ID, "sha256:")
		if len(id) > 12 {
			id = id[:12]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", i.Runtime, dash(escapeName(i.Namespace)), escapeName(id),
			dash(escapeName(strings.Join(i.Refs, ","))), humanSize(i.Size), dash(i.Created))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return nothingRead(read, rts)
}

// nothingRead fails amber host when a runtime's state was found and none
// could be read: the lists shown are empty for that reason, not because
// the disk holds nothing.
func nothingRead(read int, rts []*hostRuntime) error {
	if read > 0 {
		return nil
	}
	var why []string
	for _, r := range rts {
		why = append(why, r.Name+" ("+r.DataRoot+"): "+r.Error)
	}
	return fmt.Errorf("%w: no runtime's state could be read: %s", engine.ErrEngine, strings.Join(why, "; "))
}

// humanSize is n bytes as docker images shows a size.
func humanSize(n int64) string {
	switch {
	case n <= 0:
		return "-"
	case n < 1000:
		return fmt.Sprintf("%dB", n)
	case n < 1000*1000:
		return fmt.Sprintf("%.3gkB", float64(n)/1000)
	case n < 1000*1000*1000:
		return fmt.Sprintf("%.3gMB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.3gGB", float64(n)/1e9)
}

// diskImagesFor is, for a local Docker engine on overlay2, its data root
// read as a dead host's is (read-only, beneath it): the capture rebuilds
// its images from the engine's files and checks every layer. docker save
// refuses an image whose layer files changed on disk and leaves out a
// file added to a layer's directory. nil for any other runtime.
func diskImagesFor(rt engine.Runtime) func() (engine.Runtime, error) {
	info := rt.Info()
	g, ok := rt.(interface{ GraphRoot() string })
	if !ok || info.Runtime != "" || !info.Local || info.StorageDriver != "overlay2" || g.GraphRoot() == "" {
		return nil
	}
	return func() (engine.Runtime, error) {
		s, err := dockerroot.Open("/", g.GraphRoot())
		if err != nil {
			return nil, err
		}
		return s, nil
	}
}

// newCaptureHostCmd is amber capture host.
func (e *env) newCaptureHostCmd() *cobra.Command {
	o := &captureOptions{}
	var h hostFlags
	var all bool
	var images []string
	c := &cobra.Command{
		Use:   "host ROOT [CONTAINER...] [--all] [--image REF]... -o ARCHIVE.tar.zst",
		Short: "Capture containers and images from a dead host's disk, with no engine running",
		Long: `Capture containers and images from the runtimes' state on a host's disk
(a disk image or volume snapshot mounted read-only at ROOT; amber host lists
what it holds) into the same sealed archive a live capture makes:
containers/<name>/{rootfs,pristine,changes,inspect.json,changes.txt,logs/},
images/<name>/..., volumes/<name>/ with --volumes. There is no memory (no
process runs), and the acquisition record says the capture came offline,
from which root, device, filesystem and mount options.

Each image layer is rebuilt from the runtime's own files and checked, not
trusted: Docker's from its layer directory with the stored tar-split, so an
unchanged layer is byte for byte what docker save exports and matches its
diff_id. A layer whose files were changed on disk after the pull — which
changes every container built on it and which docker diff never shows — is
captured as found and reported (layer-modified-on-disk, one finding per
path; amber diff and amber ls show them).

Nothing is written under ROOT; files are opened read-only without updating
their access times; paths from the runtime's JSON and link files are
resolved inside ROOT and never followed out of it.`,
		Example: `  amber capture host /mnt/evidence web db -o case.tar.zst --case 2026-041
  amber capture host /mnt/evidence --all -o case.tar.zst
  amber capture host /mnt/evidence --image app:v2 -o img.tar.zst
  amber capture host /mnt/evidence --runtime containerd k8s.io/3f2a9c -o pod.tar.zst
  amber capture host / --docker-root /data/docker web -o web.tar.zst`,
		Args: argsRange(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.runCaptureHost(o, h, args[0], args[1:], images, all)
		},
	}
	o.addFlags(c)
	h.add(c)
	c.Flags().BoolVar(&all, "all", false, "every container and image found (of one runtime: choose with --runtime when both hold some)")
	c.Flags().StringArrayVar(&images, "image", nil, "also capture this image (a reference or ID; repeatable)")
	c.Flags().BoolVar(&o.volumes, "volumes", false, "also capture the contents of the containers' named volumes")
	return c
}

func (e *env) runCaptureHost(o *captureOptions, h hostFlags, root string, containers, images []string, all bool) error {
	if len(containers)+len(images) == 0 && !all {
		return usageError{errors.New("name containers, --image, or --all (amber host ROOT lists them)")}
	}
	if err := o.check("host"); err != nil {
		return err
	}
	rts, err := openHost(root, h)
	if err != nil {
		return err
	}
	defer closeHost(rts)
	rt, err := e.hostRuntimeFor(rts, containers, images, all)
	if err != nil {
		return err
	}
	if all {
		if containers, images, err = e.everything(rt); err != nil {
			return err
		}
		if len(containers)+len(images) == 0 {
			return fmt.Errorf("%w: %s holds no container or image", engine.ErrNoSuchObject, rt.Info().Host)
		}
	}
	req, err := e.engineRequest(o, images, containers)
	if err != nil {
		return err
	}
	return e.captureWith(o, rt, req)
}

// hostRuntimeFor is the one runtime found under ROOT that knows every
// container and image asked for (with --all: the one that holds any).
func (e *env) hostRuntimeFor(rts []*hostRuntime, containers, images []string, all bool) (engine.Runtime, error) {
	var ok []*hostRuntime
	var why []string
	for _, r := range rts {
		if r.rt == nil {
			why = append(why, r.Name+": "+r.Error)
			continue
		}
		if all {
			if c, i, err := e.everything(r.rt); err == nil && len(c)+len(i) > 0 {
				ok = append(ok, r)
			} else if err != nil {
				why = append(why, r.Name+": "+err.Error())
			}
			continue
		}
		knows := true
		for _, c := range containers {
			if _, err := r.rt.Container(e.ctx, c); err != nil {
				knows = false
				why = append(why, r.Name+": "+err.Error())
				break
			}
		}
		for _, i := range images {
			if !knows {
				break
			}
			if _, err := r.rt.Image(e.ctx, i); err != nil {
				knows = false
				why = append(why, r.Name+": "+err.Error())
			}
		}
		if knows {
			ok = append(ok, r)
		}
	}
	switch len(ok) {
	case 1:
		return ok[0].rt, nil
	case 0:
		return nil, fmt.Errorf("%w: no runtime on this disk holds them: %s", engine.ErrNoSuchObject, strings.Join(why, "; "))
	}
	names := make([]string, len(ok))
	for i, r := range ok {
		names[i] = r.Name + " (" + r.DataRoot + ")"
	}
	return nil, usageError{fmt.Errorf("%d runtimes hold them, %s: choose one with --runtime (an archive holds one runtime's evidence)", len(ok), strings.Join(names, ", "))}
}

// everything is every container and image a runtime lists (--all).
func (e *env) everything(rt engine.Runtime) (containers, images []string, err error) {
	if l, ok := rt.(engine.Lister); ok {
		ss, err := l.List(e.ctx)
		if err != nil {
			return nil, nil, err
		}
		for _, s := range ss {
			id := s.ID
			if s.Namespace != "" {
				id = s.Namespace + "/" + s.ID
			}
			containers = append(containers, id)
		}
	}
	if l, ok := rt.(engine.ImageLister); ok {
		ii, err := l.ListImages(e.ctx)
		if err != nil {
			return nil, nil, err
		}
		for _, i := range ii {
			ref := i.ID
			if len(i.Refs) > 0 {
				ref = i.Refs[0]
			}
			if i.Namespace != "" {
				ref = i.Namespace + "/" + ref
			}
			images = append(images, ref)
		}
	}
	return containers, images, nil
}
