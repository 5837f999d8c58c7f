package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/archive/cgozstd"
	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot"
	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/registry"
)

type captureOptions struct {
	output       string
	c            manifest.Case
	md5, sha1    bool
	json         bool
	hashSource   bool
	level        int
	maxExpansion int64
	maxIndexMiB  int64
	shared       bool
	// container capture
	pause    bool
	noMemory bool
	route    string
	engine   bool
	volumes  bool
	runtime  runtimeFlags
	// keepMismatched: an image file's layer that does not match its
	// digest is kept, flagged, not refused
	keepMismatched bool
	// imagesFrom: auto (a local Docker engine's images rebuilt from its
	// files) or engine (always its save)
	imagesFrom string
	// a registry's images (docker://)
	platform     string
	allPlatforms bool
	insecure     bool
	cache        string
	// keepLocal: with -o docker://, a directory that keeps a local copy
	keepLocal string
	// force: with -o docker://, replace a tag that exists
	force bool
	// transport, in tests, reaches a registry with the test's CA.
	transport http.RoundTripper
	// sign: sign (and timestamp) the sealed archive
	sign signFlags
}

func (o *captureOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVarP(&o.output, "output", "o", "", "archive to write (NAME.tar.zst; never overwritten), or docker://REGISTRY/REPO:TAG to stream it straight into a registry")
	f.StringVar(&o.keepLocal, "keep-local", "", "with -o docker://: also keep the archive and its sidecars in this directory")
	f.BoolVar(&o.force, "force", false, "with -o docker://: replace the tag if it names something already (what it named stays in the registry under its digest)")
	f.BoolVar(&o.insecure, "insecure", false, "reach the registry (a docker:// source or -o) over plain HTTP or with a certificate that is not verified (loopback and labs)")
	f.StringVar(&o.c.Case, "case", "", "case identifier")
	f.StringVar(&o.c.Exhibit, "exhibit", "", "exhibit identifier")
	f.StringVar(&o.c.Examiner, "examiner", "", "examiner's name (default: the OS user)")
	f.StringVar(&o.c.Notes, "notes", "", "free-text notes")
	f.BoolVar(&o.md5, "md5", false, "also write NAME.md5 for legacy tooling")
	f.BoolVar(&o.sha1, "sha1", false, "also write NAME.sha1 for legacy tooling")
	f.BoolVar(&o.json, "json", false, "print the result as JSON")
	f.IntVar(&o.level, "level", 0, "zstd level of the archive, 1 (fastest) to 19 (smallest); 0: the default (2)")
	f.BoolVar(&o.hashSource, "hash-source", false, "also record each source tarball's SHA-256 (one more read of it)")
	f.Int64Var(&o.maxExpansion, "max-expansion", snapshot.DefaultMaxExpansion, "refuse a compressed layer that expands more than this many times (0: no limit)")
	f.BoolVar(&o.shared, "shared", false, "write the archive and its sidecars as readable as the umask allows (0666 &^ umask, e.g. 0644), not 0600: it holds memory, environments and logs")
	f.StringVar(&o.sign.key, "sign-key", "", "sign the sealed archive with this PKCS#8 PEM key (Ed25519 or ECDSA P-256), as amber sign does: NAME.intoto.jsonl")
	f.StringVar(&o.sign.cert, "sign-cert", "", "with --sign-key: its X.509 certificate chain (PEM), carried in the signature")
	f.StringVar(&o.sign.tsa, "tsa", "", "RFC 3161 time-stamping authority URL: timestamp the signature (or, without --sign-key, the archive): NAME.*.tsr")
	f.Int64Var(&o.maxIndexMiB, "max-index-mib", fileindex.DefaultMaxIndexStrings>>20, "refuse a layer whose paths, link targets and xattrs add up to more than this many MiB (a hostile directory chain; 0: no limit)")
}

func (e *env) newCaptureCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "capture",
		Short: "Capture evidence into a sealed archive",
	}
	o := &captureOptions{}
	img := &cobra.Command{
		Use:   "image SOURCE... -o ARCHIVE.tar.zst",
		Short: "Capture images from a registry, the Docker engine, docker-save tarballs or OCI layouts",
		Long: `Capture every image of each SOURCE (a 'docker save' tarball, legacy or
Docker 25+ layout; an OCI archive tarball; or an OCI image layout directory)
into one sealed archive. A SOURCE docker://HOST[:PORT]/REPO[:TAG|@sha256:...]
is an image in a registry (the registry must be named: a short name such as
alpine is refused): of a multi-platform index, the image of --platform (default:
this host's) or, with --all-platforms, every one; the digest the reference
resolved to is recorded; foreign (non-distributable) layers are recorded, not
fetched. Credentials come from the Docker config (DOCKER_CONFIG, else
~/.docker/config.json, and its credential helpers); a custom CA through
SSL_CERT_FILE; --insecure allows plain HTTP and an unverified certificate.
A SOURCE that is not a file or directory is an
image reference or ID asked of the Docker engine (DOCKER_HOST, else the
default socket; --engine forces this). Layers are stored uncompressed and
checked against the config's diff_ids (a mismatch refuses the source;
--keep-mismatched stores such a layer as found, flagged
layer-digest-mismatch); each gets a file index with every file's SHA-256.

The archive is written to a file with no name and linked as ARCHIVE once
sealed (where the file system has no unnamed files, to ARCHIVE.partial,
renamed); beside it
go ARCHIVE.sha256 (sha256sum -c --strict accepts it) and
ARCHIVE.custody.jsonl (the chain-of-custody log). Ctrl-C, or kill -9,
leaves nothing. A layer whose sparse files declare more bytes than the
expansion limit allows (--max-expansion, times the layer's size, at least
64 MiB) is refused: their holes would be hashed as zeros.
A layer's file index is built in bounded memory: a large one (a layer of
a million files) spills into temp files beside the archive, unlinked as
they are made (about twice the index's size: ~400 MB for a million files).
` + toRegistryHelp,
		Example: `  amber capture image app.tar -o case.tar.zst --case 2026-041 --exhibit E1 \
      --examiner "J. Doe" --notes "seized from host web-3"
  amber capture image ./oci-layout -o image.tar.zst --md5 --sha1
  amber capture image lamp-wordpress:v2 -o image.tar.zst     # from the engine
  amber capture image docker://registry.example/app:v2 --platform linux/arm64 -o app.tar.zst`,
		Args: argsRange(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.runCaptureImage(o, args)
		},
	}
	o.addFlags(img)
	img.Flags().BoolVar(&o.engine, "engine", false, "every SOURCE is an image in the Docker engine, even if a file of that name exists")
	img.Flags().BoolVar(&o.keepMismatched, "keep-mismatched", false, "keep a layer (of an image file or a registry) whose bytes do not match its manifest's digest or the config's diff_id: stored as found under its own digest and flagged (layer-digest-mismatch), instead of refusing the source (one more read of each layer)")
	img.Flags().StringVar(&o.platform, "platform", "", "of a registry's multi-platform image, the one to take: os/arch[/variant] (default: this host's, "+registry.HostPlatform()+")")
	img.Flags().BoolVar(&o.allPlatforms, "all-platforms", false, "of a registry's multi-platform image, take every platform")
	img.Flags().StringVar(&o.cache, "cache", "", "where a registry's blob is kept while it is captured, unlinked (default: the archive's directory)")
	co := &captureOptions{}
	ctr := &cobra.Command{
		Use:   "container CONTAINER... -o ARCHIVE.tar.zst",
		Short: "Capture running or stopped containers (Docker, containerd, Podman)",
		Long: `Capture each CONTAINER (name or ID) into one sealed archive, in order of
volatility. The runtime: --runtime auto (the default) asks each runtime this
build knows — the Docker engine (DOCKER_HOST, else the default socket),
containerd (--address; every namespace but Docker's own moby, or the one
--namespace names) and Podman: through its Docker-compatible API service
(--podman-socket, else /run/podman/podman.sock when it exists and no
storage is named) or its storage, read directly with no service
(--podman-root, --podman-runroot) — and takes the one that knows every
CONTAINER; two that do is an error naming both (choose with --runtime and
--namespace). One storage reached twice (DOCKER_HOST at Podman's socket)
counts once, as podman. amber ps lists them.

  1. memory: every process of the container (host PIDs, from its cgroup) as
     an ELF core file of its mappings (readelf, gdb), with maps, cmdline,
     environ, status, open files, sockets and cwd/exe links. Read from
     /proc/PID/mem without attaching to or stopping the process; only on the
     engine's own host, as root. Unreadable regions are recorded.
  2. its image, with tags, config and history; layers shared between
     containers are stored once.
  3. its filesystem, as one more OCI layer over the image's: what it added or
     changed, whiteouts for what it deleted. Read from the overlay2 upper
     directory when the engine is local (exact whiteouts, opaque directories,
     xattrs, nanosecond times), else from the engine's export stream compared
     with the image by content. Files are compared by SHA-256, so a content
     change that kept size and mtime is found; the engine's own change list
     is kept too and every disagreement is reported.
  4. inspect.json, changes.txt (A/C/D, content-aware), engine-changes.txt,
     logs/stdout and logs/stderr (with the engine's timestamps).
  5. with --volumes, each named volume's contents as an artifact of its own
     (volumes/<name>). Bind mounts are recorded, never walked.

Nothing is written to the container, its image or the engine: no image,
container or volume is created. --pause freezes the containers for a
consistent capture and always unpauses them, also on Ctrl-C, SIGTERM or an
error; both are in the custody log.
` + toRegistryHelp,
		Example: `  amber capture container wordpress -o case.tar.zst --case 2026-041 --examiner "J. Doe"
  amber capture container wordpress db cache -o case.tar.zst
  amber capture container wordpress --no-memory --pause -o case.tar.zst
  amber capture container wordpress --volumes -o case.tar.zst    # named volumes' contents too
  amber capture container --runtime podman web -o web.tar.zst      # rootful Podman, from /var/lib/containers/storage
  amber capture container --runtime containerd --namespace k8s.io 3f2a9c -o pod.tar.zst   # a Kubernetes node's container
  DOCKER_HOST=ssh://admin@web-3 amber capture container web -o web.tar.zst   # remote: no memory`,
		Args: argsRange(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needsLinux("capture container", "a container's files and memory are read on the engine's Linux host"); err != nil {
				return err
			}
			return e.runCaptureEngine(co, nil, args)
		},
	}
	co.addFlags(ctr)
	ctr.Flags().BoolVar(&co.pause, "pause", false, "freeze the containers during the capture (always unpaused afterwards)")
	ctr.Flags().BoolVar(&co.noMemory, "no-memory", false, "do not take the processes' memory")
	ctr.Flags().BoolVar(&co.volumes, "volumes", false, "also capture the contents of the containers' volumes (bind mounts are recorded, never walked)")
	ctr.Flags().StringVar(&co.route, "route", snapshot.RouteAuto, "how to read the filesystem: auto, upperdir (a local overlay upper directory) or export (through the engine); auto also reads a containerd snapshot mounted read-only when there is no upper directory")
	ctr.Flags().StringVar(&co.imagesFrom, "images-from", "auto", "where the images come from: auto (a local Docker engine on overlay2: rebuilt from its own files and checked layer by layer, which finds a layer changed on disk; else the engine's save) or engine (always the engine's save, as docker save gives it)")
	co.runtime.add(ctr)
	c.AddCommand(img, ctr, e.newCapturePodCmd(), e.newCaptureHostCmd())
	return c
}

// isPath reports whether a capture source names something on disk.
func isPath(s string) bool {
	_, err := os.Lstat(s)
	return err == nil
}

func (o *captureOptions) check(what string) error {
	if o.output == "" {
		return usageError{fmt.Errorf("capture %s needs -o ARCHIVE.tar.zst", what)}
	}
	if o.level < 0 || o.level > 19 {
		return usageError{fmt.Errorf("--level %d: use 1 to 19", o.level)}
	}
	return nil
}

func (e *env) runCaptureImage(o *captureOptions, sources []string) error {
	if err := o.check("image"); err != nil {
		return err
	}
	if o.platform != "" && o.allPlatforms {
		return usageError{fmt.Errorf("--platform and --all-platforms: choose one")}
	}
	if o.platform != "" {
		if _, _, _, err := registry.ParsePlatform(o.platform); err != nil {
			return usageError{err}
		}
	}
	var files, refs, remote []string
	for _, s := range sources {
		switch {
		case !o.engine && registry.IsRef(s):
			remote = append(remote, s)
		case !o.engine && isPath(s):
			files = append(files, s)
		default:
			refs = append(refs, s)
		}
	}
	if len(remote) > 0 && len(refs) > 0 {
		return usageError{fmt.Errorf("capture image: %s are in a registry and %s are engine images; capture them into separate archives", strings.Join(remote, ", "), strings.Join(refs, ", "))}
	}
	if (o.platform != "" || o.allPlatforms || (o.insecure && !registry.IsRef(o.output)) || o.cache != "") && len(remote) == 0 {
		return usageError{fmt.Errorf("--platform, --all-platforms, --insecure and --cache are for images in a registry (docker://HOST/REPO:TAG)")}
	}
	if len(refs) > 0 {
		if len(files) > 0 {
			return usageError{fmt.Errorf("capture image: %s are files and %s are engine images; capture them into separate archives", strings.Join(files, ", "), strings.Join(refs, ", "))}
		}
		return e.runCaptureEngine(o, refs, nil)
	}
	req := snapshot.Request{
		Sources: sources, Output: o.output, Case: o.c, CommandLine: e.args,
		Tool: manifest.Tool{Name: "amber", Version: version}, MD5: o.md5, SHA1: o.sha1, HashSources: o.hashSource, Level: o.level,
		Options: o.snapshotOptions(),
	}
	return e.captureTo(o, &req.Output, &req.Options, func() (*snapshot.Result, error) {
		return e.captureImageFiles(o, req, remote)
	})
}

// captureImageFiles captures image files and a registry's images.
func (e *env) captureImageFiles(o *captureOptions, req snapshot.Request, remote []string) (*snapshot.Result, error) {
	if len(remote) > 0 {
		ropts := registry.SourceOptions{Options: registryOptions(o.insecure),
			Platform: o.platform, AllPlatforms: o.allPlatforms, SpoolDir: o.cache}
		if ropts.SpoolDir == "" {
			ropts.SpoolDir = filepath.Dir(req.Output)
		}
		req.OpenRef = ropts.Opener()
	}
	prog := isTerminal(e.stderr)
	start := time.Now()
	if prog {
		req.Progress = func(msg string) { fmt.Fprintf(e.stderr, "\r\033[K%s", escapeName(msg)) }
		req.WriteProgress = func(n int64) {
			fmt.Fprintf(e.stderr, "\r\033[K%d MiB archived, %.0f MiB/s", n>>20, float64(n)/(1<<20)/time.Since(start).Seconds())
		}
	}
	res, err := snapshot.CaptureImageFiles(e.ctx, req)
	if prog {
		fmt.Fprint(e.stderr, "\r\033[K")
	}
	return res, err
}

func (e *env) runCaptureEngine(o *captureOptions, images, containers []string) error {
	req, err := e.engineRequest(o, images, containers)
	if err != nil {
		return err
	}
	// The one place the runtime is chosen: --runtime, or the one
	// reachable runtime that knows the containers.
	rt, err := e.runtimeFor(o.runtime, containers)
	if err != nil {
		return err
	}
	defer rt.Close()
	return e.captureWith(o, rt, req)
}

// engineRequest checks the options of a capture from a runtime and makes
// its request, progress on stderr included.
func (e *env) engineRequest(o *captureOptions, images, containers []string) (snapshot.EngineRequest, error) {
	if err := o.check("container"); err != nil {
		return snapshot.EngineRequest{}, err
	}
	switch o.route {
	case snapshot.RouteAuto, snapshot.RouteUpperdir, snapshot.RouteExport, "":
	default:
		return snapshot.EngineRequest{}, usageError{fmt.Errorf("--route %q: use auto, upperdir or export", o.route)}
	}
	req := snapshot.EngineRequest{
		Images: images, Containers: containers, Output: o.output, Case: o.c, CommandLine: e.args,
		Tool: manifest.Tool{Name: "amber", Version: version}, MD5: o.md5, SHA1: o.sha1, Level: o.level,
		Pause: o.pause, NoMemory: o.noMemory, Route: o.route, Volumes: o.volumes,
		Options: o.snapshotOptions(),
	}
	// Progress goes to stderr: on a terminal as one updating line, else
	// (a log file, a pipe) one line per step.
	start := time.Now()
	// A message names evidence (a process's comm, a container's name):
	// escaped.
	if isTerminal(e.stderr) {
		req.Progress = func(msg string) { fmt.Fprintf(e.stderr, "\r\033[K%s", escapeName(msg)) }
		req.WriteProgress = func(n int64) {
			fmt.Fprintf(e.stderr, "\r\033[K%d MiB archived, %.0f MiB/s", n>>20, float64(n)/(1<<20)/time.Since(start).Seconds())
		}
	} else if !o.json {
		req.Progress = func(msg string) { fmt.Fprintf(e.stderr, "amber: %s\n", escapeName(msg)) }
	}
	return req, nil
}

// captureWith runs a capture from rt and prints what it sealed.
func (e *env) captureWith(o *captureOptions, rt engine.Runtime, req snapshot.EngineRequest) error {
	switch o.imagesFrom {
	case "", "auto":
		req.DiskImages = diskImagesFor(rt)
	case "engine":
	default:
		return usageError{fmt.Errorf("--images-from %q: use auto or engine", o.imagesFrom)}
	}
	return e.captureTo(o, &req.Output, &req.Options, func() (*snapshot.Result, error) {
		res, err := snapshot.CaptureEngine(e.ctx, rt, req)
		if isTerminal(e.stderr) {
			fmt.Fprint(e.stderr, "\r\033[K")
		}
		return res, err
	})
}

func (e *env) printCapture(o *captureOptions, res *snapshot.Result) error {
	return e.printCaptureWith(o, res, nil)
}

// printCaptureWith prints a capture; extra are more fields of --json.
func (e *env) printCaptureWith(o *captureOptions, res *snapshot.Result, extra map[string]any) error {
	if o.json {
		out := map[string]any{
			"archive": res.Sealed.Path, "size": res.Sealed.Size, "sha256": res.Sealed.SHA256.Hex(),
			"manifest_sha256": res.Sealed.ManifestSHA256.Hex(), "sidecars": res.Sidecars,
			"artifacts": res.Manifest.Artifacts, "anomalies": res.Manifest.Anomalies,
		}
		if res.Sealed.MD5 != "" {
			out["md5"] = res.Sealed.MD5
		}
		if res.Sealed.SHA1 != "" {
			out["sha1"] = res.Sealed.SHA1
		}
		for k, v := range extra {
			out[k] = v
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	w := e.stdout
	fmt.Fprintf(w, "sealed %s (%d bytes)\n", escapeName(res.Sealed.Path), res.Sealed.Size)
	fmt.Fprintf(w, "sha256 %s\n", res.Sealed.SHA256.Hex())
	if res.Sealed.MD5 != "" {
		fmt.Fprintf(w, "md5    %s\n", res.Sealed.MD5)
	}
	if res.Sealed.SHA1 != "" {
		fmt.Fprintf(w, "sha1   %s\n", res.Sealed.SHA1)
	}
	// What the source and the host said is evidence: escaped.
	for _, a := range res.Manifest.Artifacts {
		if a.Kind == manifest.KindArtifact {
			fmt.Fprintf(w, "artifacts/%s: %s, %d blobs, manifest %s", a.Name, escapeName(a.ArtifactType), len(a.Blobs), a.Manifest.Digest.Short())
			if a.Describes != "" {
				fmt.Fprintf(w, ", describes %s", escapeName(a.Describes))
			}
			fmt.Fprintln(w)
			continue
		}
		fmt.Fprintf(w, "%ss/%s: %d layers, %d files, image %s, merkle %s\n", escapeName(a.Kind), a.Name, len(a.Layers), a.Files, a.ImageID.Short(), a.MerkleRoot.Hex()[:16])
		if c := a.Container; c != nil {
			fmt.Fprintf(w, "  filesystem via %s: %d added, %d changed, %d deleted (engine's list disagrees on %d)\n", escapeName(c.Route), c.Changes.Added, c.Changes.Changed, c.Changes.Deleted, c.Changes.Disagree)
			if c.MemorySkipped != "" {
				fmt.Fprintf(w, "  memory: not taken: %s\n", escapeName(c.MemorySkipped))
			}
			for _, p := range c.Processes {
				fmt.Fprintf(w, "  memory: %s: %d mappings, %d MiB, %d unreadable regions", escapeName(p.Dir), p.Mappings, p.Bytes>>20, len(p.Unreadable))
				if p.Lost != "" {
					fmt.Fprintf(w, "; lost: %s", escapeName(p.Lost))
				}
				fmt.Fprintln(w)
			}
		}
	}
	for _, an := range res.Manifest.Anomalies {
		where := anomalyWhere(res.Manifest, an)
		if an.Path != "" {
			where += " " + escapeName(an.Path)
		}
		fmt.Fprintf(w, "anomaly: %s: %s: %s\n", where, escapeName(an.Kind), escapeName(an.Detail))
	}
	for _, s := range res.Sidecars {
		fmt.Fprintf(w, "wrote %s\n", escapeName(s))
	}
	return nil
}

// snapshotOptions applies the limits of the command line.
func (o *captureOptions) snapshotOptions() snapshot.Options {
	lessGarbage()
	opts := snapshot.Options{MaxExpansion: o.maxExpansion, MaxIndexStrings: o.maxIndexMiB << 20, Encoder: cgozstd.Encoder(), KeepMismatched: o.keepMismatched}
	if o.maxIndexMiB == 0 {
		opts.MaxIndexStrings = -1 // no limit
	}
	if o.shared {
		opts.Perm = 0o666 // the umask decides
	}
	return opts
}

// lessGarbage has the collector run when the heap has grown by half of
// what is live, not by all of it: a layer's index is built from packed,
// pointer-free records that cost the collector little to keep track of,
// while Go's default lets a layer of a million files take twice the
// memory it needs. GOGC, when set, decides instead.
func lessGarbage() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
}

// manyFiles is the layer size (in files) from which verify collects
// garbage sooner (lessGarbage).
const manyFiles = 100_000
