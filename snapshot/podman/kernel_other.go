//go:build !linux

package podman

func kernel() string { return "" }
