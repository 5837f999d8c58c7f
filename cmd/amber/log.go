package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/registry"
)

type logOptions struct {
	json       bool
	expectHead string
}

func (e *env) newLogCmd() *cobra.Command {
	o := &logOptions{}
	c := &cobra.Command{
		Use:   "log ARCHIVE",
		Short: "Print the chain-of-custody log and check its hash chain",
		Long: `log prints the custody events sealed inside the archive (acquisition), then
those appended later to ARCHIVE.custody.jsonl (sealed, verified, ...). Each
event carries the SHA-256 of the line before it; log checks the whole chain
from the archive's sealed head and exits 3 at the first break, naming it.
It exits 3 too when an event is dated before the one it follows ("FAIL
custody log seq N ...").

Then it prints the custody head: the SHA-256 of the last line, which no
later line protects. Note it outside the archive (case notes); given back
with --expect-head, log exits 3 unless the log still holds that line, and
every line before it, unchanged. With --json each event carries the
SHA-256 of its own line (line_sha256): the last one is the head.

An archive whose custody log records another file name (renamed after
capture) gets a "WARN archive name" line; that alone is no failure.
'amber verify' also checks the archive digests the events record.

For a docker://REF the later events are those recorded under --cache
(CACHE/custody/sha256-HEX.custody.jsonl: verified, mounted from the
registry), not the custody sidecar pushed beside the archive.`,
		Example: `  amber log case.tar.zst
  amber log --expect-head sha256:3f1c... case.tar.zst
  amber log --json case.tar.zst | jq -r '.action'
  amber log --cache ~/cases/041/cache docker://evidence.example/case-2026-041/e1:web`,
		Args: argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error { return e.runLog(o, args[0]) },
	}
	c.Flags().BoolVar(&o.json, "json", false, "JSON lines, one event per line, each with where it is stored and its line's SHA-256")
	c.Flags().StringVar(&o.expectHead, "expect-head", "", "a custody head noted earlier (sha256:HEX): fail unless the log still holds that line unchanged")
	return c
}

func (e *env) runLog(o *logOptions, path string) error {
	expect, err := parseHead(o.expectHead)
	if err != nil {
		return err
	}
	// A docker://REF: the sealed log is read lazily from the registry, and
	// the later events are those kept under the cache (verify, mount),
	// where the sidecar of a file would be.
	sidecar, name := path, filepath.Base(path)
	var a *archive.Archive
	if registry.IsRef(path) {
		var b *registry.Blob
		if a, b, err = e.openRemote(path); err != nil {
			return err
		}
		defer b.Close()
		if sidecar, err = b.CustodyBase(); err != nil {
			a.Close()
			return err
		}
		// The file name it was pushed as; without one, no rename check.
		name = b.Title
	} else if a, err = archive.Open(path); err != nil {
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
		var h hashing.Digest
		side, h, sideErr = manifest.ParseCustodyFile(sidecar+".custody.jsonl", m.Custody.Head, m.Custody.Events)
		if errors.Is(sideErr, os.ErrNotExist) {
			sideErr = nil
		} else {
			head = h
		}
	}
	all := append(append([]manifest.Event(nil), sealed...), side...)
	print := func(evs []manifest.Event, where string, from int) {
		for i, ev := range evs {
			if o.json {
				// A checked chain: each line's SHA-256 is the next one's prev.
				line := head
				if from+i+1 < len(all) {
					line = all[from+i+1].Prev
				}
				b, _ := json.Marshal(struct {
					manifest.Event
					Stored string         `json:"stored"`
					Line   hashing.Digest `json:"line_sha256"`
				}{ev, where, line})
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
	print(sealed, "sealed", 0)
	print(side, "sidecar", len(sealed))
	if err != nil {
		return err
	}
	if sideErr != nil {
		return fmt.Errorf("%s.custody.jsonl: %w", sidecar, sideErr)
	}
	problems := manifest.TimeOrder(all, len(sealed))
	var found *int
	if !expect.IsZero() {
		if i, ok := manifest.HeadSeq(all, head, expect); ok {
			found = &all[i].Seq
		} else {
			problems = append(problems, manifest.HeadMissing(expect, true))
		}
	}
	warn, renamed := manifest.Renamed(all, name)
	renamed = renamed && name != ""
	if o.json {
		if renamed {
			fmt.Fprintf(e.stderr, "amber: warning: %s\n", warn)
		}
	} else {
		for _, p := range problems {
			fmt.Fprintf(e.stdout, "FAIL %s\n", p)
		}
		if renamed {
			fmt.Fprintf(e.stdout, "WARN %s\n", warn)
		}
		fmt.Fprintf(e.stdout, "chain intact: %d sealed + %d later events\n", len(sealed), len(side))
		if len(all) > 0 {
			printHead(e.stdout, head, all[len(all)-1].Seq, expect, found)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %d problem(s) in the custody log of %s, the first: %s", errTampered, len(problems), path, problems[0])
	}
	return nil
}
