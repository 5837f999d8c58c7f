package kube

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// DefaultLogRoot is where kubelet keeps pods' log directories.
const DefaultLogRoot = "/var/log/pods"

// LogDir is the pod's log directory as kubelet makes it under root:
// <root>/<namespace>_<name>_<uid>.
func (p *Pod) LogDir(root string) string {
	return filepath.Join(root, p.Namespace+"_"+p.Name+"_"+p.UID)
}

// LogFile is a container's CRI log file, open: an engine.LogStream whose
// Copy writes its lines as a Docker capture stores logs.
type LogFile struct {
	*LogReader
	f *os.File
}

// Copy writes stdout's and stderr's lines, each prefixed with its time.
func (l *LogFile) Copy(stdout, stderr io.Writer) error { return l.CopyLog(stdout, stderr) }

// Close closes the file.
func (l *LogFile) Close() error { return l.f.Close() }

var _ engine.LogStream = (*LogFile)(nil)

// OpenLog opens container c's CRI log file. Its path is the runtime's
// word: it is read only when it lies beneath the pod's log directory
// under root (DefaultLogRoot on a node) with every symbolic link resolved
// inside that directory, and it is a regular file; anything else is an
// engine.ErrEngineClaim. maxLine bounds a line (DefaultMaxLine when not
// positive).
func (p *Pod) OpenLog(root string, c Container, maxLine int) (*LogFile, error) {
	dir := p.LogDir(root)
	if c.LogPath == "" {
		return nil, fmt.Errorf("%w: the runtime gives no log file for container %s", engine.ErrNoSuchObject, c.Name)
	}
	rel, ok := beneath(dir, c.LogPath)
	if !ok {
		// The runtime may report the path with the log root's own links
		// resolved.
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			rel, ok = beneath(real, c.LogPath)
		}
	}
	if !ok {
		return nil, engine.Claimf("the log file of container %s, %q, is not in the pod's log directory %s", c.Name, c.LogPath, dir)
	}
	f, err := openBeneath(dir, rel)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("log file of container %s: %w", c.Name, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, engine.Claimf("the log file of container %s, %q, is not a regular file (%s)", c.Name, c.LogPath, st.Mode().Type())
	}
	return &LogFile{LogReader: NewLogReader(f, maxLine), f: f}, nil
}

// beneath is path relative to dir when it lies strictly beneath it.
func beneath(dir, path string) (string, bool) {
	if !filepath.IsAbs(path) || strings.ContainsRune(path, 0) {
		return "", false
	}
	rel, err := filepath.Rel(filepath.Clean(dir), filepath.Clean(path))
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		return "", false
	}
	return rel, true
}
