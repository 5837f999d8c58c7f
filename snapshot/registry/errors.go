package registry

import "errors"

// Errors of a registry's answers, for the command's exit code.
var (
	// ErrAuth: the registry refused the credentials (401 or 403).
	ErrAuth = errors.New("registry refused access")
	// ErrNotFound: no such repository, tag, manifest or blob.
	ErrNotFound = errors.New("not in the registry")
)
