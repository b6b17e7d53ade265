package containerio

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2/textlogger"
	testingclock "k8s.io/utils/clock/testing"
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
		want      bool
	}{
		{"shim mode", true, false, true},
		{"daemon mode", false, false, false},
		{"stdin keeps fifos", true, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &fakeRemote{waitResult: true}
			c, err := New(Config{ID: "c", FIFODir: filepath.Join(t.TempDir(), "io"), LogPath: filepath.Join(t.TempDir(), "l"),
				Stdin: tc.stdin, Remote: r, UseRemote: tc.useRemote})
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
	newIO := func(id string, r Remote) *ContainerIO {
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
	r1, r2 := &countingRemote{}, &countingRemote{}
	c1, c2 := newIO("c1", r1), newIO("c2", r2)
	if got := rep.Total(); got != 0 {
		t.Fatalf("Total = %v before any error", got)
	}
	// A daemon-side error counts too.
	NewCRILogger(&failingWriter{}, runtimeapi.Stdout, 0, WithWriteErrors(rep.ForContainer("d"))).Write([]byte("x\n"))
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
