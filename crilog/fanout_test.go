package crilog

import (
	"errors"
	"strings"
	"testing"

	"github.com/cri-containerd/cri-containerd/crilog/crilogtest"
)

func TestFanout(t *testing.T) {
	b := NewFanout(8)
	w := crilogtest.NewSyncBuf()
	s := b.Subscribe(w)
	// A chunk larger than the limit is accepted when nothing is queued.
	b.Publish([]byte(strings.Repeat("a", 20)))
	crilogtest.Eventually(t, "big chunk delivered", func() bool { return len(w.String()) == 20 })
	b.Publish([]byte("bc"))
	b.Close()
	crilogtest.WaitChan(t, "subscriber end", s.Done())
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if w.String() != strings.Repeat("a", 20)+"bc" || !w.IsClosed() {
		t.Fatalf("got %q closed=%v", w.String(), w.IsClosed())
	}

	// Subscribing after the end ends at once and closes the writer.
	w2 := crilogtest.NewSyncBuf()
	s2 := b.Subscribe(w2)
	crilogtest.WaitChan(t, "late subscriber end", s2.Done())
	crilogtest.WaitChan(t, "late writer closed", w2.Closed)
	b.Publish([]byte("ignored"))
	if w2.String() != "" {
		t.Fatalf("late subscriber got %q", w2.String())
	}
}

func TestFanoutSlowSubscriber(t *testing.T) {
	b := NewFanout(8)
	slow := crilogtest.NewBlockingWriter()
	s := b.Subscribe(slow)
	fast := crilogtest.NewSyncBuf()
	f := b.Subscribe(fast)
	b.Publish([]byte("12345678")) // taken by the slow writer, which blocks
	crilogtest.Eventually(t, "slow writer busy", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.queued == 0
	})
	crilogtest.Eventually(t, "fast got the first chunk", func() bool { return len(fast.String()) == 8 })
	b.Publish([]byte("abcdefgh")) // queued (8 bytes)
	crilogtest.Eventually(t, "fast caught up", func() bool { return len(fast.String()) == 16 })
	b.Publish([]byte("x")) // would exceed 8: the slow subscriber is dropped
	crilogtest.WaitChan(t, "slow subscriber ended", s.Done())
	if err := s.Err(); !errors.Is(err, ErrSlowAttacher) {
		t.Fatalf("slow subscriber: %v", err)
	}
	if b.Subscribers() != 1 {
		t.Fatalf("%d subscribers left, want 1", b.Subscribers())
	}
	close(slow.Release)
	crilogtest.WaitChan(t, "slow writer closed", slow.Closed)
	b.Close()
	crilogtest.WaitChan(t, "fast subscriber end", f.Done())
	if fast.String() != "12345678abcdefghx" {
		t.Fatalf("fast got %q", fast.String())
	}
}
