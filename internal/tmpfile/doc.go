// Package tmpfile makes files that have no name until they are complete:
// O_TMPFILE on Linux, linked at their name once sealed, so that a capture
// killed half way leaves nothing; elsewhere a NAME.partial locked while it
// is written.
package tmpfile
