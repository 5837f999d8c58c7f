package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/amber-forensics/amber/hashing"
)

// Tagged is what a tag names already.
type Tagged struct {
	// Digest is the manifest's.
	Digest v1.Hash
	// Archive is its evidence layer's digest; zero when the tag is not
	// amber evidence (or its manifest cannot be read as a manifest).
	Archive v1.Hash
}

// Existing reports what ref tags now, nil when the tag does not exist.
// The manifest is read bounded, as any registry answer.
func Existing(ctx context.Context, ref name.Tag, opts Options) (*Tagged, error) {
	desc, err := remote.Get(ref, opts.bounded(ctx)...)
	if err != nil {
		err = classify(ref.Context(), opts, err)
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("%s%s: manifest: %w", Prefix, ref.Name(), err)
	}
	t := &Tagged{Digest: desc.Digest}
	var m v1.Manifest
	if json.Unmarshal(desc.Manifest, &m) == nil {
		for _, l := range m.Layers {
			if l.MediaType == MediaTypeArchive {
				t.Archive = l.Digest
				break
			}
		}
	}
	return t, nil
}

// NoOverwrite refuses (ErrExists) a push to a tag that names something
// already: a tag is how an examiner finds evidence, and a push that
// silently moved it would hide what it named. With same, the tag may
// already name archive (push --custody: a new manifest version of the
// same evidence); archive is zero when it is not known yet (a capture,
// before it starts). A registry has no conditional put: two pushes to
// one tag at the same moment can both pass; amber checks before it
// uploads and again just before it puts the manifest.
func NoOverwrite(ctx context.Context, ref name.Tag, opts Options, archive hashing.Digest, same bool) error {
	t, err := Existing(ctx, ref, opts)
	if err != nil || t == nil {
		return err
	}
	where := Prefix + ref.Name()
	if !archive.IsZero() && t.Archive.Hex == archive.Hex() {
		if same {
			return nil
		}
		return fmt.Errorf("%w: %s already tags this archive (manifest %s); push --custody updates its custody log, --force replaces the tag", ErrExists, where, t.Digest)
	}
	what := "manifest " + t.Digest.String()
	if t.Archive.Hex != "" {
		what += ", archive " + t.Archive.String()
	} else {
		what += ", not amber evidence"
	}
	return fmt.Errorf("%w: %s already tags other evidence (%s); amber never moves a tag unless told: --force replaces the tag (what it named stays in the registry under its digest)", ErrExists, where, what)
}
