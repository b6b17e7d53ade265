package containerio

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"
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
