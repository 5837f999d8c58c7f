//go:build linux

package containerdroot

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// TestDockerNamespaceSkipped: the containers and images of namespace
// moby are a Docker engine's own (captured through Docker): as the live
// containerd runtime, the listings and a bare ID or name pass over them;
// "moby/<id>" still finds them, and the capture's later calls by the bare
// ID or the image's name then do too.
func TestDockerNamespaceSkipped(t *testing.T) {
	c := craft(t, craftOpts{})
	mfHex := ""
	db, err := bolt.Open(filepath.Join(c.data, metaDB), 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		mfHex = string(tx.Bucket([]byte("v1")).Bucket([]byte("default")).Bucket([]byte("images")).Bucket([]byte("docker.io/library/x:1")).Bucket([]byte("target")).Get([]byte("digest")))
		mf, err := os.ReadFile(filepath.Join(c.data, blobDir, mfHex[len("sha256:"):]))
		if err != nil {
			t.Fatal(err)
		}
		// c1 in both namespaces, m1 in moby only; an image named only
		// in moby.
		for _, id := range []string{"c1", "m1"} {
			cb := bucket(t, tx, "v1", "moby", "containers", id)
			put(t, cb, "image", []byte("docker.io/library/dockers:1"))
			put(t, cb, "snapshotter", []byte("overlayfs"))
			put(t, cb, "snapshotKey", []byte(id))
		}
		tb := bucket(t, tx, "v1", "moby", "images", "docker.io/library/dockers:1", "target")
		put(t, tb, "digest", []byte(mfHex))
		put(t, tb, "mediatype", []byte("application/vnd.oci.image.manifest.v1+json"))
		put(t, tb, "size", binary.AppendVarint(nil, int64(len(mf))))
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(c.host, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()

	sums, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, sum := range sums {
		if sum.Namespace == "moby" {
			t.Errorf("List lists %s/%s: Docker's own", sum.Namespace, sum.ID)
		}
	}
	if len(sums) != 1 {
		t.Errorf("List: %d containers, want 1 (default/c1)", len(sums))
	}
	ims, err := s.ListImages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ims) != 1 || ims[0].Namespace != "default" {
		t.Errorf("ListImages: %+v, want default's x:1 alone", ims)
	}

	// A bare ID in default and moby is default's, not ambiguous.
	if ct, err := s.Container(ctx, "c1"); err != nil || ct.Storage["SnapshotKey"] != "c1" || !bytes.Contains(ct.Raw, []byte(`"Namespace": "default"`)) {
		t.Errorf("Container(c1) = %v, %v; want default's", ct, err)
	}
	if _, err := s.Container(ctx, "m1"); !errorsIsNoSuch(err) {
		t.Errorf("Container(m1): %v; want no such container (Docker's own)", err)
	}
	if _, err := s.Image(ctx, "docker.io/library/dockers:1"); !errorsIsNoSuch(err) {
		t.Errorf("Image(dockers:1): %v; want no such image (Docker's own)", err)
	}
	if _, err := s.Image(ctx, "moby/docker.io/library/dockers:1"); err != nil {
		t.Errorf("Image(moby/dockers:1): %v", err)
	}

	// Asked by name, moby's container is found; the capture's later
	// calls by its bare ID and its image's name then are answered.
	ct, err := s.Container(ctx, "moby/m1")
	if err != nil {
		t.Fatal(err)
	}
	if ct.ImageRef != "docker.io/library/dockers:1" || ct.Image != "sha256:"+c.configHex {
		t.Errorf("Container(moby/m1): image %q %q", ct.ImageRef, ct.Image)
	}
	if rec, err := s.findContainer("m1", false); err != nil || rec.Namespace != "moby" {
		t.Errorf("m1 after moby/m1: %v, %v", rec.Namespace, err)
	}
	if ii, err := s.Image(ctx, ct.ImageRef); err != nil || ii.ID != ct.Image {
		t.Errorf("Image(%s) after moby/m1: %v, %v", ct.ImageRef, ii, err)
	}
	if ii, err := s.Image(ctx, ct.Image); err != nil || ii.ID != ct.Image {
		t.Errorf("Image(%s) after moby/m1: %v, %v", ct.Image, ii, err)
	}
	// c1 stays default's: only moby/c1 was never asked.
	if rec, err := s.findContainer("c1", false); err != nil || rec.Namespace != "default" {
		t.Errorf("c1: %v, %v", rec.Namespace, err)
	}
}

func errorsIsNoSuch(err error) bool { return errors.Is(err, engine.ErrNoSuchObject) }
