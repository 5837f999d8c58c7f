package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/layers"
	"github.com/amber-forensics/amber/manifest"
)

func layerIndexes(a *archive.Archive, art *manifest.Artifact) ([]*fileindex.Index, error) {
	var ixs []*fileindex.Index
	for _, l := range art.Layers {
		ix, err := a.Index(l.Digest)
		if err != nil {
			return nil, err
		}
		ixs = append(ixs, ix)
	}
	return ixs, nil
}

func (e *env) newLayersCmds() []*cobra.Command {
	var asJSON bool
	layersCmd := &cobra.Command{
		Use:   "layers ARCHIVE [images/NAME|containers/NAME]",
		Short: "Show what each layer added, modified and deleted, and the space later layers waste",
		Long: `layers prints, for each layer of an image (or container: its last layer is
its changes), a header line (index, digest, size, created-by) and then one
line per path in diff's A/C/D form: added, modified (relative to the layers
below), deleted (whiteouts and opaque directories), with its size. A file
that a later layer overwrites or deletes says so, and in which layer: it is
still evidence in this one. A hard link shows the name it links to instead
of a size ("hard link to /bin/busybox"): its bytes are that inode's.

Wasted space of layer N is the bytes of layer N's regular files that a
later layer overwrites (with a file, link or directory) or deletes (a
whiteout of the file or of a directory above it, an opaque directory, a
parent replaced by a file): bytes the image still ships but no container
sees. Each inode counts once, however many hard-linked names it has, and
not at all while another of its names is still visible in the merged
image (that line says "still visible as"). The total is the sum over the
layers.

dive counts differently: it sums every version of a path that is a leaf
(not a directory with entries) in two or more layers, the visible version
included, and does not count files deleted through a whiteout of their
directory (rm -rf DIR): a file overwritten once counts twice there, and
a directory removed with rm -rf not at all.

Only the file indexes are read.`,
		Example: `  amber layers case.tar.zst images/lamp-wordpress_v2
  amber layers case.tar.zst containers/wordpress --json | jq '.[] | {index, wasted_bytes}'`,
		Args: argsRange(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, art, done, err := e.openArtifact(args)
			if err != nil {
				return err
			}
			defer done()
			ixs, err := layerIndexes(a, art)
			if err != nil {
				return err
			}
			reps, err := layers.Reports(ixs)
			if err != nil {
				return err
			}
			createdBy := map[int]string{}
			if c, err := readConfig(a, art); err == nil {
				steps, _ := c.Steps()
				for _, s := range steps {
					if s.Layer >= 0 {
						createdBy[s.Layer] = s.CreatedBy
					}
				}
			}
			if asJSON {
				type out struct {
					layers.Report
					Digest    string `json:"digest"`
					Size      int64  `json:"size"`
					CreatedBy string `json:"created_by"`
					Changes   []any  `json:"changes"`
				}
				var all []out
				for i, r := range reps {
					o := out{Report: r, Digest: art.Layers[i].Digest.String(), Size: art.Layers[i].Size, CreatedBy: createdBy[i], Changes: []any{}}
					for _, c := range r.Changes {
						o.Changes = append(o.Changes, struct {
							Kind string `json:"kind"`
							layers.PathChange
						}{string(c.Kind), c})
					}
					all = append(all, o)
				}
				return e.printJSON(all)
			}
			var total int64
			for i, r := range reps {
				fmt.Fprintf(e.stdout, "LAYER %d  %s  %d bytes  %s\n", i, art.Layers[i].Digest, art.Layers[i].Size, escapeName(orDash(createdBy[i])))
				for _, c := range r.Changes {
					// A hard link's bytes are its inode's, counted under
					// the name it links to: do not show them twice.
					d := fmt.Sprintf("%d bytes", c.Size)
					if c.LinkTo != "" {
						d = "hard link to " + escapeName(c.LinkTo)
						if c.LinkToEarlier {
							d = "hard link to an earlier " + escapeName(c.LinkTo) + " (written again later in this layer)"
						}
					}
					if c.Fate != "" {
						d += fmt.Sprintf(", %s in layer %d", c.Fate, c.FateLayer)
					}
					if c.VisibleAs != "" {
						d += ", still visible as " + escapeName(c.VisibleAs)
					}
					fmt.Fprintf(e.stdout, "%c %s  [%s]\n", c.Kind, escapeName(c.Path), d)
				}
				fmt.Fprintf(e.stdout, "  %d added, %d modified, %d deleted; %d bytes wasted by later layers\n\n", r.Added, r.Changed, r.Deleted, r.Wasted)
				total += r.Wasted
			}
			fmt.Fprintf(e.stdout, "wasted space: %d bytes in %d layers\n", total, len(reps))
			return nil
		},
	}
	layersCmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	blame := &cobra.Command{
		Use:   "blame ARCHIVE images/NAME|containers/NAME PATH",
		Short: "Show which layers added, modified or deleted a path",
		Long: `blame lists every layer that touched PATH, base first: added, modified,
deleted (by a whiteout, an opaque directory, or a parent replaced), and
says which layer the visible version comes from, or which deleted it.`,
		Example: `  amber blame case.tar.zst images/lamp-wordpress_v2 /etc/passwd
  amber blame case.tar.zst containers/wordpress /var/www/html/wp-config.php`,
		Args: argsRange(3, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, art, done, err := e.openArtifact(args)
			if err != nil {
				return err
			}
			defer done()
			ixs, err := layerIndexes(a, art)
			if err != nil {
				return err
			}
			ts, err := layers.Blame(ixs, args[2])
			if err != nil {
				return err
			}
			if len(ts) == 0 {
				return fmt.Errorf("%w: no layer of %s/%s holds %s", manifest.ErrNotFound, art.Kind+"s", art.Name, args[2])
			}
			if asJSON {
				return e.printJSON(ts)
			}
			for _, t := range ts {
				fmt.Fprintf(e.stdout, "layer %d  %c %s  %s  (%s)\n", t.Layer, t.Kind, args[2], t.How, art.Layers[t.Layer].Digest.Short())
			}
			last := ts[len(ts)-1]
			if last.Kind == 'D' {
				fmt.Fprintf(e.stdout, "deleted in layer %d; not in the merged view\n", last.Layer)
			} else {
				fmt.Fprintf(e.stdout, "visible version from layer %d\n", last.Layer)
			}
			return nil
		},
	}
	blame.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return []*cobra.Command{layersCmd, blame}
}
