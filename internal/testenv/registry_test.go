package testenv

import (
	"os/exec"
	"strings"
	"testing"
)

// TestRegistry: the test's registry answers over TLS with its own
// certificate (curl trusts it with --cacert, refuses it without) and asks
// for the password (401 without, 200 with).
func TestRegistry(t *testing.T) {
	r := StartRegistry(t, RegistryOptions{TLS: true, Auth: true})
	curl := Tool(t, "curl")
	code := func(args ...string) string {
		out, _ := exec.Command(curl, append([]string{"-s", "-o", "/dev/null", "-w", "%{http_code}"}, args...)...).Output()
		return strings.TrimSpace(string(out))
	}
	if c := code("--cacert", r.CAFile, r.URL()+"/v2/"); c != "401" {
		t.Errorf("without a password: %s, want 401", c)
	}
	if c := code("--cacert", r.CAFile, "-u", r.User+":"+r.Password, r.URL()+"/v2/"); c != "200" {
		t.Errorf("with the password: %s, want 200", c)
	}
	if c := code("-u", r.User+":"+r.Password, r.URL()+"/v2/"); c != "000" {
		t.Errorf("without trusting its certificate: %s, want a TLS failure (000)", c)
	}
	plain := StartRegistry(t, RegistryOptions{})
	if c := code(plain.URL() + "/v2/"); c != "200" {
		t.Errorf("a plain registry: %s, want 200", c)
	}
}
