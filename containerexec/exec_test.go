package containerexec

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cri-containerd/cri-containerd/streaming"
)

// fakeExecProcess is a scripted exec process. The test makes it exit by
// sending on exit; SIGKILL makes it exit with 137. Delete releases the
// output (closes ioDone), after waiting for deleteBlock when set, as the
// shim does.
type fakeExecProcess struct {
	exit        chan uint32
	ioDone      chan struct{}
	ioOnce      sync.Once
	startErr    error
	deleteBlock chan struct{}

	mu      sync.Mutex
	kills   []syscall.Signal
	resizes [][2]uint32
	deleted chan struct{}
	closed  atomic.Int32
}

func newFakeExecProcess() *fakeExecProcess {
	return &fakeExecProcess{
		exit:    make(chan uint32, 1),
		ioDone:  make(chan struct{}),
		deleted: make(chan struct{}),
	}
}

func (f *fakeExecProcess) ID() string { return "exec-1" }

func (f *fakeExecProcess) Start(context.Context) error { return f.startErr }

func (f *fakeExecProcess) Wait(ctx context.Context) (<-chan containerd.ExitStatus, error) {
	c := make(chan containerd.ExitStatus, 1)
	go func() {
		defer close(c)
		select {
		case code := <-f.exit:
			c <- *containerd.NewExitStatus(code, time.Now(), nil)
		case <-ctx.Done():
			c <- *containerd.NewExitStatus(containerd.UnknownExitStatus, time.Time{}, ctx.Err())
		}
	}()
	return c, nil
}

func (f *fakeExecProcess) Kill(_ context.Context, sig syscall.Signal, _ ...containerd.KillOpts) error {
	f.mu.Lock()
	f.kills = append(f.kills, sig)
	f.mu.Unlock()
	if sig == syscall.SIGKILL {
		select {
		case f.exit <- 137:
		default:
		}
	}
	return nil
}

func (f *fakeExecProcess) Resize(_ context.Context, w, h uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resizes = append(f.resizes, [2]uint32{w, h})
	return nil
}

func (f *fakeExecProcess) Delete(ctx context.Context, _ ...containerd.ProcessDeleteOpts) (*containerd.ExitStatus, error) {
	if f.deleteBlock != nil {
		select {
		case <-f.deleteBlock:
		case <-ctx.Done():
		}
	}
	f.releaseIO()
	close(f.deleted)
	return containerd.NewExitStatus(0, time.Now(), nil), nil
}

func (f *fakeExecProcess) releaseIO() { f.ioOnce.Do(func() { close(f.ioDone) }) }

func (f *fakeExecProcess) killed() []syscall.Signal {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]syscall.Signal(nil), f.kills...)
}

func (f *fakeExecProcess) run(ctx context.Context, timeout, drain time.Duration, resize <-chan streaming.TerminalSize) (uint32, error) {
	return execRun{
		proc:         f,
		ioDone:       f.ioDone,
		closeIO:      func() error { f.closed.Add(1); return nil },
		timeout:      timeout,
		drainTimeout: drain,
		resize:       resize,
	}.run(ctx)
}

func (f *fakeExecProcess) waitDeleted(t *testing.T) {
	t.Helper()
	select {
	case <-f.deleted:
	case <-time.After(5 * time.Second):
		t.Fatal("exec process was not deleted")
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.closed.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("exec IO was not released")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestExecRunExitCodeAndSynchronousCleanup(t *testing.T) {
	for _, want := range []uint32{0, 5} {
		f := newFakeExecProcess()
		f.exit <- want
		f.releaseIO()
		code, err := f.run(context.Background(), time.Minute, time.Second, nil)
		if err != nil || code != want {
			t.Fatalf("got %d, %v; want %d", code, err, want)
		}
		// Output drained: the process is deleted before run returns.
		select {
		case <-f.deleted:
		default:
			t.Fatal("not deleted when run returned")
		}
		if f.closed.Load() != 1 {
			t.Fatal("IO not released when run returned")
		}
		if len(f.killed()) != 0 {
			t.Fatalf("killed: %v", f.killed())
		}
	}
}

// A background child keeps the output open after the process exited: run
// returns the exit code after the drain timeout, without waiting for the
// (slow) delete.
func TestExecRunDoesNotWaitForHeldOutput(t *testing.T) {
	f := newFakeExecProcess()
	f.deleteBlock = make(chan struct{})
	f.exit <- 0
	start := time.Now()
	code, err := f.run(context.Background(), 0, 150*time.Millisecond, nil)
	elapsed := time.Since(start)
	if err != nil || code != 0 {
		t.Fatalf("got %d, %v", code, err)
	}
	if elapsed < 150*time.Millisecond || elapsed > 2*time.Second {
		t.Fatalf("returned after %v, want about the drain timeout", elapsed)
	}
	close(f.deleteBlock)
	f.waitDeleted(t)
}

// The exec timeout also bounds the drain when the drain timeout is 0.
func TestExecRunTimeoutBoundsDrain(t *testing.T) {
	f := newFakeExecProcess()
	f.exit <- 3
	start := time.Now()
	code, err := f.run(context.Background(), 200*time.Millisecond, 0, nil)
	if err != nil || code != 3 {
		t.Fatalf("got %d, %v; want exit code 3 (the process ended in time)", code, err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("returned after %v", elapsed)
	}
	f.waitDeleted(t)
}

func TestExecRunTimeoutKills(t *testing.T) {
	f := newFakeExecProcess()
	f.deleteBlock = make(chan struct{}) // the output stays held after the kill
	start := time.Now()
	_, err := f.run(context.Background(), 200*time.Millisecond, time.Second, nil)
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "timeout 200ms exceeded") {
		t.Fatalf("err %q", err)
	}
	if k := f.killed(); len(k) != 1 || k[0] != syscall.SIGKILL {
		t.Fatalf("kills %v", k)
	}
	if elapsed > 2*time.Second {
		t.Fatalf("returned after %v", elapsed)
	}
	close(f.deleteBlock)
	f.waitDeleted(t)
}

func TestExecRunContextCanceled(t *testing.T) {
	f := newFakeExecProcess()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := f.run(ctx, 0, time.Second, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want Canceled", err)
	}
	if k := f.killed(); len(k) != 1 {
		t.Fatalf("kills %v", k)
	}
	f.waitDeleted(t)
}

func TestExecRunStartFails(t *testing.T) {
	f := newFakeExecProcess()
	f.startErr = errors.New("no such binary")
	if _, err := f.run(context.Background(), 0, time.Second, nil); err == nil || !strings.Contains(err.Error(), "no such binary") {
		t.Fatalf("err %v", err)
	}
	f.waitDeleted(t)
}

// Resizes are applied (empty sizes skipped) and the resize goroutine ends
// with the exec even though the channel is never closed (CVE-2022-23471).
func TestExecRunResizeEndsWithExec(t *testing.T) {
	f := newFakeExecProcess()
	resize := make(chan streaming.TerminalSize)
	res := make(chan error, 1)
	go func() {
		_, err := f.run(context.Background(), 0, time.Second, resize)
		res <- err
	}()
	resize <- streaming.TerminalSize{}
	resize <- streaming.TerminalSize{Width: 80, Height: 24}
	resize <- streaming.TerminalSize{Width: 100, Height: 0}
	resize <- streaming.TerminalSize{Width: 120, Height: 40}
	f.exit <- 0
	f.releaseIO()
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	got := f.resizes
	f.mu.Unlock()
	if len(got) != 2 || got[0] != [2]uint32{80, 24} || got[1] != [2]uint32{120, 40} {
		t.Fatalf("resizes %v", got)
	}
	select {
	case resize <- streaming.TerminalSize{Width: 1, Height: 1}:
		t.Fatal("resize goroutine still running after the exec ended")
	case <-time.After(100 * time.Millisecond):
	}
}

func TestCappedBuffer(t *testing.T) {
	b := newCappedBuffer(10)
	for _, p := range []string{"hello", "world!!", "more"} {
		if n, err := b.Write([]byte(p)); n != len(p) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", p, n, err)
		}
	}
	if got := string(b.Bytes()); got != "helloworld" {
		t.Fatalf("got %q", got)
	}
	if !b.Truncated() {
		t.Fatal("not truncated")
	}
	got := b.Bytes()
	got[0] = 'X'
	if b.Bytes()[0] != 'h' {
		t.Fatal("Bytes is not a copy")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	small := newCappedBuffer(MaxSyncOutput)
	_, _ = small.Write([]byte("ok"))
	if small.Truncated() || string(small.Bytes()) != "ok" {
		t.Fatal("small output altered")
	}

	// Concurrent writers and readers (run with -race).
	c := newCappedBuffer(1 << 10)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				_, _ = c.Write(bytes.Repeat([]byte("x"), 7))
				_ = c.Bytes()
			}
		})
	}
	wg.Wait()
	if len(c.Bytes()) != 1<<10 {
		t.Fatalf("len %d", len(c.Bytes()))
	}
}

func TestSetEnv(t *testing.T) {
	got := setEnv([]string{"PATH=/bin", "TERM=dumb", "TERMINAL=x"}, "TERM", "xterm")
	want := []string{"PATH=/bin", "TERMINAL=x", "TERM=xterm"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("got %v", got)
	}
}

func TestFitOutput(t *testing.T) {
	for _, tc := range []struct {
		out, errOut, limit int
		wantOut, wantErr   int
		wantTrimmed        bool
	}{
		{3, 4, 10, 3, 4, false},
		{6, 6, 10, 6, 4, true},
		{12, 6, 10, 10, 0, true},
		{0, 12, 10, 0, 10, true},
	} {
		o, e, trimmed := fitOutput(make([]byte, tc.out), make([]byte, tc.errOut), tc.limit)
		if len(o) != tc.wantOut || len(e) != tc.wantErr || trimmed != tc.wantTrimmed {
			t.Errorf("%+v: got %d, %d, %v", tc, len(o), len(e), trimmed)
		}
	}
}

func TestFirstSize(t *testing.T) {
	ch := make(chan streaming.TerminalSize, 1)
	ch <- streaming.TerminalSize{Width: 80, Height: 24}
	sz, rest := firstSize(ch, time.Second)
	if sz.Width != 80 || sz.Height != 24 || rest == nil {
		t.Fatalf("got %+v %v", sz, rest)
	}
	start := time.Now()
	if sz, rest = firstSize(ch, 50*time.Millisecond); sz.Width != 0 || rest == nil || time.Since(start) > time.Second {
		t.Fatalf("got %+v %v", sz, rest)
	}
	close(ch)
	if _, rest = firstSize(ch, time.Second); rest != nil {
		t.Fatal("closed channel kept")
	}
}

// fakeContainer is a container whose spec and task lookups are scripted.
type fakeContainer struct {
	spec    *oci.Spec
	specErr error
	taskErr error
}

func (f fakeContainer) Spec(context.Context) (*oci.Spec, error) { return f.spec, f.specErr }

func (f fakeContainer) Task(context.Context, cio.Attach) (containerd.Task, error) {
	if f.taskErr != nil {
		return nil, f.taskErr
	}
	return nil, nil
}

// Run fails before creating anything when the container cannot run an exec,
// with an error that maps to the right gRPC code at the server boundary.
func TestDriverRunRefusesUnusableContainer(t *testing.T) {
	d := Driver{StateDir: t.TempDir(), DrainTimeout: time.Second}
	for _, tc := range []struct {
		name string
		c    fakeContainer
		want error
	}{
		{"no task", fakeContainer{spec: &oci.Spec{Process: &specs.Process{}}, taskErr: errdefs.ErrNotFound}, errdefs.ErrFailedPrecondition},
		{"no process", fakeContainer{spec: &oci.Spec{}}, errdefs.ErrFailedPrecondition},
		{"spec unreadable", fakeContainer{specErr: errdefs.ErrNotFound}, errdefs.ErrNotFound},
		{"task lookup fails", fakeContainer{spec: &oci.Spec{Process: &specs.Process{}}, taskErr: errdefs.ErrUnavailable}, errdefs.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := d.Run(context.Background(), "c1", tc.c, Options{Cmd: []string{"true"}}); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if _, err := d.Sync(context.Background(), "c1", tc.c, []string{"true"}, 0); !errors.Is(err, tc.want) {
				t.Fatalf("Sync err %v, want %v", err, tc.want)
			}
		})
	}
}

func TestFIFORootUnderContainerStateDir(t *testing.T) {
	if got := FIFORoot("/run/x", "c1"); got != "/run/x/containers/c1/exec" {
		t.Fatalf("got %q", got)
	}
}
