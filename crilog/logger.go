package crilog

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"time"
)

// TimestampFormat is the timestamp format of CRI log records.
const TimestampFormat = time.RFC3339Nano

// Stream names an output stream of a container in a CRI log record. The values
// are those of the CRI (runtimeapi.LogStreamType).
type Stream string

// Streams.
const (
	Stdout Stream = "stdout"
	Stderr Stream = "stderr"
)

// Tag is the tag of a CRI log record. The values are those of the CRI
// (runtimeapi.LogTag).
type Tag string

// Tags.
const (
	// TagPartial marks a record that is not the end of a line.
	TagPartial Tag = "P"
	// TagFull marks the record that ends a line.
	TagFull Tag = "F"
)

// CRILogger formats one output stream (stdout or stderr) of a container into
// CRI log records written to a sink. It is an io.WriteCloser; Write never
// fails because of the sink (errors are logged and the record is dropped) so
// that the container output keeps being drained, as containerd does.
//
// The sink receives exactly one Write call per record. When several loggers
// share a sink (stdout and stderr of a container), the sink must be safe for
// concurrent use and write each call atomically, as [LogFile] does.
//
// A CRILogger is safe for concurrent use, but concurrent Writes to one stream
// make no sense: the content would interleave.
type CRILogger struct {
	mu      sync.Mutex
	sink    io.Writer
	stream  Stream
	maxLen  int
	now     func() time.Time
	pending []byte // bytes of the current line not yet written (never contains '\n')
	record  []byte // reusable record buffer
	closed  bool
	onError func(Stream, error) // told of each record the sink refused; nil: none
}

// LoggerOption customizes a CRILogger.
type LoggerOption func(*CRILogger)

// WithClock sets the clock used for record timestamps (default: time.Now).
func WithClock(now func() time.Time) LoggerOption {
	return func(l *CRILogger) {
		if now != nil {
			l.now = now
		}
	}
}

// WithErrorHandler makes the logger call f (synchronously, under the logger's
// lock) with each error of the sink; the record is dropped either way.
// Without it, sink errors are dropped silently.
func WithErrorHandler(f func(Stream, error)) LoggerOption {
	return func(l *CRILogger) { l.onError = f }
}

// NewCRILogger returns a logger writing the records of stream to sink. Lines
// longer than maxLineSize bytes are split into partial records; maxLineSize <= 0
// means no limit.
func NewCRILogger(sink io.Writer, stream Stream, maxLineSize int, opts ...LoggerOption) *CRILogger {
	l := &CRILogger{
		sink:   sink,
		stream: stream,
		maxLen: maxLineSize,
		now:    time.Now,
	}
	if l.maxLen < 0 {
		l.maxLen = 0
	}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Write consumes container output. Complete lines are written as records at
// once; an incomplete line is kept until its newline arrives, the maximum line
// size is exceeded or the logger is closed. It returns len(p), nil unless the
// logger is closed.
func (l *CRILogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, fmt.Errorf("writing %s log: %w", l.stream, ErrClosed)
	}
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.bufferPartial(p)
			break
		}
		if len(l.pending) == 0 {
			l.writeLine(trimCR(p[:i]))
		} else {
			l.pending = append(l.pending, p[:i]...)
			l.writeLine(trimCR(l.pending))
			l.pending = l.pending[:0]
		}
		p = p[i+1:]
	}
	return n, nil
}

// Close writes the content buffered without a newline as a partial record and
// stops the logger. It does not close the sink. Close is idempotent.
func (l *CRILogger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	p := l.pending
	for l.maxLen > 0 && len(p) > l.maxLen {
		l.writeRecord(TagPartial, p[:l.maxLen])
		p = p[l.maxLen:]
	}
	if len(p) > 0 {
		l.writeRecord(TagPartial, p)
	}
	l.pending = nil
	l.closed = true
	l.record = nil
	return nil
}

// bufferPartial keeps b (no newline) as part of the current line, writing
// partial records while the line is longer than the maximum line size. A
// trailing '\r' is not counted yet: with a following '\n' it is dropped, so
// the records do not depend on how the output was cut into writes.
func (l *CRILogger) bufferPartial(b []byte) {
	l.pending = append(l.pending, b...)
	if l.maxLen <= 0 {
		return
	}
	off := 0
	for {
		n := len(l.pending) - off
		if l.pending[len(l.pending)-1] == '\r' {
			n--
		}
		if n <= l.maxLen {
			break
		}
		l.writeRecord(TagPartial, l.pending[off:off+l.maxLen])
		off += l.maxLen
	}
	if off > 0 {
		l.pending = append(l.pending[:0], l.pending[off:]...)
	}
}

// writeLine writes a complete line (without its newline): partial records of
// maxLen bytes while it is longer, then a full record.
func (l *CRILogger) writeLine(line []byte) {
	for l.maxLen > 0 && len(line) > l.maxLen {
		l.writeRecord(TagPartial, line[:l.maxLen])
		line = line[l.maxLen:]
	}
	l.writeRecord(TagFull, line)
}

func (l *CRILogger) writeRecord(tag Tag, content []byte) {
	r := l.now().AppendFormat(l.record[:0], TimestampFormat)
	r = append(r, ' ')
	r = append(r, l.stream...)
	r = append(r, ' ')
	r = append(r, tag...)
	r = append(r, ' ')
	r = append(r, content...)
	r = append(r, '\n')
	l.record = r
	if _, err := l.sink.Write(r); err != nil && l.onError != nil {
		l.onError(l.stream, err)
	}
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}
