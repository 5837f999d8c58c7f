//go:build linux

package snapshot

import (
	"errors"
	"strings"
	"testing"
)

// TestCgroupNames: a process is the container's only when its cgroup, as
// the kernel shows it, names the container's full ID: with the cgroupfs
// and systemd drivers, cgroup v1 and v2.
func TestCgroupNames(t *testing.T) {
	id := strings.Repeat("0123456789abcdef", 4)
	for _, tc := range []struct {
		cg   string
		id   string
		want bool
	}{
		{"0::/docker/" + id + "\n", id, true},
		{"0::/system.slice/docker-" + id + ".scope\n", id, true},
		{"9:name=systemd:/docker/" + id + "\n4:memory:/docker/" + id + "\n0::/docker/" + id + "\n", id, true},
		{"0::/user.slice/user-0.slice/session-1.scope\n", id, false},
		{"0::/\n", id, false},
		{"0::/docker/" + id[:63] + "\n", id, false},
		{"0::/docker/" + id + "\n", "", false},
		{"0::/docker/" + id + "\n", id[:12], false},
	} {
		err := cgroupNames(42, []byte(tc.cg), tc.id)
		if got := err == nil; got != tc.want {
			t.Errorf("cgroup %q, id %q: %v", tc.cg, tc.id, err)
		}
		if err != nil && (!errors.Is(err, errNotInContainer) || !strings.Contains(err.Error(), "42")) {
			t.Errorf("error does not say which process: %v", err)
		}
	}
}
