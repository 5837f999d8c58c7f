package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/snapshot/registry"
)

// lsRepository lists a repository of evidence (docker://REG/REPO, no tag):
// its tags with their annotations. It reports false when the argument is
// not such a repository (an archive, or one artifact, which ls reads).
func (e *env) lsRepository(cmd *cobra.Command, args []string) (bool, error) {
	if len(args) != 1 || !registry.IsRef(args[0]) {
		return false, nil
	}
	rest := strings.TrimPrefix(args[0], registry.Prefix)
	last := rest[strings.LastIndex(rest, "/")+1:]
	if strings.ContainsAny(last, ":@") || !strings.Contains(rest, "/") {
		return false, nil
	}
	var insecure, asJSON bool
	if f := cmd.Flags().Lookup("insecure"); f != nil {
		insecure = f.Value.String() == "true"
	}
	if f := cmd.Flags().Lookup("json"); f != nil {
		asJSON = f.Value.String() == "true"
	}
	ropts := registryOptions(insecure)
	repo, err := registry.ParseRepo(args[0], ropts)
	if err != nil {
		return true, usageError{err}
	}
	ls, err := registry.List(e.ctx, repo, ropts)
	if err != nil {
		return true, err
	}
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		for _, l := range ls {
			if err := enc.Encode(l); err != nil {
				return true, err
			}
		}
		return true, nil
	}
	w := e.stdout
	for _, l := range ls {
		if l.Problem != "" {
			fmt.Fprintf(w, "%s\tnot amber evidence: %s\n", escapeName(l.Tag), escapeName(l.Problem))
			continue
		}
		fmt.Fprintf(w, "%s\tcase=%s exhibit=%s examiner=%s created=%s sha256=%s size=%d name=%s digest=%s\n",
			escapeName(l.Tag), quoteField(l.Case), quoteField(l.Exhibit), quoteField(l.Examiner), quoteField(l.Created),
			l.SHA256, l.Size, quoteField(l.Name), l.Digest)
	}
	if len(ls) == 0 {
		fmt.Fprintf(e.stderr, "docker://%s has no tags\n", escapeName(repo.Name()))
	}
	return true, nil
}

// quoteField shows an annotation (a registry's, so hostile) on one line:
// quoted when empty, spaced or not plain.
func quoteField(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"=") && escapeName(s) == s {
		return s
	}
	return fmt.Sprintf("%q", s)
}
