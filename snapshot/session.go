package snapshot

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
)

// session is one capture into one archive, whatever the evidence comes
// from (image files, a container runtime): the manifest being built, the
// custody chain, the archive being written and its index. Every entry
// point runs the same lifecycle through it: newSession, begin (the
// acquisition-started event, the archive created), what the source adds,
// then seal (index.json, the sealing event, seal, sidecars), with abort
// deferred so that on any error, and on cancellation, nothing is left at
// the output name.
type session struct {
	m     *manifest.Manifest
	chain *manifest.Chain
	actor string
	// now dates the acquisition, the custody events and the archive's
	// tar headers.
	now func() time.Time
	w   *archive.Writer
	// index lists the image manifests for index.json.
	index []descriptor
}

// newSession starts the acquisition record: who captures, where, when.
// now nil is time.Now; host nil is this host and user.
func newSession(tool manifest.Tool, c manifest.Case, cmdline []string, now func() time.Time, host *Host) *session {
	if now == nil {
		now = time.Now
	}
	m := &manifest.Manifest{Tool: tool, Case: c}
	m.Acquisition.Started = now().UTC()
	host.fill(&m.Acquisition)
	m.Acquisition.CommandLine = cmdline
	return &session{m: m, chain: manifest.NewChain(hashing.Digest{}, 0), actor: Actor(c, m.Acquisition), now: now}
}

// ev appends a custody event to the sealed log.
func (s *session) ev(action string, details map[string]string) error {
	_, err := s.chain.Append(manifest.Event{Time: s.now(), Actor: s.actor, Host: s.m.Acquisition.Host, Action: action, Details: details})
	return err
}

// begin records the acquisition-started event (the command line, the
// output, every source of the acquisition record, and extra) and creates
// the archive. From here on, abort must be deferred.
func (s *session) begin(cmdline []string, extra map[string]string, opts archive.WriterOptions, output string, stream io.Writer) error {
	details := map[string]string{"command_line": ShellJoin(cmdline), "output": filepath.Base(output)}
	for k, v := range extra {
		details[k] = v
	}
	for i, src := range s.m.Acquisition.Sources {
		details[fmt.Sprintf("source_%d", i)] = src.Kind + " " + src.Path
	}
	if err := s.ev("acquisition-started", details); err != nil {
		return err
	}
	opts.Now = s.now
	var w *archive.Writer
	var err error
	if stream != nil {
		w, err = archive.CreateStream(output, stream, opts)
	} else {
		w, err = archive.Create(output, opts)
	}
	if err != nil {
		return err
	}
	s.w = w
	return nil
}

// abort removes the unsealed archive; after seal it does nothing.
func (s *session) abort() {
	if s.w != nil {
		s.w.Abort()
	}
}

// add records what a layer capture added: its artifacts (named by name,
// which may refuse or rename one), anomalies, manifests and events.
func (s *session) add(c *Captured, name func(a *manifest.Artifact) error) error {
	for _, a := range c.Artifacts {
		if err := name(&a); err != nil {
			return err
		}
		s.m.Artifacts = append(s.m.Artifacts, a)
	}
	s.m.Anomalies = append(s.m.Anomalies, c.Anomalies...)
	s.index = append(s.index, c.Index...)
	for _, e := range c.Events {
		if err := s.ev(e.Action, e.Details); err != nil {
			return err
		}
	}
	return nil
}

// seal writes index.json, dates the end of the acquisition, records the
// sealing event, seals the archive and writes its sidecars. last runs
// once everything is in the archive, before the end is dated (it may add
// events: the sources' hashes).
func (s *session) seal(ctx context.Context, last func() error) (*Result, error) {
	if err := WriteIndex(s.w, s.index); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if last != nil {
		if err := last(); err != nil {
			return nil, err
		}
	}
	acq := &s.m.Acquisition
	acq.Finished = s.now().UTC()
	if err := s.ev("sealing", map[string]string{"artifacts": fmt.Sprint(len(s.m.Artifacts)), "anomalies": fmt.Sprint(len(s.m.Anomalies))}); err != nil {
		return nil, err
	}
	sealed, err := s.w.Seal(s.m, s.chain)
	if err != nil {
		return nil, err
	}
	res := &Result{Sealed: sealed, Manifest: s.m}
	side, err := writeSidecars(sealed, s.actor, acq.Host, s.m.Custody, s.now)
	res.Sidecars = side
	return res, err
}
