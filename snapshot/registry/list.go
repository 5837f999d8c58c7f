package registry

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// maxTags bounds a repository's listing: a registry's answer is hostile.
const (
	maxTags     = 100000
	maxTagPages = 1000
)

// Listed is one tag of a repository of evidence.
type Listed struct {
	Tag      string `json:"tag"`
	Digest   string `json:"digest,omitempty"`
	Case     string `json:"case,omitempty"`
	Exhibit  string `json:"exhibit,omitempty"`
	Examiner string `json:"examiner,omitempty"`
	Created  string `json:"created,omitempty"`
	SHA256   string `json:"archive_sha256,omitempty"`
	Size     int64  `json:"size"`
	Name     string `json:"name,omitempty"`
	// Problem says why the tag is not listed as evidence (another kind of
	// manifest, or one that breaks its own description).
	Problem string `json:"problem,omitempty"`
}

// List lists a repository's tags with their evidence annotations, sorted
// by tag. A tag that is not amber evidence is listed with its Problem.
func List(ctx context.Context, repo name.Repository, opts Options) ([]Listed, error) {
	tags, err := listTags(ctx, repo, opts)
	if err != nil {
		return nil, fmt.Errorf("docker://%s: listing tags: %w", repo.Name(), err)
	}
	sort.Strings(tags)
	var out []Listed
	for _, t := range tags {
		l := Listed{Tag: t}
		a, err := Resolve(ctx, repo.Tag(t), opts)
		switch {
		case err == nil:
			an := a.Manifest.Annotations
			l.Digest = a.Digest.String()
			l.Case, l.Exhibit, l.Examiner, l.Created = an[AnnotationCase], an[AnnotationExhibit], an[AnnotationExaminer], an[AnnotationCreated]
			l.SHA256, l.Size, l.Name = a.Archive.Digest.Hex, a.Archive.Size, a.Config.Name
		case errors.Is(err, ErrNotEvidence), errors.Is(err, ErrNotFound), errors.Is(err, ErrAltered):
			// One bad tag does not hide the others.
			l.Problem = err.Error()
		default:
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// listTags pages through the repository's tags, bounded: a registry that
// pages forever or names too many tags is refused.
func listTags(ctx context.Context, repo name.Repository, opts Options) ([]string, error) {
	p, err := remote.NewPuller(opts.bounded(ctx)...)
	if err != nil {
		return nil, err
	}
	l, err := p.Lister(ctx, repo)
	if err != nil {
		return nil, classify(repo, opts, err)
	}
	var tags []string
	for pages := 0; ; pages++ {
		if len(tags) > maxTags || pages > maxTagPages {
			return nil, fmt.Errorf("%w: more than %d tags or %d pages of them", ErrNotEvidence, maxTags, maxTagPages)
		}
		page, err := l.Next(ctx)
		if err != nil {
			return nil, classify(repo, opts, err)
		}
		tags = append(tags, page.Tags...)
		if !l.HasNext() {
			return tags, nil
		}
	}
}
