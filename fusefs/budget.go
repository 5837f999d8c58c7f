//go:build linux

package fusefs

import (
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
)

// DefaultMaxInodes is how many inodes a mount keeps before it asks the
// kernel to forget the oldest: about 90 MB of them.
const DefaultMaxInodes = 65536

// budget bounds the inodes the mount holds. The kernel keeps an inode for
// every name looked up for as long as it has memory to spare (find over a
// layer of a million files: a million inodes, each a node here). Past max,
// the oldest nodes are pruned: the kernel is asked to drop their dentries
// (NOTIFY_PRUNE, else NOTIFY_INVAL_ENTRY), it sends FORGET for those not in
// use, and a later lookup makes them again, with the same inode numbers.
type budget struct {
	max   int
	mu    sync.Mutex
	queue []*node // nodes made, oldest first; forgotten ones are dropped by trim
	added int     // since the last trim
	epoch atomic.Int64
	kick  chan struct{}
	// pruned counts the inodes the kernel was asked to forget.
	pruned atomic.Int64
	// entryOnly uses NOTIFY_INVAL_ENTRY even where NOTIFY_PRUNE works
	// (tests of the older kernels' way).
	entryOnly atomic.Bool
}

func newBudget(max int) *budget {
	if max <= 0 {
		max = DefaultMaxInodes
	}
	return &budget{max: max, kick: make(chan struct{}, 1)}
}

// add records a node given to the kernel.
func (b *budget) add(n *node) {
	n.epoch = b.epoch.Load()
	b.mu.Lock()
	b.queue = append(b.queue, n)
	b.added++
	kick := b.added >= max(b.max/8, 1)
	if kick {
		b.added = 0
	}
	b.mu.Unlock()
	if kick {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}

// run trims every period and whenever many nodes were added, until done.
func (b *budget) run(done <-chan struct{}, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-b.kick:
		case <-t.C:
		}
		b.trim()
	}
}

// trim drops forgotten nodes from the queue and, past max, asks the kernel
// to forget the oldest, down to seven eighths of max (they move to the
// tail: one in use stays, and comes up again later).
func (b *budget) trim() {
	e := b.epoch.Add(1)
	b.mu.Lock()
	kept := b.queue[:0]
	for _, n := range b.queue {
		// A node made during the last round may not be registered
		// with the kernel yet: it looks forgotten, and is not.
		//
		// Forgotten asks the inode's state now, which is what a trim
		// needs; its replacement, an OnForget callback, fires on a
		// transition that a LOOKUP can undo, so it would need this same
		// question asked again.
		//lint:ignore SA1019 see above: the state, not the event
		if n.epoch < e-1 && n.Forgotten() {
			continue
		}
		kept = append(kept, n)
	}
	clear(b.queue[len(kept):])
	b.queue = kept
	var victims []*node
	if len(kept) > b.max {
		over := len(kept) - b.max*7/8
		victims = append(victims, kept[:over]...)
		copy(kept, kept[over:])
		copy(kept[len(kept)-over:], victims)
	}
	b.mu.Unlock()
	if len(victims) > 0 {
		b.prune(victims)
	}
}

// prune asks the kernel to forget victims. It never runs in a request's
// goroutine: the kernel may wait for a request in the same directory.
func (b *budget) prune(victims []*node) {
	const batch = 4096
	inodes := make([]*fs.Inode, 0, min(len(victims), batch))
	for len(victims) > 0 {
		k := min(len(victims), batch)
		inodes = inodes[:0]
		for _, n := range victims[:k] {
			inodes = append(inodes, n.EmbeddedInode())
		}
		errno := syscall.ENOSYS
		if !b.entryOnly.Load() {
			errno = inodes[0].NotifyPrune(inodes)
		}
		if errno == syscall.ENOSYS {
			// Kernels before 6.15: one invalidation per name.
			for _, in := range inodes {
				if name, parent := in.Parent(); parent != nil {
					parent.NotifyEntry(name)
				}
			}
		}
		b.pruned.Add(int64(k))
		victims = victims[k:]
	}
}
