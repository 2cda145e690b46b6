package main

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// The daemon's log wakes a waiter with the write that brings its text, even
// a text split across writes, and not before; a wait ends with its context.
func TestLogBuffer(t *testing.T) {
	var l logBuffer
	fmt.Fprintln(&l, `msg=starting`)
	found, cancel := l.await("msg=starting")
	defer cancel()
	select {
	case <-found:
	default:
		t.Fatal("a text already in the log is not found")
	}

	found, cancel = l.await(`msg="reload done"`)
	defer cancel()
	fmt.Fprint(&l, `level=INFO msg="reload `)
	select {
	case <-found:
		t.Fatal("woken before the text was written")
	default:
	}
	fmt.Fprintln(&l, `done" config=c.toml`)
	select {
	case <-found:
	default:
		t.Fatal("not woken by the write that completed the text")
	}

	ctx, stop := context.WithCancel(context.Background())
	stop()
	if err := l.wait(ctx, "never written"); !errors.Is(err, context.Canceled) {
		t.Errorf("wait with a done context = %v, want context.Canceled", err)
	}
	l.mu.Lock()
	n := len(l.waiters)
	l.mu.Unlock()
	if n != 0 {
		t.Errorf("%d waiters left after their waits ended", n)
	}
}
