package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
)

type logOptions struct{ json bool }

func (e *env) newLogCmd() *cobra.Command {
	o := &logOptions{}
	c := &cobra.Command{
		Use:   "log ARCHIVE",
		Short: "Print the chain-of-custody log and check its hash chain",
		Long: `log prints the custody events sealed inside the archive (acquisition), then
those appended later to ARCHIVE.custody.jsonl (sealed, verified, ...). Each
event carries the SHA-256 of the line before it; log checks the whole chain
from the archive's sealed head and exits 3 at the first break, naming it.`,
		Example: `  amber log case.tar.zst
  amber log --json case.tar.zst | jq -r '.action'`,
		Args: argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error { return e.runLog(o, args[0]) },
	}
	c.Flags().BoolVar(&o.json, "json", false, "JSON lines, one event per line, each with where it is stored")
	return c
}

func (e *env) runLog(o *logOptions, path string) error {
	a, err := manifest.Open(path)
	if err != nil {
		return err
	}
	defer a.Close()
	m := a.Manifest
	cb, err := a.ReadEntry(m.Custody.Entry, manifest.MaxCustodySize)
	if err != nil {
		return err
	}
	sealed, head, err := manifest.ParseCustody(bytes.NewReader(cb), hashing.Digest{}, 0)
	if err == nil && (head != m.Custody.Head || len(sealed) != m.Custody.Events) {
		err = fmt.Errorf("%w: sealed log ends at %s, the manifest says %s", manifest.ErrChainBroken, head.Hex(), m.Custody.Head.Hex())
	}
	var side []manifest.Event
	var sideErr error
	if err == nil {
		side, _, sideErr = manifest.ParseCustodyFile(path+".custody.jsonl", m.Custody.Head, m.Custody.Events)
		if errors.Is(sideErr, os.ErrNotExist) {
			sideErr = nil
		}
	}
	print := func(evs []manifest.Event, where string) {
		for _, ev := range evs {
			if o.json {
				b, _ := json.Marshal(struct {
					manifest.Event
					Stored string `json:"stored"`
				}{ev, where})
				fmt.Fprintf(e.stdout, "%s\n", b)
				continue
			}
			keys := make([]string, 0, len(ev.Details))
			for k := range ev.Details {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			// An event appended by anyone who could write the sidecar
			// says what it likes: escaped.
			var d []string
			for _, k := range keys {
				d = append(d, escapeName(k)+"="+escapeName(ev.Details[k]))
			}
			fmt.Fprintf(e.stdout, "%3d %s %-7s %-20s %s@%s %s\n", ev.Seq, ev.Time.UTC().Format(time.RFC3339), where, escapeName(ev.Action), escapeName(ev.Actor), escapeName(ev.Host), strings.Join(d, " "))
		}
	}
	print(sealed, "sealed")
	print(side, "sidecar")
	if err != nil {
		return err
	}
	if sideErr != nil {
		return fmt.Errorf("%s.custody.jsonl: %w", path, sideErr)
	}
	if !o.json {
		fmt.Fprintf(e.stdout, "chain intact: %d sealed + %d later events\n", len(sealed), len(side))
	}
	return nil
}
