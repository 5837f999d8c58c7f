package main

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/internal/testenv"
)

// TestPs: amber ps lists a running Docker container with its name, image,
// state and processes as docker itself reports them (the first process is
// docker inspect's; the others are its cgroup's), as a table and as JSON,
// and names an unknown runtime as a usage error.
func TestPs(t *testing.T) {
	id := testContainer(t, "amber-ps-test")
	pid, _ := strconv.Atoi(strings.TrimSpace(testenv.Run(t, "docker", "inspect", "-f", "{{.State.Pid}}", id)))
	if pid <= 0 {
		t.Fatalf("docker reports pid %d", pid)
	}
	var out struct {
		Containers []psRow `json:"containers"`
	}
	if err := json.Unmarshal([]byte(mustAmber(t, "ps", "--json")), &out); err != nil {
		t.Fatal(err)
	}
	var row *psRow
	for i := range out.Containers {
		if out.Containers[i].ID == id {
			row = &out.Containers[i]
		}
	}
	if row == nil {
		t.Fatalf("amber ps --json does not list %s: %+v", id, out.Containers)
	}
	if row.Runtime != "docker" || row.Name != "amber-ps-test" || row.Image != "amber-test:1" || row.State != "running" || row.Pid != pid {
		t.Errorf("row %+v: want docker amber-ps-test amber-test:1 running pid %d", *row, pid)
	}
	if len(row.PIDs) < 2 || row.PIDs[0] != pid && !slices.Contains(row.PIDs, pid) {
		// The test container runs sh and a sleep: two processes at least.
		t.Errorf("processes %v: want %d and its children", row.PIDs, pid)
	}
	table := mustAmber(t, "ps", "--runtime", "docker")
	if !strings.HasPrefix(table, "RUNTIME") || !strings.Contains(table, "amber-ps-test") || !strings.Contains(table, id[:12]) {
		t.Errorf("table:\n%s", table)
	}
	if r := amber(t, "ps", "--runtime", "nosuch"); r.code != exitUsage || !strings.Contains(r.stderr, "nosuch") {
		t.Errorf("ps --runtime nosuch: exit %d %s", r.code, r.stderr)
	}
	out2 := filepath.Join(t.TempDir(), "x.tar.zst")
	if r := amber(t, "capture", "container", "--runtime", "nosuch", id, "-o", out2); r.code != exitUsage || !strings.Contains(r.stderr, "nosuch") {
		t.Errorf("capture container --runtime nosuch: exit %d %s", r.code, r.stderr)
	}
}
