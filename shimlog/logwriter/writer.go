package logwriter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cri-containerd/cri-containerd/crilog"
)

// DefaultDrainTimeout bounds how long the writer keeps reading for the end of
// the output once it is asked to stop (SIGTERM from the shim). The runc shim
// kills the writer 12 s after SIGTERM.
const DefaultDrainTimeout = 8 * time.Second

const (
	copyBufSize     = 32 << 10
	requestTimeout  = 10 * time.Second
	shutdownTimeout = 2 * time.Second
)

// Options configure one log writer.
type Options struct {
	// LogPath is the CRI log file (its directory must exist); empty: the
	// output is not logged, only served to attached clients.
	LogPath string
	// MaxLineSize splits longer lines into partial records; <= 0: no limit.
	MaxLineSize int
	// ControlPath is the control socket (its directory must exist).
	ControlPath string
	// TTY: the container has a terminal; only stdout carries output.
	TTY bool
	// AttachBufferSize is how many bytes of one stream may be queued for one
	// attached client (default crilog.DefaultAttachBufferSize).
	AttachBufferSize int
	// DrainTimeout: see DefaultDrainTimeout (<= 0: the default).
	DrainTimeout time.Duration
	// Now stamps the records (default: time.Now).
	Now func() time.Time
	// Logf receives the writer's diagnostics (default: none; the shim gives
	// the writer no stderr).
	Logf func(format string, args ...any)
	// ErrorsPath is a file in which the writer keeps the number of log
	// records it could not write (see WriteErrorCount); empty: not kept.
	// The daemon reads it for its log write error metric, also after the
	// writer has exited and after a daemon restart.
	ErrorsPath string
	// ErrorsSyncInterval is the minimum time between two updates of
	// ErrorsPath while errors go on (<= 0: DefaultErrorsSyncInterval); the
	// final count is written before the writer reports that it is done.
	ErrorsSyncInterval time.Duration
}

// DefaultErrorsSyncInterval: see Options.ErrorsSyncInterval.
const DefaultErrorsSyncInterval = time.Second

// writer is one running log writer.
type writer struct {
	opts    Options
	logFile *crilog.LogFile
	streams []*stream
	done    chan struct{} // closed once the output has ended and the log is closed

	writeErrors atomic.Int64
	reopens     atomic.Int64
	errorsDirty chan struct{} // signalled when writeErrors grows (capacity 1)

	connsMu sync.Mutex
	conns   map[net.Conn]struct{}
	connsWG sync.WaitGroup
}

type stream struct {
	logf   func(format string, args ...any)
	name   crilog.Stream
	r      io.ReadCloser
	fan    *crilog.Fanout
	logger *crilog.CRILogger
	bytes  atomic.Int64
}

// countingSink counts the records the log file could not take.
type countingSink struct {
	lf *crilog.LogFile
	w  *writer
}

func (s countingSink) Write(p []byte) (int, error) {
	n, err := s.lf.Write(p)
	if err != nil {
		s.w.writeErrors.Add(1)
		select {
		case s.w.errorsDirty <- struct{}{}:
		default:
		}
	}
	return n, err
}

// Run runs a log writer until the container output has ended: stdout and
// stderr are the container's output pipes (stderr may be nil, and is closed
// unused with TTY), ready (may be nil) receives one byte and is closed once
// the writer is ready. When ctx is done (SIGTERM) the writer reads on until
// end of file for at most DrainTimeout, then stops. Run returns an error only
// when it cannot start (the log file cannot be opened, the socket cannot
// listen).
func Run(ctx context.Context, opts Options, stdout, stderr io.ReadCloser, ready io.WriteCloser) error {
	if opts.ControlPath == "" {
		return errors.New("shimlog: no control socket path")
	}
	if stdout == nil {
		return errors.New("shimlog: no stdout")
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.ErrorsSyncInterval <= 0 {
		opts.ErrorsSyncInterval = DefaultErrorsSyncInterval
	}
	w := &writer{opts: opts, done: make(chan struct{}), conns: map[net.Conn]struct{}{}, errorsDirty: make(chan struct{}, 1)}
	if opts.LogPath != "" {
		lf, err := crilog.OpenLogFile(opts.LogPath)
		if err != nil {
			return fmt.Errorf("shimlog: %w", err)
		}
		w.logFile = lf
	}
	ln, err := listen(opts.ControlPath)
	if err != nil {
		if w.logFile != nil {
			_ = w.logFile.Close()
		}
		return fmt.Errorf("shimlog: %w", err)
	}

	w.streams = append(w.streams, w.newStream(crilog.Stdout, stdout))
	if stderr != nil {
		if opts.TTY {
			_ = stderr.Close()
		} else {
			w.streams = append(w.streams, w.newStream(crilog.Stderr, stderr))
		}
	}
	var copies sync.WaitGroup
	for _, s := range w.streams {
		copies.Go(func() { s.copy() })
	}
	copied := make(chan struct{})
	go func() {
		copies.Wait()
		close(copied)
	}()

	serveDone := make(chan struct{})
	go func() {
		defer close(serveDone)
		w.serve(ln)
	}()
	syncStop, syncDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(syncDone)
		w.syncErrors(syncStop)
	}()

	if ready != nil {
		if _, err := ready.Write([]byte{1}); err != nil {
			w.opts.Logf("writing the ready byte: %v", err)
		}
		_ = ready.Close()
	}
	opts.Logf("ready: log %q, control %q, tty %v", opts.LogPath, opts.ControlPath, opts.TTY)

	select {
	case <-copied:
	case <-ctx.Done():
		opts.Logf("asked to stop, draining the output for at most %v", opts.DrainTimeout)
		t := time.NewTimer(opts.DrainTimeout)
		select {
		case <-copied:
		case <-t.C:
			opts.Logf("output did not end within %v, closing the pipes", opts.DrainTimeout)
			for _, s := range w.streams {
				_ = s.r.Close()
			}
			<-copied
		}
		t.Stop()
	}

	if w.logFile != nil {
		if err := w.logFile.Close(); err != nil {
			opts.Logf("closing the log file: %v", err)
		}
	}
	// The final count is on disk before anyone is told the output ended.
	close(syncStop)
	<-syncDone
	close(w.done)
	_ = ln.Close()
	<-serveDone
	if err := os.Remove(opts.ControlPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		opts.Logf("removing the control socket %s: %v", opts.ControlPath, err)
	}
	// Attached clients get what is queued for them; waiters get their answer.
	conns := make(chan struct{})
	go func() {
		w.connsWG.Wait()
		close(conns)
	}()
	select {
	case <-conns:
	case <-time.After(shutdownTimeout):
		w.connsMu.Lock()
		for c := range w.conns {
			_ = c.Close()
		}
		w.connsMu.Unlock()
		<-conns
	}
	opts.Logf("finished")
	return nil
}

func (w *writer) newStream(name crilog.Stream, r io.ReadCloser) *stream {
	s := &stream{logf: w.opts.Logf, name: name, r: r, fan: crilog.NewFanout(w.opts.AttachBufferSize)}
	if w.logFile != nil {
		s.logger = crilog.NewCRILogger(countingSink{w.logFile, w}, name, w.opts.MaxLineSize, crilog.WithClock(w.opts.Now))
	}
	return s
}

// copy logs and fans out one stream until end of file (or until its pipe is
// closed), then writes a trailing incomplete line as a partial record.
func (s *stream) copy() {
	buf := make([]byte, copyBufSize)
	for {
		n, err := s.r.Read(buf)
		if n > 0 {
			s.bytes.Add(int64(n))
			if s.logger != nil {
				_, _ = s.logger.Write(buf[:n])
			}
			s.fan.Publish(buf[:n])
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				s.logf("reading container %s: %v", s.name, err)
			}
			break
		}
	}
	if s.logger != nil {
		_ = s.logger.Close()
	}
	s.fan.Close()
	_ = s.r.Close()
}

// syncErrors keeps Options.ErrorsPath up to date: at most once per
// ErrorsSyncInterval while errors go on, and once more when stop is closed
// if the count changed since.
func (w *writer) syncErrors(stop <-chan struct{}) {
	if w.opts.ErrorsPath == "" {
		return
	}
	var written int64
	flush := func() {
		n := w.writeErrors.Load()
		if n == written {
			return
		}
		if err := writeErrorCount(w.opts.ErrorsPath, n); err != nil {
			w.opts.Logf("recording the log write error count in %s: %v", w.opts.ErrorsPath, err)
			return
		}
		written = n
	}
	for {
		select {
		case <-stop:
			flush()
			return
		case <-w.errorsDirty:
			flush()
		}
		t := time.NewTimer(w.opts.ErrorsSyncInterval)
		select {
		case <-stop:
			t.Stop()
			flush()
			return
		case <-t.C:
		}
	}
}

func (w *writer) status() *Status {
	st := &Status{
		Pid:         os.Getpid(),
		LogPath:     w.opts.LogPath,
		TTY:         w.opts.TTY,
		WriteErrors: w.writeErrors.Load(),
		Reopens:     w.reopens.Load(),
	}
	for _, s := range w.streams {
		switch s.name {
		case crilog.Stdout:
			st.StdoutBytes = s.bytes.Load()
		case crilog.Stderr:
			st.StderrBytes = s.bytes.Load()
		}
	}
	select {
	case <-w.done:
		st.Done = true
	default:
	}
	return st
}

func (w *writer) serve(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				w.opts.Logf("accepting a control connection: %v", err)
			}
			return
		}
		w.connsMu.Lock()
		w.conns[conn] = struct{}{}
		w.connsWG.Add(1)
		w.connsMu.Unlock()
		go func() {
			defer func() {
				_ = conn.Close()
				w.connsMu.Lock()
				delete(w.conns, conn)
				w.connsMu.Unlock()
				w.connsWG.Done()
			}()
			w.handle(conn)
		}()
	}
}

func (w *writer) handle(conn net.Conn) {
	_ = conn.SetReadDeadline(time.Now().Add(requestTimeout))
	br := bufio.NewReaderSize(conn, 512)
	line, err := readLine(br)
	if err != nil {
		w.opts.Logf("reading a control request: %v", err)
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		_ = writeResponse(conn, response{Error: fmt.Sprintf("bad request: %v", err)})
		return
	}
	switch req.Op {
	case OpStatus:
		_ = writeResponse(conn, response{Status: w.status()})
	case OpReopen:
		var resp response
		if w.logFile != nil {
			if err := w.logFile.Reopen(); err != nil {
				resp.Error = err.Error()
			} else {
				w.reopens.Add(1)
			}
		}
		_ = writeResponse(conn, resp)
	case OpWait:
		gone := clientGone(br)
		select {
		case <-w.done:
			_ = writeResponse(conn, response{Status: w.status()})
		case <-gone:
		}
	case OpAttach:
		w.attach(conn, br, req)
	default:
		_ = writeResponse(conn, response{Error: fmt.Sprintf("unknown operation %q", req.Op)})
	}
}

// attach streams the output to conn until the output ends, the client goes
// away or falls too far behind.
func (w *writer) attach(conn net.Conn, br *bufio.Reader, req request) {
	// Subscribed before the response is sent (frames wait for it on fc.mu):
	// once the client has the response, it misses no output, e.g. what its
	// own stdin makes the container print.
	fc := &frameConn{c: conn}
	fc.mu.Lock()
	var subs []*crilog.Subscription
	for _, s := range w.streams {
		switch {
		case s.name == crilog.Stdout && req.Stdout:
			subs = append(subs, s.fan.Subscribe(fc.writer(frameStdout)))
		case s.name == crilog.Stderr && req.Stderr:
			subs = append(subs, s.fan.Subscribe(fc.writer(frameStderr)))
		}
	}
	err := writeResponse(conn, response{})
	fc.mu.Unlock()
	if err != nil {
		for _, sub := range subs {
			sub.Cancel(err)
		}
		return
	}
	gone := clientGone(br)
	for _, sub := range subs {
		select {
		case <-sub.Done():
		case <-gone:
			for _, sub := range subs {
				sub.Cancel(errors.New("attached client went away"))
			}
			return
		}
	}
	for _, sub := range subs {
		if err := sub.Err(); err != nil {
			w.opts.Logf("attached client detached: %v", err)
		}
	}
}

// clientGone returns a channel closed when the client closes its side.
func clientGone(br *bufio.Reader) <-chan struct{} {
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		_, _ = io.Copy(io.Discard, br)
	}()
	return gone
}

func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxRequestSize {
			return nil, fmt.Errorf("request longer than %d bytes", maxRequestSize)
		}
		if err == nil {
			return bytes.TrimSuffix(line, []byte("\n")), nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

func writeResponse(w io.Writer, r response) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// frameConn writes the frames of every stream of one attach connection.
type frameConn struct {
	mu sync.Mutex
	c  net.Conn
}

func (f *frameConn) writer(stream byte) io.WriteCloser { return frameWriter{f, stream} }

type frameWriter struct {
	fc     *frameConn
	stream byte
}

func (w frameWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := p
		if len(chunk) > maxFrameSize {
			chunk = chunk[:maxFrameSize]
		}
		var hdr [frameHeaderSize]byte
		writeFrameHeader(hdr[:], w.stream, len(chunk))
		bufs := net.Buffers{hdr[:], chunk}
		w.fc.mu.Lock()
		_, err := bufs.WriteTo(w.fc.c)
		w.fc.mu.Unlock()
		if err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// Close does nothing: the connection is closed by its handler once every
// stream of the client has ended.
func (w frameWriter) Close() error { return nil }
