//go:build linux

package containerdroot

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/kube"
)

// Bounds on a container's CRI logs: rotated files read, entries of its
// log directory listed, bytes a rotated .gz file decompresses to.
const (
	maxLogFiles  = 100
	maxDirEntry  = 10000
	maxGzLogSize = 1 << 30
)

// rotated is kubelet's suffix of a rotated log file: .<YYYYMMDD-HHMMSS>,
// then .gz once compressed.
var rotated = regexp.MustCompile(`^\.[0-9]{8}-[0-9]{6}(\.gz)?$`)

// logName is a container's log file in its directory: its restart count.
var logName = regexp.MustCompile(`^[0-9]{1,9}\.log$`)

// Logs opens a Kubernetes container's CRI log files, under the host's
// /var/log/pods on a node: the file the CRI plugin's record names (in
// kubelet's shape, its directory's links resolved inside the host's
// root), after its rotated files (<file>.<time>, .gz), oldest first.
// Every file is opened beneath that directory, through no symbolic link. A container that is no pod's has
// none: containerd keeps no logs of its own.
func (s *Store) Logs(ctx context.Context, id string, tty bool) (engine.LogStream, error) {
	rec, err := s.findContainer(id, true)
	if err != nil {
		return nil, wrap(err, "the logs of container "+id+" in containerd's root "+s.dataRoot)
	}
	if rec.Err != nil {
		return nil, fmt.Errorf("the logs of container %s/%s: its record in %s: %w", rec.Namespace, rec.ID, metaDB, rec.Err)
	}
	if engine.PodOf(rec.Labels) == "" {
		return nil, &engine.Unavailable{Why: "containerd keeps no logs of its own (the container is no Kubernetes pod's, whose logs are under /var/log/pods)"}
	}
	var meta struct {
		Metadata struct {
			LogPath string `json:"LogPath"`
		} `json:"Metadata"`
	}
	if ext := rec.Extensions[criMetadata]; ext != nil {
		json.Unmarshal(ext.GetValue(), &meta) // not JSON: no log path, below
	}
	logPath := meta.Metadata.LogPath
	if logPath == "" {
		return nil, &engine.Unavailable{Why: "the CRI plugin's record of the container names no log file"}
	}
	// kubelet's shape, <log root>/<namespace>_<pod>_<uid>/<container>/<restart>.log
	// (the log root is /var/log/pods unless kubelet's podLogsDir says
	// otherwise): a record naming any other file of the host is refused.
	clean := filepath.Clean(logPath)
	dir, base := filepath.Dir(clean), filepath.Base(clean)
	podDir := filepath.Base(filepath.Dir(dir))
	if !filepath.IsAbs(logPath) || strings.ContainsRune(logPath, 0) || !logName.MatchString(base) ||
		filepath.Base(dir) != rec.Labels[engine.LabelContainerName] ||
		!strings.HasPrefix(podDir, rec.Labels[engine.LabelPodNamespace]+"_"+rec.Labels[engine.LabelPodName]+"_") {
		return nil, engine.Claimf("the log file of container %s, %q, is not <log root>/<namespace>_<pod>_<uid>/<container>/<n>.log of its pod", rec.ID, logPath)
	}
	// The directory is the dead host's: its links resolved inside its
	// root (never above it); the files in it are read through no link.
	dirFD, err := unix.Openat2(s.rootFD, strings.TrimPrefix(dir, "/"), &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return nil, fmt.Errorf("the logs of container %s: %w", rec.ID, &os.PathError{Op: "open", Path: filepath.Join(s.root, dir), Err: err})
	}
	defer unix.Close(dirFD)
	real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(dirFD))
	if err != nil {
		return nil, err
	}
	names, err := listDir(dirFD, real, ".")
	if err != nil {
		return nil, fmt.Errorf("the logs of container %s: %w", rec.ID, err)
	}
	var files []string
	for _, n := range names {
		if rest, ok := strings.CutPrefix(n, base); ok && rotated.MatchString(rest) {
			files = append(files, n)
		}
	}
	// The timestamps sort as text: oldest first, the live file last.
	slices.Sort(files)
	if slices.Contains(names, base) {
		files = append(files, base)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("the logs of container %s: %w", rec.ID, &os.PathError{Op: "open", Path: filepath.Join(real, base), Err: os.ErrNotExist})
	}
	if len(files) > maxLogFiles {
		files = files[len(files)-maxLogFiles:]
	}
	ls := &logStream{}
	var rs []io.Reader
	for _, n := range files {
		f, err := openBeneath(dirFD, real, n)
		if err != nil {
			ls.Close()
			return nil, fmt.Errorf("the logs of container %s: %w", rec.ID, err)
		}
		ls.files = append(ls.files, f)
		if !strings.HasSuffix(n, ".gz") {
			rs = append(rs, engine.ContextReader(ctx, f))
			continue
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			ls.Close()
			return nil, fmt.Errorf("the rotated log %s: %w", f.Name(), err)
		}
		rs = append(rs, engine.ContextReader(ctx, &gzBound{r: zr, left: maxGzLogSize, name: f.Name()}))
	}
	ls.LogReader = kube.NewLogReader(io.MultiReader(rs...), 0)
	return ls, nil
}

// listDir lists the directory rel beneath dirFD (no symbolic link), at
// most maxDirEntry names.
func listDir(dirFD int, dir, rel string) ([]string, error) {
	fd, err := unix.Openat2(dirFD, rel, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NOATIME,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
	if err == unix.EPERM {
		fd, err = unix.Openat2(dirFD, rel, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
	}
	switch err {
	case nil:
	case unix.ELOOP, unix.EXDEV, unix.ENOTDIR:
		return nil, engine.Claimf("%s is not a directory beneath %s reached through no symbolic link: refused", rel, dir)
	default:
		return nil, &os.PathError{Op: "open", Path: filepath.Join(dir, rel), Err: err}
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir, rel))
	defer f.Close()
	names, err := f.Readdirnames(maxDirEntry)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("listing %s: %w", f.Name(), err)
	}
	return names, nil
}

// gzBound fails a rotated log that decompresses past its bound.
type gzBound struct {
	r    io.Reader
	left int64
	name string
}

func (g *gzBound) Read(p []byte) (int, error) {
	if g.left <= 0 {
		return 0, fmt.Errorf("the rotated log %s decompresses to more than %d bytes: refused", g.name, int64(maxGzLogSize))
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	n, err := g.r.Read(p)
	g.left -= int64(n)
	return n, err
}

// logStream is a container's CRI logs, its files open.
type logStream struct {
	*kube.LogReader
	files []*os.File
}

// Copy writes stdout's and stderr's lines, each prefixed with its time.
func (l *logStream) Copy(stdout, stderr io.Writer) error { return l.CopyLog(stdout, stderr) }

// Close closes the files.
func (l *logStream) Close() error {
	for _, f := range l.files {
		f.Close()
	}
	return nil
}
