package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/tmpfile"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/procmem"
)

// A container's own files in the archive: memory dumps, its config, logs.

// archiveMembers adds members to the archive and remembers them.
type archiveMembers struct {
	w    *archive.Writer
	list []manifest.Entry
}

func (a *archiveMembers) add(name string, data []byte) error {
	e, err := a.w.Add(name, data)
	a.list = append(a.list, e)
	return err
}
func (a *archiveMembers) begin(name string, size int64) error { return a.w.Begin(name, size) }
func (a *archiveMembers) write(p []byte) error {
	_, err := a.w.Write(p)
	return err
}
func (a *archiveMembers) end() error {
	e, err := a.w.End()
	a.list = append(a.list, e)
	return err
}

// prefixed stores members under amber/containers/<name>/.
type prefixed struct {
	*archiveMembers
	prefix string
	c      *manifest.Container
}

func (p *prefixed) record() {
	e := p.list[len(p.list)-1]
	p.c.Members = append(p.c.Members, manifest.Member{Path: strings.TrimPrefix(e.Name, p.prefix), Entry: e.Name, Size: e.Size, SHA256: e.SHA256})
}

func (p *prefixed) add(name string, data []byte) error {
	if err := p.archiveMembers.add(p.prefix+name, data); err != nil {
		return err
	}
	p.record()
	return nil
}
func (p *prefixed) begin(name string, size int64) error {
	return p.archiveMembers.begin(p.prefix+name, size)
}
func (p *prefixed) end() error {
	if err := p.archiveMembers.end(); err != nil {
		return err
	}
	p.record()
	return nil
}

// ContainerPrefix is where a container's own files lie in the archive.
func ContainerPrefix(name string) string { return "amber/containers/" + name + "/" }

func captureMemory(ctx context.Context, c *ctrCapture, mw *archiveMembers, s *session, maxBytes uint64, progress func(string)) error {
	cc := c.art.Container
	opt := procmem.Options{MaxBytes: maxBytes}
	pids, err := containerPIDs(c.ci.Pid, c.ci.ID, opt)
	if errors.Is(err, errNotInContainer) {
		// Never a host process's memory on the engine's word.
		cc.MemorySkipped = "not dumped: " + err.Error()
		s.m.Anomalies = append(s.m.Anomalies, manifest.Anomaly{Artifact: c.name, Kind: "engine-claims-pid-outside-container", Detail: err.Error()})
		return nil
	}
	if err != nil {
		return fmt.Errorf("container %s: %w", c.name, err)
	}
	pm := &prefixed{archiveMembers: mw, prefix: ContainerPrefix(c.name), c: cc}
	for _, pid := range pids {
		if err := ctx.Err(); err != nil {
			return err
		}
		// The PID may have been reused since the list was made.
		if err := inContainer(pid, c.ci.ID, opt); errors.Is(err, errNotInContainer) {
			s.m.Anomalies = append(s.m.Anomalies, manifest.Anomaly{Artifact: c.name, Kind: "engine-claims-pid-outside-container", Detail: err.Error()})
			continue
		}
		p, err := dumpProcess(pid, pm, opt, progress)
		if err != nil {
			return fmt.Errorf("container %s, process %d: %w", c.name, pid, err)
		}
		cc.Processes = append(cc.Processes, p)
		d := map[string]string{"container": c.name, "pid": fmt.Sprint(pid), "comm": p.Comm, "dir": p.Dir,
			"bytes": fmt.Sprint(p.Bytes), "unreadable_regions": fmt.Sprint(len(p.Unreadable))}
		for _, m := range cc.Members {
			if m.Path == p.Dir+"/core" {
				d["core_sha256"] = m.SHA256.String()
			}
		}
		if p.Lost != "" {
			d["lost"] = p.Lost
		}
		if err := s.ev("memory-captured", d); err != nil {
			return err
		}
	}
	return nil
}

// containerConfig is the image's config with the changes layer added, as
// docker commit would make it, so that an OCI tool unpacking the
// container's manifest reproduces its filesystem.
func containerConfig(changes hashing.Digest, c *ctrCapture) ([]byte, error) {
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(c.cfg, &cfg); err != nil {
		return nil, fmt.Errorf("%w: image config: %v", ErrSource, err)
	}
	var rootfs struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	}
	if err := json.Unmarshal(cfg["rootfs"], &rootfs); err != nil {
		return nil, fmt.Errorf("%w: image config rootfs: %v", ErrSource, err)
	}
	rootfs.DiffIDs = append(rootfs.DiffIDs, changes.String())
	var hist []json.RawMessage
	if h, ok := cfg["history"]; ok {
		if err := json.Unmarshal(h, &hist); err != nil {
			return nil, fmt.Errorf("%w: image config history: %v", ErrSource, err)
		}
	}
	entry, _ := json.Marshal(map[string]any{"created": time.Now().UTC().Format(time.RFC3339Nano),
		"created_by": "amber capture container " + c.ci.ID, "comment": "the changes of container " + c.name + " at capture time"})
	hist = append(hist, entry)
	cfg["rootfs"], _ = json.Marshal(rootfs)
	cfg["history"], _ = json.Marshal(hist)
	if c.ci.Config != nil {
		cfg["container_config"] = c.ci.Config
	}
	cfg["container"], _ = json.Marshal(c.ci.ID)
	return json.Marshal(cfg)
}

// captureLogs stores the container's stdout and stderr as the engine has
// them, each line prefixed with the engine's timestamp: their first limit
// bytes, the rest flagged logs-truncated and not read.
func captureLogs(ctx context.Context, rt engine.Runtime, c *ctrCapture, pm *prefixed, dir string, limit int64, s *session) error {
	tty := c.ci.Tty
	rc, err := rt.Logs(ctx, c.ci.ID, tty)
	if err != nil {
		if errors.Is(err, engine.ErrEngineClaim) {
			// A log file the runtime names where amber does not read.
			s.m.Anomalies = append(s.m.Anomalies, manifest.Anomaly{Artifact: c.name, Path: "logs", Kind: "engine-claims-log-path", Detail: err.Error()})
		}
		return pm.add("logs/unavailable", []byte(fmt.Sprintf("the engine gives no logs: %v\n", err)))
	}
	defer rc.Close()
	out, err := tmpfile.TempFile(dir, ".amber-stdout-*") // no name: nothing left by kill -9
	if err != nil {
		return fmt.Errorf("storing logs: %w", err)
	}
	defer func() { out.Close(); os.Remove(out.Name()) }()
	errf, err := tmpfile.TempFile(dir, ".amber-stderr-*")
	if err != nil {
		return fmt.Errorf("storing logs: %w", err)
	}
	defer func() { errf.Close(); os.Remove(errf.Name()) }()
	left := limit
	err = rc.Copy(logBudget{out, &left}, logBudget{errf, &left})
	if errors.Is(err, errLogBound) {
		s.m.Anomalies = append(s.m.Anomalies, manifest.Anomaly{Artifact: c.name, Path: "logs", Kind: "logs-truncated",
			Detail: fmt.Sprintf("the engine's logs go on past %d MiB: their first %d MiB (stdout and stderr together) are stored, the rest was not read", limit>>20, limit>>20)})
		err = nil
	}
	if err != nil {
		return fmt.Errorf("%w: reading the container's logs: %v", ErrEngine, err)
	}
	for _, f := range []struct {
		name string
		f    *os.File
	}{{"logs/stdout", out}, {"logs/stderr", errf}} {
		if tty && f.name == "logs/stderr" {
			continue
		}
		if err := pm.addFile(f.name, f.f); err != nil {
			return err
		}
	}
	return nil
}

// errLogBound ends the reading of logs at their bound.
var errLogBound = errors.New("the logs' bound is reached")

// logBudget passes on at most *left bytes (shared by stdout and stderr),
// then fails with errLogBound.
type logBudget struct {
	w    io.Writer
	left *int64
}

func (b logBudget) Write(p []byte) (int, error) {
	cut := int64(len(p)) > *b.left
	if cut {
		p = p[:*b.left]
	}
	n, err := b.w.Write(p)
	*b.left -= int64(n)
	if err == nil && cut {
		err = errLogBound
	}
	return n, err
}

func (p *prefixed) addFile(name string, f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := p.begin(name, st.Size()); err != nil {
		return err
	}
	if _, err := io.Copy(writerFunc(p.write), io.LimitReader(f, st.Size())); err != nil {
		return err
	}
	return p.end()
}

type writerFunc func([]byte) error

func (f writerFunc) Write(p []byte) (int, error) {
	if err := f(p); err != nil {
		return 0, err
	}
	return len(p), nil
}
