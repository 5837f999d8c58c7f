// Package bufpool holds the archive writer's frame buffers (size classes
// carved from one mmap'd slab where the platform has it, so that the
// garbage collector neither scans nor zeroes them) and the page-cache hints
// that write a sealed frame back early and read ahead (Linux; no-ops
// elsewhere).
package bufpool
