package engine

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestWrap: whatever a runtime answers, the error says what was asked and
// keeps its class (a Fault's kind, a claim, else ErrEngine), so cmd's exit
// codes do not depend on which runtime failed; a cancellation stays one.
func TestWrap(t *testing.T) {
	for _, tc := range []struct {
		err   error
		is    []error
		isNot []error
		text  string
	}{
		{&Fault{Kind: ErrNoSuchObject, Err: errors.New("no such container: x")}, []error{ErrNoSuchObject}, []error{ErrEngine}, "inspecting x: no such container: x"},
		{&Fault{Kind: ErrEngine, Err: errors.New("dial unix"), Note: "is dockerd running?"}, []error{ErrEngine}, nil, "inspecting x: is dockerd running?: dial unix"},
		{Claimf("a size of %d", -1), []error{ErrEngine, ErrEngineClaim}, []error{ErrNoSuchObject}, "inspecting x: a size of -1"},
		{errors.New("reset by peer"), []error{ErrEngine}, []error{ErrNoSuchObject}, "inspecting x: reset by peer"},
		{context.Canceled, []error{context.Canceled}, []error{ErrEngine}, "inspecting x: context canceled"},
	} {
		got := Wrap(tc.err, "inspecting x")
		for _, e := range tc.is {
			if !errors.Is(got, e) {
				t.Errorf("Wrap(%v) = %v: not %v", tc.err, got, e)
			}
		}
		for _, e := range tc.isNot {
			if errors.Is(got, e) {
				t.Errorf("Wrap(%v) = %v: is %v", tc.err, got, e)
			}
		}
		if !strings.Contains(got.Error(), tc.text) {
			t.Errorf("Wrap(%v) = %q, want it to say %q", tc.err, got, tc.text)
		}
	}
	if Wrap(nil, "x") != nil {
		t.Error("Wrap(nil) is not nil")
	}
}

// TestContextReader: a copy stops with the context's error once it is
// done, and reads through before.
func TestContextReader(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := ContextReader(ctx, strings.NewReader("abcdef"))
	b := make([]byte, 3)
	if n, err := r.Read(b); n != 3 || err != nil || string(b) != "abc" {
		t.Fatalf("read before cancel: %d %v %q", n, err, b)
	}
	cancel()
	if _, err := io.ReadAll(r); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v", err)
	}
}
