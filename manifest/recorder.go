package manifest

import (
	"fmt"
	"os"
	"os/user"
	"runtime"
	"time"

	"github.com/amber-forensics/amber/hashing"
)

// HostInfo fills an acquisition record's host fields with this machine and
// user: host name, OS, kernel, user name and UID.
func HostInfo(a *Acquisition) {
	a.Host, _ = os.Hostname()
	a.OS = runtime.GOOS + "/" + runtime.GOARCH
	if k := kernelName(); k != "" {
		a.Kernel = k
	}
	a.UID = os.Getuid()
	if cu, err := user.Current(); err == nil {
		a.User = cu.Username
	} else {
		a.User = fmt.Sprint(a.UID)
	}
}

// Recorder appends the events that happen to an archive after it is
// sealed (verified, mounted, extracted, ...) to its custody sidecar,
// chained from the sealed log's head, as done by this machine's user.
type Recorder struct {
	Actor, Host string
	// Now dates the events (nil: the clock).
	Now func() time.Time
}

// NewRecorder records as this machine's user.
func NewRecorder() Recorder {
	var a Acquisition
	HostInfo(&a)
	return Recorder{Actor: a.User, Host: a.Host}
}

// Record appends action with its details to archive's custody sidecar
// (ARCHIVE.custody.jsonl; m is the archive's manifest) and returns the
// chain's new head and the event's sequence number.
func (r Recorder) Record(archive string, m *Manifest, action string, details map[string]string) (hashing.Digest, int, error) {
	e := Event{Actor: r.Actor, Host: r.Host, Action: action, Details: details}
	return AppendCustodyAt(archive+".custody.jsonl", m.Custody.Head, m.Custody.Events, e, r.Now)
}
