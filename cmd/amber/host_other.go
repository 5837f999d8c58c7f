//go:build !linux

package main

import (
	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// A dead host's runtime state is read with Linux's openat2 (RESOLVE_BENEATH):
// amber host and capture host are Linux commands, as the live captures are.

func (e *env) newHostCmd() *cobra.Command {
	return &cobra.Command{Use: "host ROOT", Short: "List what a dead host's disk holds (Linux only)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return needsLinux("host", "a dead host's files are read with Linux's openat2")
		}}
}

func (e *env) newCaptureHostCmd() *cobra.Command {
	return &cobra.Command{Use: "host ROOT [CONTAINER...] -o ARCHIVE.tar.zst", Short: "Capture from a dead host's disk (Linux only)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return needsLinux("capture host", "a dead host's files are read with Linux's openat2")
		}}
}

func diskImagesFor(engine.Runtime) func() (engine.Runtime, error) { return nil }
