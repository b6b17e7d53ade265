package containerio

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"
	"k8s.io/klog/v2/textlogger"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/cri-containerd/cri-containerd/crilog"
	"github.com/cri-containerd/cri-containerd/crilog/crilogtest"
)

type fakeRemote struct {
	mu                sync.Mutex
	newIO, attachIO   int
	attaches, reopens int
	closed            bool
	waitResult        bool
	uri               string
}

func (f *fakeRemote) NewTaskIO() (cio.IO, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.newIO++
	return cio.NullIO("")
}

func (f *fakeRemote) AttachTaskIO(fifos *cio.FIFOSet) (cio.IO, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attachIO++
	f.uri = fifos.Stdout
	return cio.NullIO("")
}

func (f *fakeRemote) Attach(context.Context, AttachOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attaches++
	return nil
}

func (f *fakeRemote) ReopenLog(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reopens++
	return nil
}

func (f *fakeRemote) Wait(time.Duration) bool { return f.waitResult }

func (f *fakeRemote) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func TestIsLogURI(t *testing.T) {
	for in, want := range map[string]bool{
		"binary:///run/x/cri-containerd-log-writer?--tty=false": true,
		"binary-v2:///bin/log":                    true,
		"file:///var/log/x":                       true,
		"/run/state/containers/abc/io/abc-stdout": false,
		"": false,
	} {
		if got := IsLogURI(in); got != want {
			t.Errorf("IsLogURI(%q) = %v", in, got)
		}
	}
}

func TestRemoteUsedForNewTasks(t *testing.T) {
	for _, tc := range []struct {
		name      string
		useRemote bool
		stdin     bool
		tty       bool
		want      bool
	}{
		{"shim mode", true, false, false, true},
		{"daemon mode", false, false, false, false},
		{"stdin keeps fifos", true, true, false, false},
		{"stdin with a terminal uses the remote", true, true, true, true},
		{"terminal", true, false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &fakeRemote{waitResult: true}
			c, err := New(Config{ID: "c", FIFODir: filepath.Join(t.TempDir(), "io"), LogPath: filepath.Join(t.TempDir(), "l"),
				Stdin: tc.stdin, Tty: tc.tty, Remote: r, UseRemote: tc.useRemote})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc.want {
				// No FIFO is opened: nothing waits for a shim.
				if _, err := c.Creator()("c"); err != nil {
					t.Fatal(err)
				}
				if err := c.ReopenLog(); err != nil {
					t.Fatal(err)
				}
				if err := c.Attach(context.Background(), AttachOptions{}); err != nil {
					t.Fatal(err)
				}
				if !c.Wait(time.Second) {
					t.Fatal("Wait")
				}
				select {
				case <-c.Done():
				default:
					t.Fatal("Done not closed after Wait")
				}
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
				if r.newIO != 1 || r.reopens != 1 || r.attaches != 1 || !r.closed {
					t.Fatalf("remote calls %+v", r)
				}
				return
			}
			if c.useRemoteForNew() {
				t.Fatal("remote used")
			}
		})
	}
}

func TestRemoteReattachFollowsTheTask(t *testing.T) {
	r := &fakeRemote{}
	// Daemon mode now, but the task was started in shim mode.
	c, err := New(Config{ID: "c", FIFODir: filepath.Join(t.TempDir(), "io"), Remote: r})
	if err != nil {
		t.Fatal(err)
	}
	uri := "binary:///x/cri-containerd-log-writer?--control=%2Fx%2Flog.sock"
	if _, err := c.Attacher()(&cio.FIFOSet{Config: cio.Config{Stdout: uri, Stderr: uri}}); err != nil {
		t.Fatal(err)
	}
	if r.attachIO != 1 || r.uri != uri || c.activeRemote() == nil {
		t.Fatalf("remote not used: %+v", r)
	}
	if c.Wait(10 * time.Millisecond) {
		t.Fatal("Wait reported the end while the remote did not")
	}
	// Without a remote, such a task cannot be re-attached.
	c2, _ := New(Config{ID: "c2", FIFODir: filepath.Join(t.TempDir(), "io")})
	if _, err := c2.Attacher()(&cio.FIFOSet{Config: cio.Config{Stdout: uri}}); err == nil {
		t.Fatal("re-attached a log URI task without a remote")
	}
	if err := c.Close(); err != nil || !r.closed {
		t.Fatalf("close: %v %+v", err, r)
	}
	if err := c.ReopenLog(); !errors.Is(err, ErrClosed) && err != nil {
		t.Fatalf("reopen after close: %v", err)
	}
}

// countingRemote is a fakeRemote whose writer counts log write errors.
type countingRemote struct {
	fakeRemote
	mu   sync.Mutex
	errs int64
	fail error
}

func (f *countingRemote) LogWriteErrors() (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.errs, f.fail
}

func (f *countingRemote) add(n int64, fail error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs += n
	f.fail = fail
}

// newRemoteIO is the IO of container id whose log writer is the remote r,
// reporting its errors to rep, with its FIFOs created.
func newRemoteIO(t *testing.T, id string, r Remote, rep *LogErrorReporter) *ContainerIO {
	t.Helper()
	c, err := New(Config{ID: id, FIFODir: filepath.Join(t.TempDir(), "io"), LogPath: filepath.Join(t.TempDir(), "l"),
		Remote: r, UseRemote: true, LogErrors: rep})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Creator()(id); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRemoteLogWriteErrorsCounted: the log write errors of a shim-side writer
// are part of the reporter's Total (the daemon's metric) while its IO is
// open, are kept once it is closed, and are reported in the daemon's log at
// most once per container per interval; an unreadable count keeps the last
// one.
func TestRemoteLogWriteErrorsCounted(t *testing.T) {
	clk := testingclock.NewFakePassiveClock(testTime)
	var logBuf syncLogBuffer
	rep := &LogErrorReporter{Interval: time.Minute, Clock: clk,
		Logger: textlogger.NewLogger(textlogger.NewConfig(textlogger.Output(&logBuf)))}
	r1, r2 := &countingRemote{}, &countingRemote{}
	c1, c2 := newRemoteIO(t, "c1", r1, rep), newRemoteIO(t, "c2", r2, rep)
	if got := rep.Total(); got != 0 {
		t.Fatalf("Total = %v before any error", got)
	}
	// A daemon-side error counts too.
	crilog.NewCRILogger(&failingWriter{}, crilog.Stdout, 0, WithWriteErrors(rep.ForContainer("d"))).Write([]byte("x\n"))
	r1.add(5, nil)
	r2.add(2, nil)
	if got := rep.Total(); got != 8 {
		t.Fatalf("Total = %v, want 8", got)
	}
	r1.add(3, nil)
	if got := rep.Total(); got != 11 {
		t.Fatalf("Total = %v, want 11", got)
	}
	// Unreadable: the last count stays.
	r2.add(0, errors.New("unreadable"))
	if got := rep.Total(); got != 11 {
		t.Fatalf("Total = %v with an unreadable count, want 11", got)
	}
	r2.add(1, nil)
	// Closing the IO (the container exited) keeps its final count.
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	r1.add(100, nil) // no longer read
	if got := rep.Total(); got != 12 {
		t.Fatalf("Total = %v after close, want 12", got)
	}
	if err := c2.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := c2.Close(); err != nil {
		t.Fatal(err)
	}
	if got := rep.Total(); got != 12 {
		t.Fatalf("Total = %v after both closed, want 12", got)
	}
	// One report per container in the interval (c1, c2, and "d").
	reports := map[string]int{}
	for _, l := range strings.Split(logBuf.String(), "\n") {
		if strings.Contains(l, "Failed to write container log records") {
			for _, id := range []string{"c1", "c2", "d"} {
				if strings.Contains(l, `containerID="`+id+`"`) {
					reports[id]++
				}
			}
		}
	}
	if reports["c1"] != 1 || reports["c2"] != 1 || reports["d"] != 1 {
		t.Fatalf("reports %v, want one per container:\n%s", reports, logBuf.String())
	}
	// A nil reporter counts nothing and does not fail.
	var nilRep *LogErrorReporter
	if nilRep.Total() != 0 {
		t.Fatal("nil reporter total")
	}
	c3, err := New(Config{ID: "c3", FIFODir: filepath.Join(t.TempDir(), "io"), Remote: &countingRemote{errs: 4}, UseRemote: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c3.Creator()("c3"); err != nil {
		t.Fatal(err)
	}
	if err := c3.Close(); err != nil {
		t.Fatal(err)
	}
}

type syncLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncLogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncLogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ttyRemote is a Remote whose task IO is a log URI and whose Attach lasts
// until ctx is done, as the output of a running container.
type ttyRemote struct {
	fakeRemote
	subscribed chan struct{} // when not nil, Attach subscribes once it is closed
}

const ttyRemoteURI = "binary:///x/cri-containerd-log-writer?--tty=true"

func (f *ttyRemote) NewTaskIO() (cio.IO, error) {
	f.fakeRemote.NewTaskIO()
	return &fakeTaskIO{cio.Config{Stdout: ttyRemoteURI, Stderr: ttyRemoteURI, Terminal: true}}, nil
}

func (f *ttyRemote) Attach(ctx context.Context, opts AttachOptions) error {
	f.fakeRemote.Attach(ctx, opts)
	if f.subscribed != nil {
		select {
		case <-f.subscribed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if opts.Attached != nil {
		opts.Attached()
	}
	defer func() {
		for _, w := range []io.WriteCloser{opts.Stdout, opts.Stderr} {
			if w != nil {
				_ = w.Close()
			}
		}
	}()
	<-ctx.Done()
	return ctx.Err()
}

type fakeTaskIO struct{ cfg cio.Config }

func (f *fakeTaskIO) Config() cio.Config { return f.cfg }
func (f *fakeTaskIO) Cancel()            {}
func (f *fakeTaskIO) Wait()              {}
func (f *fakeTaskIO) Close() error       { return nil }

// TestRemoteTTYWithStdin: a container with stdin and a terminal hands its
// output to the Remote and keeps a stdin FIFO, written by the daemon: the
// attached client's stdin reaches it; the end of that stdin detaches the
// client (TTY) or, with StdinOnce and a non-TTY attach, closes the
// container's stdin while the output stays attached; Close closes the FIFO.
func TestRemoteTTYWithStdin(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "io")
	r := &ttyRemote{}
	c, err := New(Config{ID: "c", FIFODir: dir, LogPath: filepath.Join(t.TempDir(), "l"), Stdin: true, StdinOnce: true, Tty: true,
		Remote: r, UseRemote: true})
	if err != nil {
		t.Fatal(err)
	}
	tio, err := c.Creator()("c")
	if err != nil {
		t.Fatal(err)
	}
	cfg := tio.Config()
	if cfg.Stdout != ttyRemoteURI || cfg.Stdin != filepath.Join(dir, "c-stdin") || !cfg.Terminal || c.activeRemote() == nil {
		t.Fatalf("task IO config %+v", cfg)
	}
	// The shim's side of the stdin FIFO.
	shimIn, err := os.OpenFile(cfg.Stdin, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer shimIn.Close()
	got := make(chan string, 16)
	go func() {
		b := make([]byte, 64)
		for {
			n, err := shimIn.Read(b)
			if n > 0 {
				got <- string(b[:n])
			}
			if err != nil {
				close(got)
				return
			}
		}
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case s := <-got:
			if s != want {
				t.Fatalf("container stdin got %q, want %q", s, want)
			}
		case <-time.After(testTimeout):
			t.Fatalf("container stdin did not get %q", want)
		}
	}

	// TTY attach: the end of the client's stdin detaches it only.
	var out bytes.Buffer
	err = c.Attach(context.Background(), AttachOptions{Stdin: strings.NewReader("hello\n"), Stdout: crilogtest.NopWriteCloser{Writer: &out}, Tty: true,
		CloseStdin: func() error { t.Error("CloseStdin with a TTY attach"); return nil }})
	if err != nil {
		t.Fatalf("TTY attach: %v", err)
	}
	expect("hello\n")
	if !c.hasStdin() {
		t.Fatal("container stdin closed by the end of a TTY attach")
	}

	// A non-TTY attach with StdinOnce: the container's stdin is closed and
	// CloseStdin called, the output stays attached until ctx ends.
	ctx, cancel := context.WithCancel(context.Background())
	closed := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- c.Attach(ctx, AttachOptions{Stdin: strings.NewReader("once\n"), Stdout: crilogtest.NopWriteCloser{Writer: &out},
			CloseStdin: func() error { close(closed); return nil }})
	}()
	expect("once\n")
	crilogtest.WaitChan(t, "CloseStdin", closed)
	if c.hasStdin() {
		t.Fatal("container stdin still open after StdinOnce")
	}
	select {
	case err := <-done:
		t.Fatalf("attach ended with the client's stdin, with outputs: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	if err := waitErr(t, "attach", done); !errors.Is(err, context.Canceled) {
		t.Fatalf("attach after cancel: %v", err)
	}
	// The daemon's side of the FIFO is closed: the shim sees EOF.
	select {
	case _, ok := <-got:
		if ok {
			t.Fatal("unexpected stdin data")
		}
	case <-time.After(testTimeout):
		t.Fatal("the shim did not see the end of stdin")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if !r.closed {
		t.Fatal("remote not closed")
	}
}

// TestRemoteStdinReattach: after a restart, a task with a log URI and a
// stdin FIFO gets its stdin back when the shim still reads it, and none when
// it does not.
func TestRemoteStdinReattach(t *testing.T) {
	dir := t.TempDir()
	stdinPath := filepath.Join(dir, "c-stdin")
	if err := makeFIFOs(cio.Config{Stdin: stdinPath}); err != nil {
		t.Fatal(err)
	}
	set := &cio.FIFOSet{Config: cio.Config{Stdin: stdinPath, Stdout: ttyRemoteURI, Stderr: ttyRemoteURI, Terminal: true}}
	// No reader: the container's stdin was closed.
	c1, _ := New(Config{ID: "c", FIFODir: dir, Stdin: true, Tty: true, Remote: &ttyRemote{}})
	if _, err := c1.Attacher()(set); err != nil {
		t.Fatal(err)
	}
	if c1.hasStdin() || c1.Config().Stdin != "" {
		t.Fatalf("stdin without a reader: %v %+v", c1.hasStdin(), c1.Config())
	}
	_ = c1.Close()

	shimIn, err := os.OpenFile(stdinPath, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer shimIn.Close()
	c2, _ := New(Config{ID: "c", FIFODir: dir, Stdin: true, Tty: true, Remote: &ttyRemote{}})
	if _, err := c2.Attacher()(set); err != nil {
		t.Fatal(err)
	}
	if !c2.hasStdin() || c2.Config().Stdin != stdinPath {
		t.Fatalf("stdin with a reader: %v %+v", c2.hasStdin(), c2.Config())
	}
	if err := c2.writeStdin([]byte("x")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if n, err := shimIn.Read(b); err != nil || string(b[:n]) != "x" {
		t.Fatalf("read %q, %v", b[:n], err)
	}
	_ = c2.Close()
}

// TestRegressionRemoteAttachStdinBeforeOutput: attach to a shim-mode TTY
// container forwarded the client's stdin before the log writer had
// subscribed the client to the output, so the container's answer (a shell's
// echo and result) could be printed before and never reach the client
// (TestAttach/tty failed about once in five runs). Stdin now waits for the
// subscription.
func TestRegressionRemoteAttachStdinBeforeOutput(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "io")
	r := &ttyRemote{subscribed: make(chan struct{})}
	c, err := New(Config{ID: "c", FIFODir: dir, Stdin: true, Tty: true, Remote: r, UseRemote: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tio, err := c.Creator()("c")
	if err != nil {
		t.Fatal(err)
	}
	shimIn, err := os.OpenFile(tio.Config().Stdin, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer shimIn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- c.Attach(ctx, AttachOptions{Stdin: strings.NewReader("echo hi\n"), Stdout: crilogtest.NopWriteCloser{Writer: io.Discard}, Tty: true})
	}()
	got := make(chan string, 16)
	go func() {
		b := make([]byte, 64)
		for ctx.Err() == nil {
			n, err := shimIn.Read(b)
			if n > 0 {
				got <- string(b[:n])
			}
			switch {
			case errors.Is(err, io.EOF):
				// No writer on the FIFO yet (the daemon opens it when it
				// forwards): not the end, read again.
				time.Sleep(5 * time.Millisecond)
			case err != nil:
				return
			}
		}
	}()
	select {
	case s := <-got:
		t.Fatalf("stdin %q reached the container before the client was subscribed to the output", s)
	case <-time.After(100 * time.Millisecond):
	}
	close(r.subscribed)
	select {
	case s := <-got:
		if s != "echo hi\n" {
			t.Fatalf("stdin after the subscription: %q", s)
		}
	case <-time.After(testTimeout):
		t.Fatal("stdin not forwarded after the subscription")
	}
	if err := waitErr(t, "attach", done); err != nil {
		t.Fatalf("attach: %v", err)
	}
}

// TestPollRemotesReportsEveryContainer: one PollRemotes loop reads the
// counts of every tracked remote writer (their errors reach the log without
// the metric being collected), and it ends with its context.
func TestPollRemotesReportsEveryContainer(t *testing.T) {
	var logBuf syncLogBuffer
	rep := &LogErrorReporter{Interval: time.Minute,
		Logger: textlogger.NewLogger(textlogger.NewConfig(textlogger.Output(&logBuf)))}
	var remotes []*countingRemote
	for _, id := range []string{"p1", "p2", "p3"} {
		r := &countingRemote{}
		remotes = append(remotes, r)
		c := newRemoteIO(t, id, r, rep)
		t.Cleanup(func() { _ = c.Close() })
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rep.PollRemotes(ctx, 10*time.Millisecond)
	}()
	for _, r := range remotes {
		r.add(1, nil)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := 0
		for _, id := range []string{"p1", "p2", "p3"} {
			if strings.Contains(logBuf.String(), `containerID="`+id+`"`) {
				n++
			}
		}
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 3 containers' remote errors reported:\n%s", n, logBuf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}
