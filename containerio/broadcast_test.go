package containerio

import (
	"errors"
	"strings"
	"testing"
)

func TestBroadcaster(t *testing.T) {
	b := newBroadcaster(8)
	w := newSyncBuf()
	s := b.subscribe(w)
	// A chunk larger than the limit is accepted when nothing is queued.
	b.publish([]byte(strings.Repeat("a", 20)))
	eventually(t, "big chunk delivered", func() bool { return len(w.String()) == 20 })
	b.publish([]byte("bc"))
	b.close()
	waitChan(t, "subscriber end", s.ended)
	if err := s.result(); err != nil {
		t.Fatal(err)
	}
	if w.String() != strings.Repeat("a", 20)+"bc" || !w.isClosed() {
		t.Fatalf("got %q closed=%v", w.String(), w.isClosed())
	}

	// Subscribing after the end ends at once and closes the writer.
	w2 := newSyncBuf()
	s2 := b.subscribe(w2)
	waitChan(t, "late subscriber end", s2.ended)
	waitChan(t, "late writer closed", w2.closed)
	b.publish([]byte("ignored"))
	if w2.String() != "" {
		t.Fatalf("late subscriber got %q", w2.String())
	}
}

func TestBroadcasterSlowSubscriber(t *testing.T) {
	b := newBroadcaster(8)
	slow := newBlockingWriter()
	s := b.subscribe(slow)
	fast := newSyncBuf()
	f := b.subscribe(fast)
	b.publish([]byte("12345678")) // taken by the slow writer, which blocks
	eventually(t, "slow writer busy", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.queued == 0
	})
	eventually(t, "fast got the first chunk", func() bool { return len(fast.String()) == 8 })
	b.publish([]byte("abcdefgh")) // queued (8 bytes)
	eventually(t, "fast caught up", func() bool { return len(fast.String()) == 16 })
	b.publish([]byte("x")) // would exceed 8: the slow subscriber is dropped
	waitChan(t, "slow subscriber ended", s.ended)
	if err := s.result(); !errors.Is(err, ErrSlowAttacher) {
		t.Fatalf("slow subscriber: %v", err)
	}
	if subscribers(b) != 1 {
		t.Fatalf("%d subscribers left, want 1", subscribers(b))
	}
	close(slow.release)
	waitChan(t, "slow writer closed", slow.closed)
	b.close()
	waitChan(t, "fast subscriber end", f.ended)
	if fast.String() != "12345678abcdefghx" {
		t.Fatalf("fast got %q", fast.String())
	}
}
