// Package crilogtest holds test helpers of the packages that write CRI logs
// and fan container output out (crilog, containerio, shimlog): a strict CRI
// log record parser and attached-client fakes.
package crilogtest

import (
	"bytes"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var recordRE = regexp.MustCompile(`^(\S+) (stdout|stderr) (P|F) (.*)$`)

// Record is one parsed CRI log record.
type Record struct {
	TS      time.Time
	Stream  string
	Tag     string
	Content string
}

func (r Record) String() string { return r.Stream + " " + r.Tag + " " + r.Content }

// Parse parses CRI log data strictly: every line must be a record.
func Parse(t testing.TB, data string) []Record {
	t.Helper()
	if data == "" {
		return nil
	}
	if !strings.HasSuffix(data, "\n") {
		t.Fatalf("log data does not end with a newline: %q", data)
	}
	var recs []Record
	for _, line := range strings.Split(strings.TrimSuffix(data, "\n"), "\n") {
		m := recordRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("malformed record %q", line)
		}
		ts, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			t.Fatalf("bad timestamp in %q: %v", line, err)
		}
		recs = append(recs, Record{TS: ts, Stream: m[2], Tag: m[3], Content: m[4]})
	}
	return recs
}

// Strings returns the records as "stream tag content" strings.
func Strings(recs []Record) []string {
	out := []string{}
	for _, r := range recs {
		out = append(out, r.String())
	}
	return out
}

// Reassemble joins P records with the following records, as kubelet does,
// and returns the lines of each stream.
func Reassemble(recs []Record) map[string][]string {
	lines := map[string][]string{}
	cur := map[string]string{}
	for _, r := range recs {
		cur[r.Stream] += r.Content
		if r.Tag == "F" {
			lines[r.Stream] = append(lines[r.Stream], cur[r.Stream])
			cur[r.Stream] = ""
		}
	}
	for s, rest := range cur {
		if rest != "" {
			lines[s] = append(lines[s], rest)
		}
	}
	return lines
}

// Timeout bounds the waits of Eventually and WaitChan.
const Timeout = 10 * time.Second

// ReadFile returns the content of the file at path.
func ReadFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Eventually polls cond until it holds or Timeout has passed.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// WaitChan waits until ch is closed (or receives), at most Timeout.
func WaitChan(t testing.TB, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(Timeout):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// SyncBuf is an attached stream collecting what it receives.
type SyncBuf struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	Closed chan struct{} // closed by Close
	once   sync.Once
}

// NewSyncBuf returns an empty SyncBuf.
func NewSyncBuf() *SyncBuf { return &SyncBuf{Closed: make(chan struct{})} }

func (b *SyncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Close marks the buffer closed; it is idempotent.
func (b *SyncBuf) Close() error {
	b.once.Do(func() { close(b.Closed) })
	return nil
}

func (b *SyncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// IsClosed reports whether Close was called.
func (b *SyncBuf) IsClosed() bool {
	select {
	case <-b.Closed:
		return true
	default:
		return false
	}
}

// BlockingWriter blocks every Write until Release is closed.
type BlockingWriter struct {
	Release chan struct{}
	Closed  chan struct{} // closed by Close
	once    sync.Once
}

// NewBlockingWriter returns a BlockingWriter.
func NewBlockingWriter() *BlockingWriter {
	return &BlockingWriter{Release: make(chan struct{}), Closed: make(chan struct{})}
}

func (w *BlockingWriter) Write(p []byte) (int, error) {
	<-w.Release
	return len(p), nil
}

// Close marks the writer closed; it is idempotent.
func (w *BlockingWriter) Close() error {
	w.once.Do(func() { close(w.Closed) })
	return nil
}

// NopWriteCloser is a Writer with a Close that does nothing.
type NopWriteCloser struct{ io.Writer }

// Close does nothing.
func (NopWriteCloser) Close() error { return nil }
