package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/archive/cgozstd"
	"github.com/amber-forensics/amber/imageconfig"
	"github.com/amber-forensics/amber/internal/textsafe"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot"
	"github.com/amber-forensics/amber/snapshot/registry"
	"github.com/amber-forensics/amber/view"
)

// openAny opens an amber archive, or indexes a plain docker-save tarball
// or OCI layout into a temporary one (removed by the returned cleanup).
func (e *env) openAny(p string) (*archive.Archive, func(), error) {
	a, done, _, err := e.openAnyPlain(p)
	return a, done, err
}

// openAnyPlain is openAny, and says whether p was a plain source (noted
// for the person reading: a temporary archive is a view, not evidence).
func (e *env) openAnyPlain(p string) (*archive.Archive, func(), bool, error) {
	if registry.IsRef(p) {
		a, _, err := e.openRemote(p)
		if err != nil {
			return nil, nil, false, err
		}
		return a, func() { a.Close() }, false, nil
	}
	a, plain, done, err := snapshot.OpenAny(e.ctx, p, manifest.Tool{Name: "amber", Version: version}, e.args, snapshot.Options{Encoder: cgozstd.Encoder()})
	if err != nil {
		return nil, nil, false, err
	}
	if plain {
		e.notePlain(p)
	}
	return a, done, plain, nil
}

// notePlain says that p was indexed into a temporary archive.
func (e *env) notePlain(p string) {
	fmt.Fprintf(e.stderr, "amber: %s is not an amber archive: indexed into a temporary archive (removed when amber is done with it); 'amber capture image' keeps evidence\n", p)
}

// artifactArg resolves "images/NAME" or "containers/NAME" (or nothing,
// when the archive holds one image) to an artifact.
func artifactArg(a *archive.Archive, arg string) (*manifest.Artifact, error) {
	if arg == "" {
		var imgs []*manifest.Artifact
		for i := range a.Manifest.Artifacts {
			if a.Manifest.Artifacts[i].Kind == manifest.KindImage {
				imgs = append(imgs, &a.Manifest.Artifacts[i])
			}
		}
		if len(imgs) == 1 {
			return imgs[0], nil
		}
		var names []string
		for _, x := range imgs {
			names = append(names, "images/"+x.Name)
		}
		return nil, usageError{fmt.Errorf("the archive holds %d images; name one: %s", len(imgs), strings.Join(names, " "))}
	}
	kind, name, ok := strings.Cut(strings.Trim(arg, "/"), "/")
	k := map[string]string{"images": manifest.KindImage, "containers": manifest.KindContainer}[kind]
	if !ok || k == "" || strings.Contains(name, "/") {
		return nil, usageError{fmt.Errorf("%q: give images/NAME or containers/NAME", arg)}
	}
	art, found := a.Manifest.Artifact(k, name)
	if !found {
		return nil, fmt.Errorf("%w: %s", view.ErrNotFound, arg)
	}
	return art, nil
}

// openArtifact opens an archive (or plain source), args[0], and resolves
// the artifact named by args[1], if given, in it; done releases the archive.
func (e *env) openArtifact(args []string) (*archive.Archive, *manifest.Artifact, func(), error) {
	arg := ""
	if len(args) > 1 {
		arg = args[1]
	}
	a, done, err := e.openAny(args[0])
	if err != nil {
		return nil, nil, nil, err
	}
	art, err := artifactArg(a, arg)
	if err != nil {
		done()
		return nil, nil, nil, err
	}
	return a, art, done, nil
}

func readConfig(a *archive.Archive, art *manifest.Artifact) (*imageconfig.Config, error) {
	b, err := a.ReadEntry(manifest.BlobName(art.Config.Digest), imageconfig.MaxConfigSize)
	if err != nil {
		return nil, err
	}
	c, err := imageconfig.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", manifest.ErrCorrupt, err)
	}
	return c, nil
}

func (e *env) newConfigCmds() []*cobra.Command {
	var asJSON bool
	mk := func(use, short, long, example string, run func(a *archive.Archive, art *manifest.Artifact, c *imageconfig.Config) error) *cobra.Command {
		cmd := &cobra.Command{
			Use: use + " ARCHIVE [images/NAME|containers/NAME]", Short: short, Long: long, Example: example,
			Args: argsRange(1, 2),
			RunE: func(cmd *cobra.Command, args []string) error {
				a, art, done, err := e.openArtifact(args)
				if err != nil {
					return err
				}
				defer done()
				c, err := readConfig(a, art)
				if err != nil {
					return err
				}
				return run(a, art, c)
			},
		}
		cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
		return cmd
	}
	history := mk("history", "Show an image's build history, like docker history --no-trunc",
		`history lists the build steps recorded in the image config, newest first:
the layer each made (- for none), when, its size in the archive (bytes of
the uncompressed layer tar), and the command. A container shows its image's
steps and, last, amber's own step that added its changes layer.`,
		`  amber history case.tar.zst images/lamp-wordpress_v2
  amber history image.tar --json | jq '.[] | select(.layer >= 0)'`,
		func(a *archive.Archive, art *manifest.Artifact, c *imageconfig.Config) error {
			sizes := make([]int64, len(art.Layers))
			for i, l := range art.Layers {
				sizes[i] = l.Size
				if l.Missing {
					sizes[i] = -1
				}
			}
			if !asJSON {
				_, err := e.stdout.Write(imageconfig.HistoryText(c, sizes))
				return err
			}
			steps, _ := c.Steps()
			type row struct {
				Layer      int    `json:"layer"`
				Digest     string `json:"digest,omitempty"`
				Size       int64  `json:"size"`
				Created    string `json:"created,omitempty"`
				CreatedBy  string `json:"created_by"`
				Comment    string `json:"comment,omitempty"`
				EmptyLayer bool   `json:"empty_layer"`
				layerSource
			}
			var out []row
			for _, s := range steps {
				r := row{Layer: s.Layer, CreatedBy: s.CreatedBy, Comment: s.Comment, EmptyLayer: s.EmptyLayer}
				if !s.Created.IsZero() {
					r.Created = s.Created.UTC().Format("2006-01-02T15:04:05Z07:00")
				}
				if s.Layer >= 0 && s.Layer < len(art.Layers) {
					l := art.Layers[s.Layer]
					r.Digest, r.Size, r.layerSource = l.Digest.String(), l.Size, sourceOf(l)
				}
				out = append(out, r)
			}
			return e.printJSON(out)
		})
	dockerfile := mk("dockerfile", "Reconstruct an image's Dockerfile from its history",
		`dockerfile rebuilds the Dockerfile an image was built from, from the
history in its config: the legacy builder's "#(nop)" form and BuildKit's,
RUN with build arguments, ADD/COPY (whose sources are recorded only as
content digests), docker import. Each instruction is preceded by a comment
with its layer and time; what cannot be recovered is a comment saying so,
never a guess. The base image's own steps are included: its name is not
recorded in the config.`,
		`  amber dockerfile case.tar.zst images/lamp-wordpress_v2
  amber dockerfile image.tar`,
		func(a *archive.Archive, art *manifest.Artifact, c *imageconfig.Config) error {
			if !asJSON {
				_, err := e.stdout.Write(imageconfig.Dockerfile(c))
				return err
			}
			steps, _ := c.Steps()
			type row struct {
				Layer       int    `json:"layer"`
				Instruction string `json:"instruction,omitempty"`
				Note        string `json:"note,omitempty"`
				Recovered   bool   `json:"recovered"`
			}
			var out []row
			for _, s := range steps {
				line, note, ok := imageconfig.Instruction(s.History)
				out = append(out, row{s.Layer, line, note, ok})
			}
			return e.printJSON(out)
		})
	inspect := mk("inspect", "Show an image's runtime settings: env, entrypoint, cmd, user, ports, ...",
		`inspect prints what the image config sets for a container: environment,
entrypoint, command, user, working directory, labels, exposed ports,
volumes, healthcheck, stop signal, shell, onbuild triggers, platform and
creation time.`,
		`  amber inspect case.tar.zst images/lamp-wordpress_v2
  amber inspect case.tar.zst containers/wordpress --json | jq .env`,
		func(a *archive.Archive, art *manifest.Artifact, c *imageconfig.Config) error {
			r := c.Config
			out := map[string]any{
				"artifact": art.Kind + "s/" + art.Name, "image_id": art.ImageID.String(), "refs": art.Refs,
				"created": c.Created, "author": c.Author, "platform": c.OS + "/" + c.Architecture,
				"env": r.Env, "entrypoint": r.Entrypoint, "cmd": r.Cmd, "user": r.User, "workdir": r.WorkingDir,
				"labels": r.Labels, "ports": keys(r.ExposedPorts), "volumes": keys(r.Volumes), "healthcheck": r.Healthcheck,
				"stopsignal": r.StopSignal, "shell": r.Shell, "onbuild": r.OnBuild,
			}
			type layerRow struct {
				Layer  int    `json:"layer"`
				Digest string `json:"digest"`
				Size   int64  `json:"size"`
				layerSource
			}
			var layers []layerRow
			for i, l := range art.Layers {
				layers = append(layers, layerRow{i, l.Digest.String(), l.Size, sourceOf(l)})
			}
			out["layers"] = layers
			if asJSON {
				return e.printJSON(out)
			}
			// Every string of the config is evidence: escaped (the user
			// "nobody\x1b[6Droot" would show as "root").
			w := e.stdout
			fmt.Fprintf(w, "%s (image %s)\n", escapeName(out["artifact"].(string)), art.ImageID.Short())
			fmt.Fprintf(w, "platform    %s\ncreated     %s\n", escapeName(out["platform"].(string)), c.Created.UTC().Format("2006-01-02T15:04:05Z"))
			if c.Author != "" {
				fmt.Fprintf(w, "author      %s\n", escapeName(c.Author))
			}
			fmt.Fprintf(w, "user        %s\nworkdir     %s\n", escapeName(orDash(r.User)), escapeName(orDash(r.WorkingDir)))
			fmt.Fprintf(w, "entrypoint  %s\ncmd         %s\n", jsonOrDash(r.Entrypoint), jsonOrDash(r.Cmd))
			fmt.Fprintf(w, "ports       %s\nvolumes     %s\n", escapeName(orDash(strings.Join(keys(r.ExposedPorts), " "))), escapeName(orDash(strings.Join(keys(r.Volumes), " "))))
			fmt.Fprintf(w, "stopsignal  %s\nshell       %s\n", escapeName(orDash(r.StopSignal)), jsonOrDash(r.Shell))
			if r.Healthcheck != nil {
				fmt.Fprintf(w, "healthcheck %s every %s, timeout %s, start period %s, %d retries\n", jsonOrDash(r.Healthcheck.Test), r.Healthcheck.Interval, r.Healthcheck.Timeout, r.Healthcheck.StartPeriod, r.Healthcheck.Retries)
			} else {
				fmt.Fprintf(w, "healthcheck -\n")
			}
			for _, o := range r.OnBuild {
				fmt.Fprintf(w, "onbuild     %s\n", escapeName(o))
			}
			fmt.Fprintf(w, "env\n")
			for _, v := range r.Env {
				fmt.Fprintf(w, "  %s\n", escapeName(v))
			}
			fmt.Fprintf(w, "labels\n")
			for _, k := range sortedKeys(r.Labels) {
				fmt.Fprintf(w, "  %s=%s\n", escapeName(k), escapeName(r.Labels[k]))
			}
			fmt.Fprintf(w, "layers\n")
			for _, l := range layers {
				fmt.Fprintf(w, "  %-3d %s %s\n", l.Layer, l.Digest, l.layerSource.text(l.Digest, l.Size))
			}
			return nil
		})
	return []*cobra.Command{history, dockerfile, inspect}
}

func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func keys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// jsonOrDash shows an exec-form list as JSON, with what encoding/json
// leaves raw (DEL, C1 controls, bidi overrides) escaped as well.
func jsonOrDash(v []string) string {
	if len(v) == 0 {
		return "-"
	}
	b, _ := json.Marshal(v)
	return textsafe.JSON(b)
}

// layerSource is where a layer came from, as the source described it.
type layerSource struct {
	SourceMediaType string   `json:"source_media_type,omitempty"`
	SourceDigest    string   `json:"source_digest,omitempty"`
	SourceSize      int64    `json:"source_size,omitempty"`
	SourceURLs      []string `json:"source_urls,omitempty"`
	NotPresent      bool     `json:"not_present,omitempty"`
}

func sourceOf(l manifest.Layer) layerSource {
	s := layerSource{SourceMediaType: l.SourceMediaType, SourceSize: l.SourceSize, SourceURLs: l.SourceURLs, NotPresent: l.Missing}
	if !l.SourceDigest.IsZero() {
		s.SourceDigest = l.SourceDigest.String()
	}
	return s
}

// text renders it for inspect: size, then the source's description when
// the source had the layer otherwise than as stored (compressed, foreign).
func (s layerSource) text(digest string, size int64) string {
	var b strings.Builder
	if s.NotPresent {
		b.WriteString("NOT PRESENT in the source")
	} else {
		fmt.Fprintf(&b, "%d bytes", size)
	}
	if s.SourceDigest == digest && s.SourceSize == size && s.SourceMediaType == "" && len(s.SourceURLs) == 0 {
		return b.String() + "  (the source's own bytes)"
	}
	if s.SourceMediaType != "" || s.SourceDigest != "" {
		fmt.Fprintf(&b, "  from %s %s", escapeName(dash(s.SourceMediaType)), dash(s.SourceDigest))
	}
	if s.SourceSize > 0 {
		fmt.Fprintf(&b, " (%d bytes)", s.SourceSize)
	}
	for _, u := range s.SourceURLs {
		b.WriteString("  url " + escapeName(u))
	}
	return b.String()
}
