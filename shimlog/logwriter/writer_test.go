package logwriter

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/cri-containerd/cri-containerd/crilog/crilogtest"
)

const testTimeout = 20 * time.Second

var testTime = time.Date(2026, 12, 4, 10, 0, 0, 123, time.UTC)

// harness runs a writer on fresh pipes, as the shim would.
type harness struct {
	t        *testing.T
	opts     Options
	stdoutW  *os.File
	stderrW  *os.File
	cancel   context.CancelFunc
	result   chan error
	readyByt chan []byte
	client   Client
}

func startWriter(t *testing.T, opts Options) *harness {
	t.Helper()
	dir := t.TempDir()
	if opts.ControlPath == "" {
		opts.ControlPath = filepath.Join(dir, "log.sock")
	}
	if opts.LogPath == "-" {
		opts.LogPath = ""
	} else if opts.LogPath == "" {
		opts.LogPath = filepath.Join(dir, "c.log")
	}
	if opts.Now == nil {
		opts.Now = clocktesting.NewFakePassiveClock(testTime).Now
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, opts: opts, stdoutW: outW, stderrW: errW, cancel: cancel,
		result: make(chan error, 1), readyByt: make(chan []byte, 1), client: Client{Path: opts.ControlPath}}
	go func() { h.result <- Run(ctx, opts, outR, errR, readyW) }()
	go func() {
		b, _ := io.ReadAll(readyR)
		h.readyByt <- b
	}()
	select {
	case b := <-h.readyByt:
		if len(b) != 1 {
			err := <-h.result
			t.Fatalf("writer not ready (ready pipe gave %q): %v", b, err)
		}
	case <-time.After(testTimeout):
		t.Fatal("writer never became ready")
	}
	t.Cleanup(func() {
		cancel()
		_ = outW.Close()
		_ = errW.Close()
		select {
		case <-h.result:
		case <-time.After(testTimeout):
			t.Error("writer did not stop")
		}
	})
	return h
}

func (h *harness) write(f *os.File, s string) {
	h.t.Helper()
	if _, err := f.WriteString(s); err != nil {
		h.t.Fatal(err)
	}
}

// finish closes the write ends (the container exited and the shim deleted
// the task) and waits for Run to return.
func (h *harness) finish() {
	h.t.Helper()
	_ = h.stdoutW.Close()
	_ = h.stderrW.Close()
	h.wait()
}

func (h *harness) wait() {
	h.t.Helper()
	select {
	case err := <-h.result:
		if err != nil {
			h.t.Fatalf("Run: %v", err)
		}
		h.result <- nil
	case <-time.After(testTimeout):
		h.t.Fatal("Run did not return")
	}
}

func (h *harness) log() string {
	h.t.Helper()
	b, err := os.ReadFile(h.opts.LogPath)
	if err != nil {
		h.t.Fatal(err)
	}
	return string(b)
}

// waitLog waits until the log holds n records.
func (h *harness) waitLog(path string, n int) string {
	h.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		b, _ := os.ReadFile(path)
		if strings.Count(string(b), "\n") >= n {
			return string(b)
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("log %s has %d records, want %d:\n%s", path, strings.Count(string(b), "\n"), n, b)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func rec(stream, tag, content string) string {
	return testTime.Format(time.RFC3339Nano) + " " + stream + " " + tag + " " + content + "\n"
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func TestWriterFormat(t *testing.T) {
	for _, tc := range []struct {
		name    string
		maxLine int
		tty     bool
		stdout  []string // successive writes
		stderr  []string
		want    []string // records of stdout (in order), then of stderr
	}{
		{name: "full lines", stdout: []string{"a\nb\n"}, want: []string{rec("stdout", "F", "a"), rec("stdout", "F", "b")}},
		{name: "crlf dropped", stdout: []string{"a\r\n"}, want: []string{rec("stdout", "F", "a")}},
		{name: "line across writes", stdout: []string{"ab", "cd", "\n"}, want: []string{rec("stdout", "F", "abcd")}},
		{name: "trailing partial at end", stdout: []string{"x\ny"}, want: []string{rec("stdout", "F", "x"), rec("stdout", "P", "y")}},
		{name: "long line split", maxLine: 4, stdout: []string{"abcdefghij\n"},
			want: []string{rec("stdout", "P", "abcd"), rec("stdout", "P", "efgh"), rec("stdout", "F", "ij")}},
		{name: "long line split across writes", maxLine: 4, stdout: []string{"abc", "defgh", "ij\n"},
			want: []string{rec("stdout", "P", "abcd"), rec("stdout", "P", "efgh"), rec("stdout", "F", "ij")}},
		{name: "empty line", stdout: []string{"\n"}, want: []string{rec("stdout", "F", "")}},
		{name: "stderr", stdout: []string{"o\n"}, stderr: []string{"e\n"},
			want: []string{rec("stdout", "F", "o"), rec("stderr", "F", "e")}},
		{name: "tty logs stdout only", tty: true, stdout: []string{"t\n"}, stderr: []string{"ignored\n"},
			want: []string{rec("stdout", "F", "t")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startWriter(t, Options{MaxLineSize: tc.maxLine, TTY: tc.tty})
			for _, s := range tc.stdout {
				h.write(h.stdoutW, s)
			}
			for _, s := range tc.stderr {
				if tc.tty {
					_, _ = h.stderrW.WriteString(s) // fd 4 is closed with a TTY: EPIPE
					continue
				}
				h.write(h.stderrW, s)
			}
			h.finish()
			got := h.log()
			// stdout and stderr records may interleave: compare per stream.
			var gotOut, gotErr, wantOut, wantErr []string
			split := func(recs []string, out, errs *[]string) {
				for _, r := range recs {
					if strings.Contains(r, " stderr ") {
						*errs = append(*errs, r)
					} else {
						*out = append(*out, r)
					}
				}
			}
			split(strings.SplitAfter(got, "\n"), &gotOut, &gotErr)
			split(tc.want, &wantOut, &wantErr)
			if gotOut[len(gotOut)-1] == "" {
				gotOut = gotOut[:len(gotOut)-1]
			}
			if strings.Join(gotOut, "") != strings.Join(wantOut, "") || strings.Join(gotErr, "") != strings.Join(wantErr, "") {
				t.Fatalf("log:\n%s\nwant:\n%s", got, strings.Join(tc.want, ""))
			}
		})
	}
}

func TestWriterNoLogPathStillServes(t *testing.T) {
	h := startWriter(t, Options{LogPath: "-"})
	st, err := h.client.Status(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.LogPath != "" || st.Done {
		t.Fatalf("status %+v", st)
	}
	h.write(h.stdoutW, "x\n")
	h.finish()
}

func TestWriterStartErrors(t *testing.T) {
	dir := t.TempDir()
	outR, outW, _ := os.Pipe()
	defer outW.Close()
	defer outR.Close()
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"no control path", Options{LogPath: filepath.Join(dir, "a.log")}},
		{"log dir missing", Options{LogPath: filepath.Join(dir, "nodir", "a.log"), ControlPath: filepath.Join(dir, "s1")}},
		{"control dir missing", Options{LogPath: filepath.Join(dir, "b.log"), ControlPath: filepath.Join(dir, "nodir", "s")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			readyR, readyW, _ := os.Pipe()
			defer readyR.Close()
			if err := Run(context.Background(), tc.opts, outR, nil, readyW); err == nil {
				t.Fatal("Run succeeded")
			}
			_ = readyW.Close()
			if b, _ := io.ReadAll(readyR); len(b) != 0 {
				t.Fatalf("ready byte written on failure: %q", b)
			}
		})
	}
}

func TestWriterStatusCountsBytes(t *testing.T) {
	h := startWriter(t, Options{})
	h.write(h.stdoutW, "12345\n")
	h.write(h.stderrW, "12\n")
	h.waitLog(h.opts.LogPath, 2)
	st, err := h.client.Status(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.StdoutBytes != 6 || st.StderrBytes != 3 || st.Pid != os.Getpid() {
		t.Fatalf("status %+v", st)
	}
}

// TestWriterReopenLosesNoLine rotates the log the way kubelet does (rename,
// then ReopenContainerLog) while lines are being written: every line is in
// exactly one of the files, in order.
func TestWriterReopenLosesNoLine(t *testing.T) {
	h := startWriter(t, Options{Now: clocktesting.NewFakePassiveClock(testTime).Now})
	const lines = 20000
	go func() {
		w := bufio.NewWriterSize(h.stdoutW, 4096)
		for i := range lines {
			fmt.Fprintf(w, "line %d\n", i)
		}
		_ = w.Flush()
		_ = h.stdoutW.Close()
		_ = h.stderrW.Close()
	}()
	var rotated []string
	ctx := ctxT(t)
	for i := 0; i < 10; i++ {
		time.Sleep(time.Millisecond)
		name := fmt.Sprintf("%s.%d", h.opts.LogPath, i)
		if err := os.Rename(h.opts.LogPath, name); err != nil {
			t.Fatal(err)
		}
		rotated = append(rotated, name)
		if err := h.client.Reopen(ctx); err != nil {
			if errors.Is(err, ErrNotRunning) || strings.Contains(err.Error(), "closed") {
				break // the output ended before this rotation: the file is the last one
			}
			t.Fatalf("reopen %d: %v", i, err)
		}
	}
	h.wait()
	var all bytes.Buffer
	for _, f := range append(rotated, h.opts.LogPath) {
		b, err := os.ReadFile(f)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		all.Write(b)
	}
	next := 0
	for _, r := range strings.Split(strings.TrimSuffix(all.String(), "\n"), "\n") {
		want := rec("stdout", "F", "line "+strconv.Itoa(next))
		if r+"\n" != want {
			t.Fatalf("record %q, want line %d", r, next)
		}
		next++
	}
	if next != lines {
		t.Fatalf("%d lines in the rotated files, want %d", next, lines)
	}
}

// syncBuffer is a WriteCloser collecting what it receives.
type syncBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	closed bool
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// attached starts an attach and waits until the writer has subscribed it.
func attached(t *testing.T, h *harness, stdout, stderr io.Writer) chan error {
	t.Helper()
	res := make(chan error, 1)
	go func() { res <- h.client.Attach(context.Background(), stdout, stderr) }()
	// The subscription exists once a probe written after it is received.
	probe := fmt.Sprintf("probe-%p\n", res)
	if stdout == nil {
		t.Fatal("attached needs stdout")
	}
	deadline := time.Now().Add(testTimeout)
	for !strings.Contains(stdout.(fmt.Stringer).String(), probe) {
		if time.Now().After(deadline) {
			t.Fatal("attach never received its probe")
		}
		h.write(h.stdoutW, probe)
		time.Sleep(10 * time.Millisecond)
	}
	return res
}

func TestWriterAttachFanOut(t *testing.T) {
	h := startWriter(t, Options{})
	out1, err1, out2 := &syncBuffer{}, &syncBuffer{}, &syncBuffer{}
	res1 := attached(t, h, out1, err1)
	res2 := attached(t, h, out2, nil)
	h.write(h.stdoutW, "hello\n")
	h.write(h.stderrW, "oops\n")
	crilogtest.Eventually(t, "stdout on both clients", func() bool {
		return strings.HasSuffix(out1.String(), "hello\n") && strings.HasSuffix(out2.String(), "hello\n")
	})
	crilogtest.Eventually(t, "stderr on the first client", func() bool { return err1.String() == "oops\n" })
	h.finish()
	for i, res := range []chan error{res1, res2} {
		select {
		case err := <-res:
			if err != nil {
				t.Fatalf("attach %d: %v", i, err)
			}
		case <-time.After(testTimeout):
			t.Fatalf("attach %d did not end with the output", i)
		}
	}
	if strings.Contains(out2.String(), "oops") {
		t.Fatal("stderr delivered to a client that did not ask for it")
	}
	if !strings.Contains(h.log(), rec("stdout", "F", "hello")) || !strings.Contains(h.log(), rec("stderr", "F", "oops")) {
		t.Fatalf("log:\n%s", h.log())
	}
}

func TestWriterAttachAfterEndReturnsAtOnce(t *testing.T) {
	h := startWriter(t, Options{})
	h.stdoutW.Close()
	h.stderrW.Close()
	h.wait()
	err := h.client.Attach(ctxT(t), &syncBuffer{}, nil)
	if !errors.Is(err, ErrNotRunning) {
		t.Fatalf("attach after the writer exited: %v, want ErrNotRunning", err)
	}
}

func TestWriterAttachCancel(t *testing.T) {
	h := startWriter(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	res := make(chan error, 1)
	go func() { res <- h.client.Attach(ctx, out, nil) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-res:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("attach: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("attach did not end with its context")
	}
	// The writer goes on logging.
	h.write(h.stdoutW, "after\n")
	h.waitLog(h.opts.LogPath, 1)
}

// blockingWriter never returns from Write until released.
type blockingWriter struct {
	syncBuffer
	release chan struct{}
	once    sync.Once
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	n, err := b.syncBuffer.Write(p)
	if strings.Contains(string(p), "block\n") {
		<-b.release
	}
	return n, err
}

// TestWriterSlowAttacherDoesNotBlockLog: a client that stops reading never
// stops the log; it is detached once it is too far behind.
func TestWriterSlowAttacherDoesNotBlockLog(t *testing.T) {
	h := startWriter(t, Options{AttachBufferSize: 64 << 10})
	bw := &blockingWriter{release: make(chan struct{})}
	defer bw.once.Do(func() { close(bw.release) })
	res := attached(t, h, bw, nil)
	h.write(h.stdoutW, "block\n")
	const lines = 5000 // ~ 500 KiB, far more than the queue and the socket buffers
	payload := strings.Repeat("x", 100)
	go func() {
		w := bufio.NewWriter(h.stdoutW)
		for i := range lines {
			fmt.Fprintf(w, "%d %s\n", i, payload)
		}
		_ = w.Flush()
	}()
	h.waitLog(h.opts.LogPath, lines+2)
	bw.once.Do(func() { close(bw.release) })
	select {
	case <-res:
	case <-time.After(testTimeout):
		t.Fatal("slow attach not detached")
	}
}

// TestWriterDrainsOnStop: SIGTERM from the shim (ctx done) while the pipes are
// still open: what is buffered is logged, the incomplete last line as a
// partial record, and Run returns within the drain timeout.
func TestWriterDrainsOnStop(t *testing.T) {
	h := startWriter(t, Options{DrainTimeout: 200 * time.Millisecond})
	h.write(h.stdoutW, "one\ntwo")
	h.cancel()
	h.wait()
	if got, want := h.log(), rec("stdout", "F", "one")+rec("stdout", "P", "two"); got != want {
		t.Fatalf("log:\n%s\nwant:\n%s", got, want)
	}
	if _, err := os.Stat(h.opts.ControlPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("control socket left behind: %v", err)
	}
}

// TestWriterStopWithClosedPipesIsImmediate: the shim closes the pipes, then
// sends SIGTERM: the writer ends as soon as the pipes are drained.
func TestWriterStopWithClosedPipesIsImmediate(t *testing.T) {
	h := startWriter(t, Options{DrainTimeout: time.Hour})
	h.write(h.stdoutW, "last\n")
	h.stdoutW.Close()
	h.stderrW.Close()
	h.cancel()
	h.wait()
	if got := h.log(); got != rec("stdout", "F", "last") {
		t.Fatalf("log:\n%s", got)
	}
}

func TestWriterWait(t *testing.T) {
	h := startWriter(t, Options{})
	res := make(chan error, 1)
	go func() { res <- h.client.Wait(ctxT(t)) }()
	time.Sleep(20 * time.Millisecond)
	select {
	case err := <-res:
		t.Fatalf("wait returned before the output ended: %v", err)
	default:
	}
	h.write(h.stdoutW, "bye")
	h.finish()
	select {
	case err := <-res:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(testTimeout):
		t.Fatal("wait did not return")
	}
	if got := h.log(); got != rec("stdout", "P", "bye") {
		t.Fatalf("log when wait returned:\n%s", got)
	}
	// Once the writer is gone, Wait returns at once.
	if err := h.client.Wait(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.Status(ctxT(t)); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("status of an exited writer: %v", err)
	}
}

func TestWriterWaitTimeout(t *testing.T) {
	h := startWriter(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.client.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait: %v", err)
	}
}

func TestWriterLongControlPath(t *testing.T) {
	dir := t.TempDir()
	long := filepath.Join(dir, strings.Repeat("d", 60), strings.Repeat("e", 64))
	if err := os.MkdirAll(long, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(long, "log.sock")
	if len(path) <= maxSunPath {
		t.Fatalf("path %q not long enough", path)
	}
	h := startWriter(t, Options{ControlPath: path})
	if _, err := h.client.Status(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v %v", fi, err)
	}
	h.finish()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("control socket left behind: %v", err)
	}
}

func TestWriterBadRequests(t *testing.T) {
	h := startWriter(t, Options{})
	_, err := h.client.call(ctxT(t), request{Op: "nope"})
	if err == nil || !strings.Contains(err.Error(), "unknown operation") {
		t.Fatalf("unknown op: %v", err)
	}
}

func TestWriterReopenFailureKeepsLogging(t *testing.T) {
	h := startWriter(t, Options{})
	// Replace the log path by a directory: the reopen fails, the old file stays in use.
	if err := os.Rename(h.opts.LogPath, h.opts.LogPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(h.opts.LogPath, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := h.client.Reopen(ctxT(t)); err == nil {
		t.Fatal("reopen onto a directory succeeded")
	}
	h.write(h.stdoutW, "still\n")
	h.waitLog(h.opts.LogPath+".1", 1)
}

func TestErrorCountFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), ErrorsFileName)
	if n, err := ReadErrorCount(p); n != 0 || err != nil {
		t.Fatalf("missing file: %d, %v", n, err)
	}
	for _, n := range []int64{1, 42, 7 << 40} {
		if err := writeErrorCount(p, n); err != nil {
			t.Fatal(err)
		}
		if got, err := ReadErrorCount(p); got != n || err != nil {
			t.Fatalf("read %d, %v; want %d", got, err, n)
		}
	}
	if err := os.WriteFile(p, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadErrorCount(p); err == nil {
		t.Fatal("junk read as a count")
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
}
