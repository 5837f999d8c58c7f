// Package procmem takes the memory of live processes as ELF core files,
// with the /proc files that describe them, read from Linux's /proc without
// stopping or attaching to the processes.
//
// It knows nothing of archives or manifests (it imports the standard
// library and golang.org/x/sys only): Read gives a neutral description of
// a process and its small files, a Core streams the core file to any
// io.Writer, and the caller stores both and records what was lost.
package procmem
