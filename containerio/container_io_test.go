package containerio

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/cri-containerd/cri-containerd/crilog"
	"github.com/cri-containerd/cri-containerd/crilog/crilogtest"
)

type testContainer struct {
	dir     string
	fifoDir string
	logPath string
	cfg     Config
}

func newTestContainer(t *testing.T, mod func(*Config)) *testContainer {
	dir := t.TempDir()
	tc := &testContainer{
		dir:     dir,
		fifoDir: filepath.Join(dir, "state", "io", "c1"),
		logPath: filepath.Join(dir, "c1.log"),
	}
	tc.cfg = Config{
		ID:          "c1",
		FIFODir:     tc.fifoDir,
		LogPath:     tc.logPath,
		MaxLineSize: 16,
		Clock:       testingclock.NewFakePassiveClock(testTime),
	}
	if mod != nil {
		mod(&tc.cfg)
	}
	return tc
}

func (tc *testContainer) start(t *testing.T) (*ContainerIO, *fakeShim) {
	t.Helper()
	c, err := New(tc.cfg)
	if err != nil {
		t.Fatal(err)
	}
	i, err := c.Creator()(tc.cfg.ID)
	if err != nil {
		t.Fatal(err)
	}
	if i.Config() != c.Config() {
		t.Fatal("Creator returned an IO with other FIFOs")
	}
	t.Cleanup(func() { _ = c.Cleanup() })
	return c, openShim(t, c.Config())
}

func (tc *testContainer) logLines(t *testing.T, path string) map[string][]string {
	t.Helper()
	return crilogtest.Reassemble(crilogtest.Parse(t, crilogtest.ReadFile(t, path)))
}

func TestNewValidation(t *testing.T) {
	if _, err := New(Config{FIFODir: "/x"}); err == nil {
		t.Error("empty ID accepted")
	}
	if _, err := New(Config{ID: "a", FIFODir: "rel/dir"}); err == nil {
		t.Error("relative FIFODir accepted")
	}
}

func TestContainerIORoundTrip(t *testing.T) {
	tc := newTestContainer(t, func(c *Config) { c.Stdin = true })
	c, shim := tc.start(t)

	cfg := c.Config()
	if cfg.Terminal || cfg.Stdin == "" || cfg.Stdout == "" || cfg.Stderr == "" {
		t.Fatalf("config %+v", cfg)
	}
	for _, p := range []string{cfg.Stdin, cfg.Stdout, cfg.Stderr} {
		if filepath.Dir(p) != tc.fifoDir || !strings.HasPrefix(filepath.Base(p), "c1-") || !isFIFO(t, p) {
			t.Fatalf("%s is not a FIFO named c1-* in %s", p, tc.fifoDir)
		}
	}
	if _, err := c.Creator()("c1"); !errors.Is(err, ErrAlreadyStarted) {
		t.Fatalf("second start: %v", err)
	}

	out, errOut := crilogtest.NewSyncBuf(), crilogtest.NewSyncBuf()
	inR, inW := io.Pipe()
	defer inW.Close()
	attachErr := make(chan error, 1)
	go func() {
		attachErr <- c.Attach(context.Background(), AttachOptions{Stdin: inR, Stdout: out, Stderr: errOut})
	}()
	crilogtest.Eventually(t, "attach subscriptions", func() bool { return c.stdout.Subscribers() == 1 && c.stderr.Subscribers() == 1 })

	shim.write(shim.stdoutW, "hello\n")
	shim.write(shim.stderrW, "oops\n")
	shim.write(shim.stdoutW, "0123456789abcdefXYZ\n")
	shim.write(shim.stdoutW, "no newline")

	if _, err := inW.Write([]byte("input\n")); err != nil {
		t.Fatal(err)
	}
	if got, _ := shim.readStdin(len("input\n"), testTimeout); got != "input\n" {
		t.Fatalf("container stdin got %q", got)
	}

	shim.closeOutputs()
	if err := waitErr(t, "attach end", attachErr); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	crilogtest.WaitChan(t, "output done", c.Done())
	if !c.Wait(0) {
		t.Fatal("Wait(0) returned false")
	}

	if got, want := out.String(), "hello\n0123456789abcdefXYZ\nno newline"; got != want {
		t.Fatalf("attached stdout %q, want %q", got, want)
	}
	if got := errOut.String(); got != "oops\n" {
		t.Fatalf("attached stderr %q", got)
	}
	if !out.IsClosed() || !errOut.IsClosed() {
		t.Fatal("attached streams not closed at the end of the output")
	}

	recs := crilogtest.Parse(t, crilogtest.ReadFile(t, tc.logPath))
	var stdoutRecs []string
	for _, r := range recs {
		if r.Stream == "stdout" {
			stdoutRecs = append(stdoutRecs, r.String())
		} else if r.String() != "stderr F oops" {
			t.Fatalf("unexpected stderr record %q", r)
		}
		if !r.TS.Equal(testTime) {
			t.Fatalf("timestamp %v", r.TS)
		}
	}
	want := []string{"stdout F hello", "stdout P 0123456789abcdef", "stdout F XYZ", "stdout P no newline"}
	if strings.Join(stdoutRecs, "|") != strings.Join(want, "|") {
		t.Fatalf("stdout records %q, want %q", stdoutRecs, want)
	}

	// Attaching after the end returns at once.
	if err := c.Attach(context.Background(), AttachOptions{Stdout: crilogtest.NewSyncBuf()}); err != nil {
		t.Fatal(err)
	}
	if err := c.ReopenLog(); err == nil {
		t.Fatal("ReopenLog after the output ended succeeded")
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if !isFIFO(t, cfg.Stdout) {
		t.Fatal("Close removed the FIFOs")
	}
	if err := c.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tc.fifoDir); !os.IsNotExist(err) {
		t.Fatalf("FIFO dir still there after Cleanup: %v", err)
	}
	if err := c.Cleanup(); err != nil {
		t.Fatalf("second Cleanup: %v", err)
	}
}

func TestContainerIOStdinOnce(t *testing.T) {
	tc := newTestContainer(t, func(c *Config) { c.Stdin = true; c.StdinOnce = true })
	c, shim := tc.start(t)

	inR, inW := io.Pipe()
	var closed atomic.Int32
	attachErr := make(chan error, 1)
	out := crilogtest.NewSyncBuf()
	go func() {
		attachErr <- c.Attach(context.Background(), AttachOptions{
			Stdin: inR, Stdout: out,
			CloseStdin: func() error { closed.Add(1); return nil },
		})
	}()
	crilogtest.Eventually(t, "subscription", func() bool { return c.stdout.Subscribers() == 1 })
	_, _ = inW.Write([]byte("echo hi\n"))
	_ = inW.Close()
	got, eof := shim.readStdin(-1, testTimeout)
	if got != "echo hi\n" || !eof {
		t.Fatalf("container stdin got %q eof=%v, want the data then EOF", got, eof)
	}
	crilogtest.Eventually(t, "CloseStdin", func() bool { return closed.Load() == 1 })

	// The client stays attached until the output ends.
	shim.write(shim.stdoutW, "hi\n")
	select {
	case err := <-attachErr:
		t.Fatalf("Attach returned early: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	shim.closeOutputs()
	if err := waitErr(t, "attach end", attachErr); err != nil {
		t.Fatal(err)
	}
	if out.String() != "hi\n" {
		t.Fatalf("attached stdout %q", out.String())
	}
}

func TestContainerIOStdinDetach(t *testing.T) {
	tc := newTestContainer(t, func(c *Config) { c.Stdin = true })
	c, shim := tc.start(t)

	inR, inW := io.Pipe()
	out := crilogtest.NewSyncBuf()
	attachErr := make(chan error, 1)
	go func() {
		attachErr <- c.Attach(context.Background(), AttachOptions{Stdin: inR, Stdout: out,
			CloseStdin: func() error { t.Error("CloseStdin called without StdinOnce"); return nil }})
	}()
	crilogtest.Eventually(t, "subscription", func() bool { return c.stdout.Subscribers() == 1 })
	_, _ = inW.Write([]byte("a\n"))
	if got, _ := shim.readStdin(2, testTimeout); got != "a\n" {
		t.Fatalf("container stdin got %q", got)
	}
	_ = inW.Close()
	if err := waitErr(t, "detach", attachErr); err != nil {
		t.Fatal(err)
	}
	crilogtest.WaitChan(t, "attached stdout closed", out.Closed)
	if c.stdout.Subscribers() != 0 {
		t.Fatal("detached client still subscribed")
	}
	// The container stdin stays open, and another client can still write.
	if got, eof := shim.readStdin(-1, 50*time.Millisecond); eof || got != "" {
		t.Fatalf("container stdin: %q eof=%v, want still open", got, eof)
	}
	inR2, inW2 := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	attachErr2 := make(chan error, 1)
	go func() { attachErr2 <- c.Attach(ctx, AttachOptions{Stdin: inR2}) }()
	_, _ = inW2.Write([]byte("b\n"))
	if got, _ := shim.readStdin(2, testTimeout); got != "b\n" {
		t.Fatalf("container stdin got %q", got)
	}
	cancel()
	if err := waitErr(t, "attach cancel", attachErr2); !errors.Is(err, context.Canceled) {
		t.Fatalf("Attach after cancel: %v", err)
	}
	_ = inW2.Close()
}

func TestContainerIOTTY(t *testing.T) {
	tc := newTestContainer(t, func(c *Config) { c.Tty = true; c.Stdin = true })
	c, shim := tc.start(t)
	cfg := c.Config()
	if !cfg.Terminal || cfg.Stderr != "" {
		t.Fatalf("config %+v: want terminal without stderr", cfg)
	}
	if _, err := os.Stat(filepath.Join(tc.fifoDir, "c1-stderr")); !os.IsNotExist(err) {
		t.Fatal("stderr FIFO created with a TTY")
	}
	out, errOut := crilogtest.NewSyncBuf(), crilogtest.NewSyncBuf()
	attachErr := make(chan error, 1)
	go func() {
		attachErr <- c.Attach(context.Background(), AttachOptions{Stdout: out, Stderr: errOut, Tty: true})
	}()
	crilogtest.Eventually(t, "subscription", func() bool { return c.stdout.Subscribers() == 1 })
	shim.write(shim.stdoutW, "prompt$ ls\r\nfile\r\n")
	shim.closeOutputs()
	if err := waitErr(t, "attach end", attachErr); err != nil {
		t.Fatal(err)
	}
	if !c.Wait(0) {
		t.Fatal("Wait(0) returned false")
	}
	if out.String() != "prompt$ ls\r\nfile\r\n" || errOut.String() != "" {
		t.Fatalf("attached %q / %q", out.String(), errOut.String())
	}
	got := crilogtest.Strings(crilogtest.Parse(t, crilogtest.ReadFile(t, tc.logPath)))
	if strings.Join(got, "|") != "stdout F prompt$ ls|stdout F file" {
		t.Fatalf("log records %q", got)
	}
}

// TestContainerIOSlowAttacher: a client that stops reading is detached with
// ErrSlowAttacher while the log and a healthy client get everything.
func TestContainerIOSlowAttacher(t *testing.T) {
	tc := newTestContainer(t, func(c *Config) { c.AttachBufferSize = 256 << 10; c.MaxLineSize = -1 })
	c, shim := tc.start(t)

	slow := crilogtest.NewBlockingWriter()
	defer close(slow.Release)
	fast := crilogtest.NewSyncBuf()
	failing := &errWriter{closed: make(chan struct{})}
	slowErr, fastErr, failErr := make(chan error, 1), make(chan error, 1), make(chan error, 1)
	go func() { slowErr <- c.Attach(context.Background(), AttachOptions{Stdout: slow}) }()
	go func() { fastErr <- c.Attach(context.Background(), AttachOptions{Stdout: fast}) }()
	go func() { failErr <- c.Attach(context.Background(), AttachOptions{Stdout: failing}) }()
	crilogtest.Eventually(t, "subscriptions", func() bool { return c.stdout.Subscribers() == 3 })

	// Lockstep with the healthy client (so that it never lags, whatever the
	// scheduling), 2 MiB in all: far more than the pipe and the attach buffer
	// of the client that does not read.
	const steps, lines = 64, 512
	line := strings.Repeat("x", 63) + "\n"
	step := strings.Repeat(line, lines)
	written := make(chan error, 1)
	go func() {
		for i := 1; i <= steps; i++ {
			if _, err := shim.stdoutW.WriteString(step); err != nil {
				written <- err
				return
			}
			for deadline := time.Now().Add(testTimeout); len(fast.String()) != i*len(step); time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					written <- errors.New("the healthy client did not catch up")
					return
				}
			}
		}
		written <- nil
	}()
	if err := waitErr(t, "container output written (log writer must not block)", written); err != nil {
		t.Fatal(err)
	}
	want := strings.Repeat(step, steps)

	if err := waitErr(t, "slow attacher detached", slowErr); !errors.Is(err, crilog.ErrSlowAttacher) {
		t.Fatalf("slow attacher: %v, want crilog.ErrSlowAttacher", err)
	}
	if err := waitErr(t, "failing attacher dropped", failErr); err == nil || !strings.Contains(err.Error(), "client went away") {
		t.Fatalf("failing attacher: %v", err)
	}
	crilogtest.WaitChan(t, "failing writer closed", failing.closed)

	shim.closeOutputs()
	if err := waitErr(t, "fast attacher end", fastErr); err != nil {
		t.Fatal(err)
	}
	if !c.Wait(0) {
		t.Fatal("Wait(0) returned false")
	}
	if fast.String() != want {
		t.Fatalf("fast attacher got %d bytes, want %d", len(fast.String()), len(want))
	}
	if got := tc.logLines(t, tc.logPath)["stdout"]; len(got) != steps*lines {
		t.Fatalf("log has %d lines, want %d", len(got), steps*lines)
	}
}

func TestContainerIOWaitTimeout(t *testing.T) {
	tc := newTestContainer(t, nil)
	c, shim := tc.start(t)
	if c.Wait(20 * time.Millisecond) {
		t.Fatal("Wait returned true while the shim keeps the output open")
	}
	shim.closeOutputs()
	if !c.Wait(testTimeout) {
		t.Fatal("Wait returned false after the output ended")
	}
}

func TestContainerIOReopenLog(t *testing.T) {
	tc := newTestContainer(t, nil)
	c, shim := tc.start(t)
	shim.write(shim.stdoutW, "first\n")
	crilogtest.Eventually(t, "first record", func() bool { return fileContains(tc.logPath, "F first") })
	if err := os.Rename(tc.logPath, tc.logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := c.ReopenLog(); err != nil {
		t.Fatal(err)
	}
	shim.write(shim.stderrW, "second\n")
	shim.closeOutputs()
	if !c.Wait(0) {
		t.Fatal("Wait(0) returned false")
	}
	if got := tc.logLines(t, tc.logPath+".1"); strings.Join(got["stdout"], ",") != "first" || len(got["stderr"]) != 0 {
		t.Fatalf("rotated log: %q", got)
	}
	if got := tc.logLines(t, tc.logPath); strings.Join(got["stderr"], ",") != "second" || len(got["stdout"]) != 0 {
		t.Fatalf("new log: %q", got)
	}
}

// TestContainerIORestart simulates a daemon restart: our side is closed while
// the shim keeps writing into the FIFOs (which it keeps open both ways); a new
// ContainerIO re-attached to the stored paths must get everything, appending to
// the same log.
func TestContainerIORestart(t *testing.T) {
	tc := newTestContainer(t, func(c *Config) { c.Stdin = true })
	c1, shim := tc.start(t)
	stored := c1.Config() // what containerd keeps in the task

	shim.write(shim.stdoutW, "before\n")
	shim.write(shim.stderrW, "err before\n")
	crilogtest.Eventually(t, "records before restart", func() bool {
		return fileContains(tc.logPath, "F before") && fileContains(tc.logPath, "F err before")
	})
	shim.write(shim.stdoutW, "par")

	// Daemon goes down.
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	// The shim sees EOF on stdin (no writer left) and closes the container stdin.
	if _, eof := shim.readStdin(-1, testTimeout); !eof {
		t.Fatal("shim stdin did not see EOF after the daemon closed")
	}
	_ = shim.stdin.Close()
	// Output produced while the daemon is down stays in the pipes.
	shim.write(shim.stdoutW, "tial\nduring 1\n")
	shim.write(shim.stderrW, "err during\n")
	shim.write(shim.stdoutW, "during 2\n")

	// Daemon is back: re-attach to the stored FIFO paths.
	c2, err := New(tc.cfg)
	if err != nil {
		t.Fatal(err)
	}
	i2, err := c2.Attacher()(cio.NewFIFOSet(stored, nil))
	if err != nil {
		t.Fatal(err)
	}
	if i2.Config() != stored {
		t.Fatalf("re-attached config %+v, want %+v", i2.Config(), stored)
	}
	if c2.hasStdin() {
		t.Fatal("re-attached IO claims a stdin the shim already closed")
	}
	shim.write(shim.stdoutW, "after\n")
	shim.closeOutputs()
	crilogtest.WaitChan(t, "output end after re-attach", c2.Done())

	got := tc.logLines(t, tc.logPath)
	if s := strings.Join(got["stdout"], "|"); s != "before|partial|during 1|during 2|after" {
		t.Fatalf("stdout lines %q", s)
	}
	if s := strings.Join(got["stderr"], "|"); s != "err before|err during" {
		t.Fatalf("stderr lines %q", s)
	}
	if err := c2.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tc.fifoDir); !os.IsNotExist(err) {
		t.Fatal("FIFO dir left after Cleanup")
	}
}

// TestContainerIOReattachAfterExit: the container exited while the daemon was
// down (the shim closed the FIFOs): re-attaching must not hang.
func TestContainerIOReattachAfterExit(t *testing.T) {
	tc := newTestContainer(t, func(c *Config) { c.Stdin = true })
	c1, shim := tc.start(t)
	stored := c1.Config()
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	shim.closeAll()

	c2, err := New(tc.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Attacher()(cio.NewFIFOSet(stored, nil)); err != nil {
		t.Fatal(err)
	}
	crilogtest.WaitChan(t, "output end", c2.Done())
	if err := c2.Cleanup(); err != nil {
		t.Fatal(err)
	}
}

// TestContainerIOCancelBeforeShim: the task was never created (the shim never
// opened the FIFOs); Cancel must release Wait, as containerd's client expects.
func TestContainerIOCancelBeforeShim(t *testing.T) {
	tc := newTestContainer(t, func(c *Config) { c.Stdin = true })
	c, err := New(tc.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Creator()("c1"); err != nil {
		t.Fatal(err)
	}
	attachErr := make(chan error, 1)
	go func() { attachErr <- c.Attach(context.Background(), AttachOptions{Stdout: crilogtest.NewSyncBuf()}) }()
	c.Cancel()
	waited := make(chan struct{})
	go func() { c.TaskIO().Wait(); close(waited) }()
	crilogtest.WaitChan(t, "Wait after Cancel", waited)
	if err := waitErr(t, "attach end", attachErr); err != nil {
		t.Fatal(err)
	}
	if err := c.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tc.fifoDir); !os.IsNotExist(err) {
		t.Fatal("FIFO dir left after Cleanup")
	}
}

func TestContainerIONotStarted(t *testing.T) {
	tc := newTestContainer(t, nil)
	c, err := New(tc.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Wait(time.Millisecond) {
		t.Fatal("Wait on an IO never started returned false")
	}
	if err := c.ReopenLog(); err == nil {
		t.Fatal("ReopenLog before start succeeded")
	}
	if err := c.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Creator()("c1"); !errors.Is(err, ErrClosed) {
		t.Fatalf("start after Close: %v", err)
	}
	if _, err := os.Stat(tc.fifoDir); !os.IsNotExist(err) {
		t.Fatal("FIFO dir exists")
	}
}

func TestContainerIOMissingLogDir(t *testing.T) {
	tc := newTestContainer(t, func(c *Config) { c.LogPath = filepath.Join(c.FIFODir, "..", "nope", "c.log") })
	c, err := New(tc.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Creator()("c1"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("start with a missing log dir: %v", err)
	}
	if err := c.Cleanup(); err != nil {
		t.Fatal(err)
	}
}

// TestRegressionLogWriteErrorsDroppedFullDisk: a container whose log file is
// on a full file system (/dev/full fails every write with ENOSPC) keeps
// running, and every record it loses is counted in the daemon's counter.
func TestRegressionLogWriteErrorsDroppedFullDisk(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	counter := &countingCounter{}
	tc := newTestContainer(t, func(c *Config) {
		c.LogPath = "/dev/full"
		c.LogErrors = &LogErrorReporter{Counter: counter}
	})
	c, shim := tc.start(t)
	shim.write(shim.stdoutW, "one\ntwo\n")
	shim.write(shim.stderrW, "three\n")
	shim.closeOutputs()
	crilogtest.WaitChan(t, "output done", c.Done())
	if got := counter.value(); got != 3 {
		t.Fatalf("counter = %d after 3 records to a full disk, want 3", got)
	}
}
