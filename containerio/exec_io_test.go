package containerio

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cri-containerd/cri-containerd/crilog/crilogtest"
)

func TestExecIORoundTrip(t *testing.T) {
	root := filepath.Join(t.TempDir(), "io", "c1")
	e, err := NewExecIO(root, "e1", false, true)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(e.Dir()) != root {
		t.Fatalf("exec dir %s not under %s", e.Dir(), root)
	}
	i, err := e.Creator()("e1")
	if err != nil || i != e {
		t.Fatalf("Creator: %v", err)
	}
	cfg := e.Config()
	for _, p := range []string{cfg.Stdin, cfg.Stdout, cfg.Stderr} {
		if !isFIFO(t, p) || filepath.Dir(p) != e.Dir() {
			t.Fatalf("%s is not a FIFO in %s", p, e.Dir())
		}
	}
	shim := openShim(t, cfg)

	out, errOut := crilogtest.NewSyncBuf(), crilogtest.NewSyncBuf()
	inR, inW := io.Pipe()
	var closed atomic.Int32
	done := e.Attach(AttachOptions{Stdin: inR, Stdout: out, Stderr: errOut, StdinOnce: true,
		CloseStdin: func() error { closed.Add(1); return nil }})
	if again := e.Attach(AttachOptions{}); again == nil {
		t.Fatal("second Attach returned nil")
	} else {
		crilogtest.WaitChan(t, "second attach", again)
	}

	_, _ = inW.Write([]byte("stdin data"))
	_ = inW.Close()
	got, eof := shim.readStdin(-1, testTimeout)
	if got != "stdin data" || !eof {
		t.Fatalf("exec stdin got %q eof=%v", got, eof)
	}
	crilogtest.Eventually(t, "CloseStdin", func() bool { return closed.Load() == 1 })

	shim.write(shim.stdoutW, "out\n")
	shim.write(shim.stderrW, "err\n")
	shim.closeOutputs()
	crilogtest.WaitChan(t, "exec output done", done)
	e.Cancel()
	e.Wait()
	if out.String() != "out\n" || errOut.String() != "err\n" {
		t.Fatalf("exec output %q / %q", out.String(), errOut.String())
	}
	if !out.IsClosed() || !errOut.IsClosed() {
		t.Fatal("writers not closed")
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.Dir()); !os.IsNotExist(err) {
		t.Fatal("exec FIFO dir left after Close")
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := e.Creator()("e1"); err == nil {
		t.Fatal("Creator after Close succeeded")
	}
}

// TestExecIOFailingClientDrains: after the client fails, the output is still
// drained so the exec process never blocks.
func TestExecIOFailingClientDrains(t *testing.T) {
	e, err := NewExecIO(t.TempDir(), "e2", true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cfg := e.Config()
	if cfg.Stderr != "" || cfg.Stdin != "" || !cfg.Terminal {
		t.Fatalf("tty exec config %+v", cfg)
	}
	shim := openShim(t, cfg)
	w := &errWriter{closed: make(chan struct{})}
	done := e.Attach(AttachOptions{Stdout: w, Tty: true})
	written := make(chan error, 1)
	go func() {
		_, err := shim.stdoutW.WriteString(strings.Repeat("y", 1<<20))
		written <- err
	}()
	if err := waitErr(t, "1 MiB written through a failing client", written); err != nil {
		t.Fatal(err)
	}
	shim.closeOutputs()
	crilogtest.WaitChan(t, "exec output done", done)
	crilogtest.WaitChan(t, "writer closed", w.closed)
}

// TestExecIOCancelBeforeShim: exec creation failed, the shim never opened the
// FIFOs: Cancel, Wait and Close must not hang and must clean up.
func TestExecIOCancelBeforeShim(t *testing.T) {
	root := t.TempDir()
	e, err := NewExecIO(root, "e3", false, true)
	if err != nil {
		t.Fatal(err)
	}
	done := e.Attach(AttachOptions{Stdout: crilogtest.NewSyncBuf(), Stderr: crilogtest.NewSyncBuf()})
	e.Cancel()
	crilogtest.WaitChan(t, "attach done after Cancel", done)
	e.Wait()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Fatalf("left in root: %v", entries)
	}
}
