package registry

import (
	"errors"
	"testing"
)

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"docker://registry.example/app:v2", "registry.example/app:v2", true},
		{"docker://127.0.0.1:5000/case-2026-041/e1:web", "127.0.0.1:5000/case-2026-041/e1:web", true},
		{"docker://localhost/app@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "localhost/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", true},
		{"docker://alpine", "", false},
		{"docker://library/alpine:3", "", false},
		{"registry.example/app:v2", "", false},
		{"docker://registry.example/App:v2", "", false},
	} {
		ref, err := ParseRef(tc.in, Options{})
		if tc.ok != (err == nil) || err == nil && ref.Name() != tc.want {
			t.Errorf("ParseRef(%q) = %v, %v; want %q ok=%v", tc.in, ref, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrRef) {
			t.Errorf("ParseRef(%q): %v is not ErrRef", tc.in, err)
		}
	}
}
