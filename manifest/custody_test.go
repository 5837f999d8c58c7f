package manifest

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/amber-forensics/amber/hashing"
)

// TestCustodyAppendDatesUnderLock: an event is dated when it is written,
// under the log's lock, so a process that took its time before waiting for
// another's append does not write an event dated before the one it
// follows (which verify reports as out of time order).
func TestCustodyAppendDatesUnderLock(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.custody.jsonl")
	head := hashing.Sum([]byte("sealed head"))
	early := time.Now()
	if err := AppendCustody(p, head, 3, Event{Action: "mounted", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// Its time taken before the first append, written after it.
	if err := AppendCustody(p, head, 3, Event{Action: "verified", Time: early}); err != nil {
		t.Fatal(err)
	}
	evs, _, err := ParseCustodyFile(p, head, 3)
	if err != nil || len(evs) != 2 {
		t.Fatalf("%v, %d events", err, len(evs))
	}
	if ps := TimeOrder(evs, 0); len(ps) != 0 {
		t.Errorf("appended events out of time order: %v", ps)
	}
}

// TestHeadSeq: a head noted earlier is found at its line, sealed or not,
// and not after the line it hashes is edited.
func TestHeadSeq(t *testing.T) {
	c := NewChain(hashing.Digest{}, 0)
	var heads []hashing.Digest
	for i, a := range []string{"acquisition-started", "sealing", "sealed", "verified"} {
		if _, err := c.Append(Event{Action: a, Time: time.Unix(int64(i), 0)}); err != nil {
			t.Fatal(err)
		}
		heads = append(heads, c.Head())
	}
	evs, head, err := ParseCustody(bytes.NewReader(c.Bytes()), hashing.Digest{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range heads {
		if got, ok := HeadSeq(evs, head, h); !ok || got != i {
			t.Errorf("head of line %d found at %d (%v)", i, got, ok)
		}
	}
	if _, ok := HeadSeq(evs, head, hashing.Sum([]byte("other"))); ok {
		t.Error("a head that is no line was found")
	}
}
