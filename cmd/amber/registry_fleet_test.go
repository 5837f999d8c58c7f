package main

import (
	"bytes"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amber-forensics/amber/internal/testenv"
)

// TestTwoEnginesToOneRepository: a fleet of two: the host's engine and a
// second dockerd of the test's own (its own data root, exec root and
// socket), the same image loaded into both, a container of the same name
// on each that wrote which node it is. Two amber processes, DOCKER_HOST
// differing, capture them at the same time straight into one repository
// of a registry (TLS, htpasswd) under tags node1 and node2; both tags
// verify from the registry, each holds its own engine's container (the
// file it wrote, read back with amber cat), and amber ls of the
// repository lists both with their annotations.
func TestTwoEnginesToOneRepository(t *testing.T) {
	img := dockerImage(t)
	second := testenv.Dockerd(t)
	second.Docker("load", "-q", "-i", img)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	env := regEnv(t, reg, reg.Password)
	var base []string // the environment without DOCKER_HOST: the host's engine
	for _, kv := range env {
		if !strings.HasPrefix(kv, "DOCKER_HOST=") {
			base = append(base, kv)
		}
	}
	const name = "amber-fleet-web"
	nodes := []struct {
		tag, host string
	}{{"node1", ""}, {"node2", second.Host()}}
	for _, n := range nodes {
		docker := []string{}
		if n.host != "" {
			docker = append(docker, "-H", n.host)
		}
		exec.Command("docker", append(docker, "rm", "-f", name)...).Run()
		testenv.Run(t, "docker", append(docker, "run", "-d", "--name", name, "--network", "none", "amber-test:1", "sh", "-c",
			"echo "+n.tag+" > /tmp/whoami; touch /tmp/ready; while :; do sleep 3600; done")...)
		t.Cleanup(func() { exec.Command("docker", append(docker, "rm", "-f", name)...).Run() })
		testenv.Shell(t, "for i in $(seq 100); do docker "+strings.Join(docker, " ")+" exec "+name+" test -f /tmp/ready && exit 0; sleep 0.1; done; exit 1")
	}

	repo := "docker://" + reg.Host + "/case-18/fleet"
	type run struct {
		code        int
		out         string
		start, done time.Time
	}
	runs := make([]run, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		cmd := exec.Command(amberBin, "capture", "container", name, "--no-memory", "-o", repo+":"+n.tag,
			"--case", "C-18", "--exhibit", n.tag, "--examiner", "fleet test")
		cmd.Env = append([]string(nil), base...)
		if n.host != "" {
			cmd.Env = append(cmd.Env, "DOCKER_HOST="+n.host)
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		runs[i].start = time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd.Wait()
			runs[i] = run{cmd.ProcessState.ExitCode(), out.String(), runs[i].start, time.Now()}
		}()
	}
	wg.Wait()
	for i, r := range runs {
		t.Logf("%s: exit %d in %s\n%s", nodes[i].tag, r.code, r.done.Sub(r.start).Round(time.Millisecond), r.out)
		if r.code != 0 {
			t.Fatalf("capture on %s into %s:%s: exit %d\n%s", nodes[i].tag, repo, nodes[i].tag, r.code, r.out)
		}
	}
	if !runs[1].start.Before(runs[0].done) || !runs[0].start.Before(runs[1].done) {
		t.Errorf("the two captures did not overlap: %+v", runs)
	}

	for _, n := range nodes {
		ref := repo + ":" + n.tag
		if out := mustAmberEnv(t, env, "verify", ref); !strings.Contains(out, "OK") {
			t.Errorf("verify %s: %s", ref, out)
		}
		if got := mustAmberEnv(t, env, "cat", ref, "containers/"+name+"/rootfs/tmp/whoami"); got != n.tag+"\n" {
			t.Errorf("%s holds the container of %q, want %s's", ref, strings.TrimSpace(got), n.tag)
		}
	}
	ls := mustAmberEnv(t, env, "ls", repo)
	t.Logf("ls %s:\n%s", repo, ls)
	lines := strings.Split(strings.TrimSpace(ls), "\n")
	if len(lines) != 2 {
		t.Fatalf("ls %s lists %d tags, want 2:\n%s", repo, len(lines), ls)
	}
	for i, n := range nodes {
		l := lines[i]
		if !strings.HasPrefix(l, n.tag+"\t") || !strings.Contains(l, "case=C-18") || !strings.Contains(l, "exhibit="+n.tag) ||
			!strings.Contains(l, `examiner="fleet test"`) || !strings.Contains(l, "digest=sha256:") {
			t.Errorf("ls %s, line %d: %q; want tag %s with case, exhibit, examiner and digest", repo, i, l, n.tag)
		}
	}
}
