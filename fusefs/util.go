//go:build linux

package fusefs

import (
	"os/exec"
	"strconv"
	"strings"
)

// unescapeMount undoes the octal escapes of /proc/self/mountinfo (\040 for
// a space, and so on).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

var execLookPath = exec.LookPath

func execCommand(p string, args ...string) (string, error) {
	out, err := exec.Command(p, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
