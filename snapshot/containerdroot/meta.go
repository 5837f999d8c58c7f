//go:build linux

package containerdroot

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// Bounds on what the metadata database holds: a container's spec (the OCI
// spec, a few KiB), one label or extension, the entries of one bucket
// (containerd's own limit on labels is 4 KiB each).
const (
	maxSpec    = 16 << 20
	maxValue   = 1 << 20
	maxEntries = 1 << 20
)

// The buckets and keys of containerd's metadata schema v1
// (core/metadata/buckets.go).
var (
	keyV1          = []byte("v1")
	keyContainers  = []byte("containers")
	keyImages      = []byte("images")
	keySnapshots   = []byte("snapshots")
	keyLabels      = []byte("labels")
	keyImage       = []byte("image")
	keyRuntime     = []byte("runtime")
	keyName        = []byte("name")
	keySpec        = []byte("spec")
	keySnapshotKey = []byte("snapshotKey")
	keySnapshotter = []byte("snapshotter")
	keyTarget      = []byte("target")
	keyExtensions  = []byte("extensions")
	keyCreatedAt   = []byte("createdat")
	keyUpdatedAt   = []byte("updatedat")
	keySandboxID   = []byte("sandboxid")
	keyDigest      = []byte("digest")
	keyMediaType   = []byte("mediatype")
	keySize        = []byte("size")
	keyID          = []byte("id")
	keyKind        = []byte("kind")
	keyParent      = []byte("parent")
)

// container is a container's record of the metadata database, copied out
// of its transaction.
type container struct {
	Namespace, ID                   string
	Image, Snapshotter, SnapshotKey string
	Runtime, SandboxID              string
	Labels                          map[string]string
	CreatedAt, UpdatedAt            time.Time
	SpecType                        string
	Spec                            []byte
	Extensions                      map[string]*anypb.Any
	// Err is what could not be read of it (the rest is what could).
	Err error
}

// image is an image's record: its name and target.
type image struct {
	Namespace, Name      string
	Digest, MediaType    string
	Size                 int64
	CreatedAt, UpdatedAt time.Time
	Err                  error
}

// forEach calls fn on each entry of bkt (nil value: a bucket), at most
// maxEntries.
func forEach(bkt *bolt.Bucket, what string, fn func(k, v []byte) error) error {
	n := 0
	c := bkt.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if n++; n > maxEntries {
			return fmt.Errorf("%s holds more than %d entries", what, maxEntries)
		}
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

// namespaces calls fn with each namespace's bucket, in order.
func namespaces(tx *bolt.Tx, fn func(ns string, bkt *bolt.Bucket) error) error {
	v1 := tx.Bucket(keyV1)
	if v1 == nil {
		return fmt.Errorf("no v1 bucket: not containerd's metadata schema")
	}
	return forEach(v1, "v1", func(k, v []byte) error {
		if v != nil {
			return nil // the schema's version
		}
		if b := v1.Bucket(k); b != nil {
			return fn(string(k), b)
		}
		return nil
	})
}

// readLabels reads a labels (or annotations) bucket, bounded.
func readLabels(bkt *bolt.Bucket, name []byte) (map[string]string, error) {
	lb := bkt.Bucket(name)
	if lb == nil {
		return nil, nil
	}
	m := map[string]string{}
	err := forEach(lb, string(name), func(k, v []byte) error {
		if len(k)+len(v) > maxValue {
			return fmt.Errorf("%s %.64q has %d bytes; amber reads at most %d", name, k, len(k)+len(v), maxValue)
		}
		m[string(k)] = string(v)
		return nil
	})
	return m, err
}

// readTimes reads createdat and updatedat (time.MarshalBinary's form).
func readTimes(bkt *bolt.Bucket) (created, updated time.Time, err error) {
	for _, f := range []struct {
		k []byte
		t *time.Time
	}{{keyCreatedAt, &created}, {keyUpdatedAt, &updated}} {
		if v := bkt.Get(f.k); v != nil {
			if err := f.t.UnmarshalBinary(v); err != nil {
				return created, updated, fmt.Errorf("%s: %w", f.k, err)
			}
		}
	}
	return created, updated, nil
}

// readAny reads a protobuf Any (containerd's types.Any has its wire form).
func readAny(v []byte, limit int, what string) (*anypb.Any, error) {
	if len(v) > limit {
		return nil, fmt.Errorf("%s has %d bytes; amber reads at most %d", what, len(v), limit)
	}
	var a anypb.Any
	if err := proto.Unmarshal(v, &a); err != nil {
		return nil, fmt.Errorf("%s is not a protobuf Any: %w", what, err)
	}
	return &a, nil
}

// readContainer reads one container's bucket. withSpec: the spec and
// extensions too (a listing needs neither).
func readContainer(ns, id string, bkt *bolt.Bucket, withSpec bool) container {
	c := container{Namespace: ns, ID: id}
	var err error
	if c.Labels, err = readLabels(bkt, keyLabels); err != nil {
		c.Err = err
		return c
	}
	if c.CreatedAt, c.UpdatedAt, err = readTimes(bkt); err != nil {
		c.Err = err
		return c
	}
	str := func(k []byte) string {
		v := bkt.Get(k)
		if len(v) > maxValue {
			if c.Err == nil {
				c.Err = fmt.Errorf("%s has %d bytes; amber reads at most %d", k, len(v), maxValue)
			}
			return ""
		}
		return string(v)
	}
	c.Image, c.Snapshotter, c.SnapshotKey, c.SandboxID = str(keyImage), str(keySnapshotter), str(keySnapshotKey), str(keySandboxID)
	if rb := bkt.Bucket(keyRuntime); rb != nil {
		if v := rb.Get(keyName); len(v) <= maxValue {
			c.Runtime = string(v)
		}
	}
	if !withSpec || c.Err != nil {
		return c
	}
	if v := bkt.Get(keySpec); v != nil {
		a, err := readAny(v, maxSpec, "its spec")
		if err != nil {
			c.Err = err
			return c
		}
		c.SpecType, c.Spec = a.GetTypeUrl(), a.GetValue()
	}
	if eb := bkt.Bucket(keyExtensions); eb != nil {
		c.Extensions = map[string]*anypb.Any{}
		err := forEach(eb, "extensions", func(k, v []byte) error {
			a, err := readAny(v, maxValue, fmt.Sprintf("extension %.64q", k))
			if err != nil {
				return err
			}
			c.Extensions[string(k)] = a
			return nil
		})
		if err != nil {
			c.Err = err
		}
	}
	return c
}

// containers reads every container of every namespace, in order.
func (s *Store) containers(withSpec bool) ([]container, error) {
	var out []container
	err := view(s.meta, "reading "+metaDB, func(tx *bolt.Tx) error {
		return namespaces(tx, func(ns string, nb *bolt.Bucket) error {
			cb := nb.Bucket(keyContainers)
			if cb == nil {
				return nil
			}
			return forEach(cb, "containers of namespace "+strconv.Quote(ns), func(k, v []byte) error {
				b := cb.Bucket(k)
				if b == nil {
					return nil
				}
				out = append(out, readContainer(ns, string(k), b, withSpec))
				return nil
			})
		})
	})
	return out, err
}

// images reads every image record of every namespace, in order.
func (s *Store) images() ([]image, error) {
	var out []image
	err := view(s.meta, "reading "+metaDB, func(tx *bolt.Tx) error {
		return namespaces(tx, func(ns string, nb *bolt.Bucket) error {
			ib := nb.Bucket(keyImages)
			if ib == nil {
				return nil
			}
			return forEach(ib, "images of namespace "+strconv.Quote(ns), func(k, v []byte) error {
				b := ib.Bucket(k)
				if b == nil {
					return nil
				}
				out = append(out, readImage(ns, string(k), b))
				return nil
			})
		})
	})
	return out, err
}

func readImage(ns, name string, bkt *bolt.Bucket) image {
	im := image{Namespace: ns, Name: name}
	var err error
	if im.CreatedAt, im.UpdatedAt, err = readTimes(bkt); err != nil {
		im.Err = err
		return im
	}
	tb := bkt.Bucket(keyTarget)
	if tb == nil {
		im.Err = fmt.Errorf("no target")
		return im
	}
	if v := tb.Get(keyDigest); len(v) <= 1024 {
		im.Digest = string(v)
	}
	if v := tb.Get(keyMediaType); len(v) <= 1024 {
		im.MediaType = string(v)
	}
	if v := tb.Get(keySize); v != nil {
		n, k := binary.Varint(v)
		if k <= 0 {
			im.Err = fmt.Errorf("target size is not a varint")
			return im
		}
		im.Size = n
	}
	return im
}

// snapshotName is the backend key (in the snapshotter's own database) of
// the snapshot key of namespace ns in snapshotter sn.
func (s *Store) snapshotName(ns, sn, key string) (string, error) {
	var name string
	err := view(s.meta, "reading "+metaDB, func(tx *bolt.Tx) error {
		b := tx.Bucket(keyV1)
		for _, k := range [][]byte{[]byte(ns), keySnapshots, []byte(sn), []byte(key)} {
			if b == nil {
				break
			}
			b = b.Bucket(k)
		}
		if b == nil {
			return &engine.Unavailable{Why: fmt.Sprintf("snapshot %q of the %s snapshotter is not in namespace %s of containerd's database", key, sn, ns)}
		}
		v := b.Get(keyName)
		if len(v) == 0 || len(v) > maxValue {
			return engine.Claimf("snapshot %q of namespace %s has a backend key of %d bytes", key, ns, len(v))
		}
		name = string(v)
		return nil
	})
	return name, err
}

// overlaySnapshot is a snapshot of the overlayfs snapshotter's database.
type overlaySnapshot struct {
	ID     uint64
	Kind   byte
	Parent string
}

// Snapshot kinds of the snapshotter's database (core/snapshots Kind).
const (
	kindView      = 1
	kindActive    = 2
	kindCommitted = 3
)

// overlaySnap reads snapshot name (a backend key) of the overlayfs
// snapshotter's database.
func (s *Store) overlaySnap(name string) (overlaySnapshot, error) {
	var o overlaySnapshot
	if s.overlay == nil {
		return o, &engine.Unavailable{Why: "the overlayfs snapshotter's database cannot be read: " + s.overlayErr.Error()}
	}
	err := view(s.overlay, "reading "+overlayDB, func(tx *bolt.Tx) error {
		b := tx.Bucket(keyV1)
		if b != nil {
			b = b.Bucket(keySnapshots)
		}
		if b != nil {
			b = b.Bucket([]byte(name))
		}
		if b == nil {
			return &engine.Unavailable{Why: fmt.Sprintf("snapshot %q is not in the overlayfs snapshotter's database", name)}
		}
		id, n := binary.Uvarint(b.Get(keyID))
		if n <= 0 || id == 0 {
			return engine.Claimf("snapshot %q of the overlayfs snapshotter has no numeric id", name)
		}
		o.ID = id
		if k := b.Get(keyKind); len(k) == 1 {
			o.Kind = k[0]
		}
		if p := b.Get(keyParent); len(p) <= maxValue {
			o.Parent = string(p)
		}
		return nil
	})
	return o, err
}

// sortedKeys is m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
