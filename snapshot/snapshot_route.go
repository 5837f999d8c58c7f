//go:build linux

package snapshot

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/layers"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/engine"
)

// readSnapshot is the snapshot route: the snapshot's mounts, mounted
// read-only (nosuid, nodev, noexec, private: nothing propagates to the
// host's other mounts) in a private temporary directory, read whole into a
// temporary tar by the walk the upperdir route uses for a volume (by
// descriptor, never following a link), unmounted, then compared with the
// image as an export stream is (readExport).
func readSnapshot(ctx context.Context, rt engine.Runtime, id string, mounts []engine.SnapshotMount, pristine *layers.Stack, lf *layerFile, anomalies *[]manifest.Anomaly) error {
	tmp := filepath.Dir(lf.f.Name())
	full, err := newLayerFile(tmp)
	if err != nil {
		return err
	}
	defer full.remove()
	if err := readMounted(mounts, full, anomalies); err != nil {
		return fmt.Errorf("container %s: the snapshot: %w", id, err)
	}
	if _, _, err := full.finish(); err != nil {
		return err
	}
	return readExport(ctx, treeSource{Runtime: rt, path: full.path()}, id, pristine, lf, anomalies)
}

// readMounted mounts the snapshot, reads it into full and unmounts it,
// whatever happened.
func readMounted(mounts []engine.SnapshotMount, full *layerFile, anomalies *[]manifest.Anomaly) (err error) {
	if len(mounts) != 1 || mounts[0].Type != "bind" || !filepath.IsAbs(mounts[0].Source) {
		return fmt.Errorf("%d mounts (%+v): only one bind mount of a directory is mounted", len(mounts), mounts)
	}
	dir, err := os.MkdirTemp("", "amber-snapshot-")
	if err != nil {
		return err
	}
	defer func() {
		if rerr := os.Remove(dir); rerr != nil && err == nil {
			err = fmt.Errorf("removing the snapshot's mount point: %w", rerr)
		}
	}()
	if err := unix.Mount(mounts[0].Source, dir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("mounting %s: %w", mounts[0].Source, err)
	}
	defer func() {
		if uerr := unmount(dir); uerr != nil && err == nil {
			err = uerr
		}
	}()
	// A bind mount takes its flags only when remounted.
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making the snapshot's mount private: %w", err)
	}
	const ro = unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if err := unix.Mount("", dir, "", ro, ""); err != nil {
		return fmt.Errorf("mounting the snapshot read-only: %w", err)
	}
	return upperRoute([]string{dir}, false, full, anomalies)
}

// unmount undoes the snapshot's mount; one still busy is detached.
func unmount(dir string) error {
	err := unix.Unmount(dir, 0)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(dir, unix.MNT_DETACH)
	}
	if err != nil {
		return fmt.Errorf("unmounting the snapshot at %s: %w", dir, err)
	}
	return nil
}

// treeSource is a runtime whose export stream is a tree read into a tar
// (the snapshot route): Export reads it, CopyFrom finds one file in it.
type treeSource struct {
	engine.Runtime
	path string
}

func (s treeSource) Export(context.Context, string) (io.ReadCloser, error) { return os.Open(s.path) }

// CopyFrom gives the regular file at p as a tar of that one file,
// streamed from the tree's tar.
func (s treeSource) CopyFrom(_ context.Context, _, p string) (io.ReadCloser, error) {
	want, _ := fileindex.CleanName(p)
	f, err := os.Open(s.path)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s is not in the snapshot's tree: %w", p, err)
		}
		if name, _ := fileindex.CleanName(h.Name); name != want || h.Typeflag != tar.TypeReg {
			continue
		}
		pr, pw := io.Pipe()
		go func() {
			defer f.Close()
			tw := tar.NewWriter(pw)
			h.Format = tar.FormatPAX
			err := tw.WriteHeader(h)
			if err == nil {
				_, err = io.Copy(tw, tr)
			}
			if err == nil {
				err = tw.Close()
			}
			pw.CloseWithError(err)
		}()
		return pr, nil
	}
}
