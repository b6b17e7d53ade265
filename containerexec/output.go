package containerexec

import "sync"

// cappedBuffer keeps the first max bytes written to it and drops the rest
// while still reporting success, so the writer keeps draining the process
// output. It is safe for concurrent use; Close does nothing.
type cappedBuffer struct {
	mu        sync.Mutex
	buf       []byte
	max       int
	truncated bool
}

func newCappedBuffer(maxSize int) *cappedBuffer { return &cappedBuffer{max: maxSize} }

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.max - len(b.buf)
	if room < len(p) {
		b.truncated = true
		if room < 0 {
			room = 0
		}
		b.buf = append(b.buf, p[:room]...)
	} else {
		b.buf = append(b.buf, p...)
	}
	return len(p), nil
}

// Close implements io.WriteCloser; the buffer stays readable.
func (b *cappedBuffer) Close() error { return nil }

// Bytes returns a copy of what was kept.
func (b *cappedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...)
}

// Truncated reports whether output was dropped.
func (b *cappedBuffer) Truncated() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.truncated
}
