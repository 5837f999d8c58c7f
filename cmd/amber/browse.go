package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/term"
	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/browse"
	"github.com/amber-forensics/amber/extract"
)

func (e *env) newBrowseCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "browse ARCHIVE [VIEWPATH]",
		Short: "Explore an archive interactively: layers, stages, containers, memory, content",
		Long: `browse opens a terminal explorer of an archive (or a docker-save tarball or
OCI layout, indexed into a temporary archive as amber layers does, or
docker://REF read lazily). The left pane lists the images and containers,
their layers (index, size, A/M/D counts, the command that made it) and a
container's processes whose memory was taken; the right pane the files of
the selected layer alone or of the stage up to it (s), each marked
+ added, ~ modified, - removed, or blank (unchanged) against the layers
below, with mode, owner and size.

Enter shows a file's content, checked against its SHA-256 first (text with
line numbers, binary as hex with offsets); on a modified file its diff
against the version below. b shows which layers touched a path, e extracts
it (recorded in the custody log, as amber extract does), c shows the
changes only, / filters by path (glob, re:REGEX or text), w the wasted
space as amber layers counts it, ? the keys, q quits.

VIEWPATH, a path of the mount layout, is where to start:
images/NAME[/layers/N|/stages/N|/rootfs][/PATH] or
containers/NAME[/changes|/rootfs|/pristine][/PATH] (a container alone
starts at its changes), its directories unfolded down to PATH.

Directories are read when unfolded, and in a single layer only the rows on
screen are decoded: a layer of a million files opens at once. Every name
is shown escaped (textsafe): evidence is hostile.`,
		Example: `  amber browse case.tar.zst
  amber browse case.tar.zst containers/web          # its changes against its image
  amber browse case.tar.zst images/app_v1/layers/3/etc/passwd
  amber browse image.tar                            # a docker-save tarball`,
		Args: argsRange(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !term.IsTerminal(os.Stdin.Fd()) || !term.IsTerminal(os.Stdout.Fd()) {
				return usageError{errors.New("browse needs a terminal (stdin and stdout); for scripts use amber ls, cat, layers, diff")}
			}
			// Scrolling a million rows makes garbage of every record
			// decoded: collected sooner, as capture and verify do.
			lessGarbage()
			a, done, plain, err := e.openAnyPlain(args[0])
			if err != nil {
				return err
			}
			defer done()
			start := ""
			if len(args) > 1 {
				start = args[1]
			}
			m, err := browse.New(a, browse.Options{
				Start: start,
				Diff:  unifiedDiff,
				Extracted: func(vp, target string, res *extract.Result) error {
					if plain || a.Manifest.Custody.Entry == "" {
						return nil
					}
					abs, _ := filepath.Abs(target)
					e.custodyEvent(args[0], a, "extracted", map[string]string{"view": vp, "dest": abs,
						"files": fmt.Sprint(res.Files), "bytes": fmt.Sprint(res.Bytes), "dirs": fmt.Sprint(res.Dirs), "symlinks": fmt.Sprint(res.Symlinks),
						"preserve_all": "false", "altered": fmt.Sprint(len(res.Altered)), "not_written": fmt.Sprint(len(res.NotWritten)), "by": "browse"})
					return nil
				},
			})
			if err != nil {
				return err
			}
			// The alternate screen is left and the cursor shown again on
			// every way out, a panic of the model included (bubbletea
			// restores the terminal before it re-panics).
			_, err = tea.NewProgram(m, tea.WithAltScreen(), tea.WithContext(e.ctx)).Run()
			if errors.Is(err, tea.ErrProgramKilled) && e.ctx.Err() != nil {
				return e.ctx.Err()
			}
			return err
		},
	}
}
