//go:build !linux

package main

func (e *env) runMount(o *mountOptions, archive, dir string) error {
	return needsLinux("mount", "the mount is served through Linux's FUSE")
}

func (e *env) runUmount(dir string, force bool) error {
	return needsLinux("umount", "it unmounts what amber mount made, which is Linux only")
}
