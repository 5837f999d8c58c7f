package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/internal/testenv"
)

// The fleet examples in deploy/ are what an examiner copies: they must
// parse, their shell must parse, and the amber commands in them must be
// ones this amber takes (straight into the registry, no push step).

// yamlDocs parses a YAML file with Debian's python3-yaml (an independent
// parser) and returns its documents as JSON values.
func yamlDocs(t *testing.T, p string) []map[string]any {
	t.Helper()
	py := testenv.PythonModule(t, "yaml", "python3-yaml")
	out, err := exec.Command(py, "-c", "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))", p).CombinedOutput()
	if err != nil {
		t.Fatalf("%s is not valid YAML: %v\n%s", p, err, out)
	}
	var docs []map[string]any
	if err := json.Unmarshal(out, &docs); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return docs
}

// podScripts are the /bin/sh -c scripts of the containers of a Job's or
// DaemonSet's pod template.
func podScripts(t *testing.T, doc map[string]any) []string {
	t.Helper()
	get := func(v any, k string) any {
		if m, ok := v.(map[string]any); ok {
			return m[k]
		}
		return nil
	}
	cs, _ := get(get(get(doc["spec"], "template"), "spec"), "containers").([]any)
	var scripts []string
	for _, c := range cs {
		cmd, _ := get(c, "command").([]any)
		args, _ := get(c, "args").([]any)
		if len(cmd) != 2 || cmd[0] != "/bin/sh" || cmd[1] != "-c" || len(args) != 1 {
			t.Errorf("%s: container command %v args %v: want /bin/sh -c SCRIPT", doc["kind"], cmd, args)
			continue
		}
		s, _ := args[0].(string)
		scripts = append(scripts, s)
	}
	return scripts
}

// amberFlags are the flags of amber's subcommand args, from its help.
func amberFlags(t *testing.T, args ...string) map[string]bool {
	t.Helper()
	help := mustAmber(t, append(args, "--help")...)
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?(--[a-z][a-z-]*)`).FindAllStringSubmatch(help, -1) {
		flags[m[1]] = true
	}
	return flags
}

// checkCapture checks the amber command lines of a script: each capture
// goes straight to docker:// with flags amber takes; no push step.
func checkCapture(t *testing.T, where, script, sub string, flags map[string]bool) {
	t.Helper()
	if out, err := exec.Command("sh", "-n", "-c", script).CombinedOutput(); err != nil {
		t.Errorf("%s: sh -n: %v\n%s", where, err, out)
	}
	joined := strings.ReplaceAll(script, "\\\n", " ")
	if strings.Contains(joined, "amber push") {
		t.Errorf("%s still captures, then pushes:\n%s", where, script)
	}
	var n int
	for _, l := range strings.Split(joined, "\n") {
		i := strings.Index(l, "amber capture "+sub)
		if i < 0 {
			continue
		}
		n++
		cmd := l[i:]
		if !regexp.MustCompile(`-o '?"?docker://`).MatchString(cmd) {
			t.Errorf("%s: %q does not capture into the registry (-o docker://...)", where, cmd)
		}
		for _, f := range regexp.MustCompile(`\s(--[a-z][a-z-]*)`).FindAllStringSubmatch(cmd, -1) {
			if !flags[f[1]] {
				t.Errorf("%s: amber capture %s has no flag %s (in %q)", where, sub, f[1], cmd)
			}
		}
	}
	if n == 0 {
		t.Errorf("%s runs no amber capture %s:\n%s", where, sub, script)
	}
}

// TestDeployManifests: deploy/k8s/*.yaml parse (python3-yaml), are the
// kinds the README names, and their scripts parse (sh -n) and capture
// each pod with amber capture pod -o docker://... (flags amber has), with
// no push step.
func TestDeployManifests(t *testing.T) {
	flags := amberFlags(t, "capture", "pod")
	kinds := map[string]bool{}
	for _, f := range []string{"job.yaml", "daemonset.yaml"} {
		p := filepath.Join("..", "..", "deploy", "k8s", f)
		for _, d := range yamlDocs(t, p) {
			k, _ := d["kind"].(string)
			if _, ok := d["apiVersion"].(string); !ok || k == "" {
				t.Errorf("%s: a document without apiVersion and kind: %v", f, d)
			}
			kinds[k] = true
			if k == "Job" || k == "DaemonSet" {
				for _, s := range podScripts(t, d) {
					checkCapture(t, f+" "+k, s, "pod", flags)
				}
			}
		}
	}
	if !kinds["Job"] || !kinds["DaemonSet"] {
		t.Errorf("deploy/k8s holds kinds %v; want a Job and a DaemonSet", kinds)
	}
}

// TestDeploySSHFanout: deploy/ssh-fanout.sh parses (bash -n) and, run
// over two hosts with an ssh that records what it is asked to run, sends
// each host one amber capture container -o docker://REG/CASE/<host>:TAG
// (flags amber has), no push, and summarises both as ok.
func TestDeploySSHFanout(t *testing.T) {
	bash := testenv.Tool(t, "bash")
	script, err := filepath.Abs(filepath.Join("..", "..", "deploy", "ssh-fanout.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bash, "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n %s: %v\n%s", script, err, out)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	// ssh HOST COMMAND: record the command by host (the last argument).
	fake := `#!/bin/sh
for a; do last=$a; done
for a; do case $a in -*|BatchMode=*|ConnectTimeout=*) ;; *) host=$a; break ;; esac; done
printf '%s\n' "$last" > "` + dir + `/remote-$host"
`
	if err := os.WriteFile(filepath.Join(bin, "ssh"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	hosts := filepath.Join(dir, "hosts.txt")
	os.WriteFile(hosts, []byte("# the web tier\nroot@Web1\n\nweb2 # second\n"), 0o644)
	cmd := exec.Command(bash, script, "-f", hosts, "-r", "reg.example:5000", "-c", "case-1", "-t", "web", "-j", "2",
		"-e", "J. O'Doe", "-d", "/var/tmp/keep", "-l", filepath.Join(dir, "logs"), "--", "web", "db")
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil || !strings.Contains(string(out), "2 hosts, 0 failed") {
		t.Fatalf("ssh-fanout.sh: %v\n%s", err, out)
	}
	flags := amberFlags(t, "capture", "container")
	for host, tag := range map[string]string{"root@Web1": "docker://reg.example:5000/case-1/web1:web", "web2": "docker://reg.example:5000/case-1/web2:web"} {
		b, err := os.ReadFile(filepath.Join(dir, "remote-"+host))
		if err != nil {
			t.Errorf("ssh-fanout.sh ran nothing on %s: %v", host, err)
			continue
		}
		remote := string(b)
		t.Logf("%s: %s", host, remote)
		checkCapture(t, "ssh-fanout.sh on "+host, remote, "container", flags)
		if !strings.Contains(remote, "'web' 'db' -o '"+tag+"'") || !strings.Contains(remote, "--keep-local '/var/tmp/keep'") ||
			!strings.Contains(remote, `--examiner 'J. O'\''Doe'`) {
			t.Errorf("ssh-fanout.sh on %s ran %q; want the containers, -o '%s', the examiner quoted and --keep-local", host, remote, tag)
		}
	}
}
