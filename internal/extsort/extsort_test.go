package extsort

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestSorterOrders: items come back in key order with their payloads,
// in memory and through spilled, multi-level merged runs alike, and can be
// read twice.
func TestSorterOrders(t *testing.T) {
	for _, cfg := range []Config{{}, {SortBudget: 64, FanIn: 2}, {SortBudget: 300, FanIn: 3}} {
		t.Run(fmt.Sprintf("%+v", cfg), func(t *testing.T) {
			cfg.Dir = t.TempDir()
			s := New(cfg)
			defer s.Close()
			r := rand.New(rand.NewPCG(1, 2))
			var keys []string
			for _, k := range r.Perm(2000) {
				key := fmt.Sprintf("k%06d", k)
				keys = append(keys, key)
				if err := s.Add([]byte(key), []byte("v"+key)); err != nil {
					t.Fatal(err)
				}
			}
			slices.Sort(keys)
			for pass := range 2 {
				var got []string
				if err := s.Each(func(k, p []byte) error {
					if string(p) != "v"+string(k) {
						return fmt.Errorf("payload %q for key %q", p, k)
					}
					got = append(got, string(k))
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, keys) {
					t.Fatalf("pass %d: %d items out of order or missing (of %d)", pass, len(got), len(keys))
				}
			}
			if s.Len() != 2000 {
				t.Fatalf("Len %d", s.Len())
			}
		})
	}
}

// TestSorterNoTempSpace: a sorter that must spill into a directory that
// does not exist fails with ErrTempSpace, not a panic or a short read.
func TestSorterNoTempSpace(t *testing.T) {
	s := New(Config{Dir: filepath.Join(t.TempDir(), "missing"), SortBudget: 16})
	defer s.Close()
	var err error
	for k := 0; k < 100 && err == nil; k++ {
		err = s.Add([]byte(fmt.Sprint(k)), nil)
	}
	if err == nil {
		err = s.Each(func(k, p []byte) error { return nil })
	}
	if !errors.Is(err, ErrTempSpace) {
		t.Fatalf("got %v, want ErrTempSpace", err)
	}
}

// TestSpool: bytes written read back whole, from memory and from the temp
// file it moves to past its budget, whose name is gone from the directory.
func TestSpool(t *testing.T) {
	dir := t.TempDir()
	for _, budget := range []int{0, 10} {
		sp := NewSpool(Config{Dir: dir, SpoolBudget: budget})
		var want bytes.Buffer
		for k := range 100 {
			line := fmt.Sprintf("line %d\n", k)
			want.WriteString(line)
			if _, err := sp.WriteString(line); err != nil {
				t.Fatal(err)
			}
		}
		if err := sp.Finish(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(sp.Reader())
		if err != nil || !bytes.Equal(got, want.Bytes()) || sp.Len() != int64(want.Len()) {
			t.Fatalf("budget %d: read back %d bytes (%v), want %d", budget, len(got), err, want.Len())
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("budget %d: %d names left in the temp directory", budget, len(ents))
		}
		sp.Close()
	}
}
