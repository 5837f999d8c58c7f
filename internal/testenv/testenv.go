package testenv

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// InCI reports whether the CI variable is set: then nothing may be skipped.
func InCI() bool { return os.Getenv("CI") != "" }

func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI: "+format, args...)
	}
	t.Skipf(format, args...) // outside CI only: missing() fails the test in CI
}

// Tool returns the path of an external program, failing in CI and skipping
// elsewhere when it is not installed.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, "%s is not installed (make deps installs it)", name)
	}
	return p
}

// Docker checks that a Docker engine answers, failing in CI and skipping
// elsewhere when it does not.
func Docker(t testing.TB) {
	t.Helper()
	Tool(t, "docker")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.APIVersion}}").CombinedOutput()
	if err != nil {
		missing(t, "no Docker engine: %v: %s", err, strings.TrimSpace(string(out)))
	}
}

// Run runs a command and fails the test on error, returning stdout.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// Shell runs a shell pipeline and fails the test on error.
func Shell(t testing.TB, script string) string {
	t.Helper()
	return Run(t, "sh", "-c", "set -e; "+script)
}

// FUSE checks that this process can mount FUSE file systems: /dev/fuse,
// and root (direct mount) or fusermount3.
func FUSE(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		missing(t, "no /dev/fuse: %v", err)
	}
	if os.Geteuid() != 0 {
		Tool(t, "fusermount3")
	}
}

// Root checks that the test runs as root (to keep owners when extracting).
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "needs root")
	}
}

// Podman checks that Podman is installed and the test runs as root
// (rootful Podman, the storage the capture reads), failing in CI and
// skipping elsewhere. Tests give it their own --root, --runroot and
// --tmpdir, never the machine's storage.
func Podman(t testing.TB) string {
	t.Helper()
	Root(t)
	return Tool(t, "podman")
}
