package containerio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/containerd/containerd/v2/pkg/cio"
	"k8s.io/klog/v2"
)

// ExecIO is the IO of one exec process. It implements cio.IO.
//
// Usage: e := NewExecIO(root, execID, tty, stdin); defer e.Close();
// proc := task.Exec(ctx, execID, spec, e.Creator()); done := e.Attach(opts);
// proc.Wait/Start; wait for exit, then for done (with a timeout: a child may
// hold the output open); proc.Delete.
type ExecIO struct {
	id     string
	dir    string
	fifos  cio.Config
	cancel context.CancelFunc
	stdout io.ReadCloser
	stderr io.ReadCloser

	wg sync.WaitGroup // output copy goroutines started by Attach

	mu       sync.Mutex
	attached bool
	closed   bool

	stdinMu     sync.Mutex
	stdin       io.WriteCloser
	stdinClosed bool
}

var _ cio.IO = (*ExecIO)(nil)

// NewExecIO creates a fresh directory under root (created 0700 if needed) with
// the FIFOs of exec process id: <id>-stdout, <id>-stderr without tty and
// <id>-stdin with stdin, and opens this process's side of them (the opens
// complete when the shim opens the other side).
//
// Using the container's FIFODir as root means Cleanup of the container also
// removes exec FIFOs left behind by a crash.
func NewExecIO(root, id string, tty, stdin bool) (_ *ExecIO, retErr error) {
	if id == "" {
		return nil, errors.New("containerio: empty exec ID")
	}
	if err := os.MkdirAll(root, fifoDirMode); err != nil {
		return nil, fmt.Errorf("creating exec FIFO root: %w", err)
	}
	dir, err := os.MkdirTemp(root, "exec-")
	if err != nil {
		return nil, fmt.Errorf("creating exec FIFO directory: %w", err)
	}
	e := &ExecIO{id: id, dir: dir, fifos: fifoPaths(dir, id, stdin, tty)}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	defer func() {
		if retErr != nil {
			_ = e.Close()
		}
	}()
	if err := makeFIFOs(e.fifos); err != nil {
		return nil, fmt.Errorf("exec %s: %w", id, err)
	}
	if e.stdout, err = openPendingReader(ctx, e.fifos.Stdout); err != nil {
		return nil, fmt.Errorf("exec %s stdout: %w", id, err)
	}
	if e.fifos.Stderr != "" {
		if e.stderr, err = openPendingReader(ctx, e.fifos.Stderr); err != nil {
			return nil, fmt.Errorf("exec %s stderr: %w", id, err)
		}
	}
	if e.fifos.Stdin != "" {
		if e.stdin, err = openPendingWriter(ctx, e.fifos.Stdin); err != nil {
			return nil, fmt.Errorf("exec %s stdin: %w", id, err)
		}
	}
	return e, nil
}

// Dir returns the FIFO directory of the exec process.
func (e *ExecIO) Dir() string { return e.dir }

// Config returns the FIFO paths (cio.IO).
func (e *ExecIO) Config() cio.Config { return e.fifos }

// Creator returns the cio.Creator to pass to task.Exec.
func (e *ExecIO) Creator() cio.Creator {
	return func(string) (cio.IO, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.closed {
			return nil, fmt.Errorf("exec %s IO: %w", e.id, ErrClosed)
		}
		return e, nil
	}
}

// Attach starts copying the exec output to opts.Stdout and opts.Stderr and
// opts.Stdin to the exec stdin. Writes to the client block (an exec client
// receives all of the output); after a write error the output is drained and
// discarded. A nil Stdout or Stderr discards that stream. The writers are
// closed when their stream ends. When the client's stdin ends: with StdinOnce
// and no TTY the exec stdin is closed and CloseStdin is called; otherwise the
// output streams are closed, which ends the attach.
//
// The returned channel is closed when all output has been copied. Attach may
// be called once; later calls return a closed channel.
func (e *ExecIO) Attach(opts AttachOptions) <-chan struct{} {
	done := make(chan struct{})
	e.mu.Lock()
	if e.attached {
		e.mu.Unlock()
		klog.ErrorS(nil, "Exec IO attached twice", "execID", e.id)
		close(done)
		return done
	}
	e.attached = true
	e.mu.Unlock()

	var stop atomic.Bool
	var outWG sync.WaitGroup
	copyOut := func(name string, r io.ReadCloser, w io.WriteCloser) {
		e.wg.Add(1)
		outWG.Go(func() {
			defer e.wg.Done()
			copyDraining(r, w, e.id, name)
			_ = r.Close()
			if w != nil {
				_ = w.Close()
			}
		})
	}
	copyOut("stdout", e.stdout, opts.Stdout)
	if e.stderr != nil {
		copyOut("stderr", e.stderr, opts.Stderr)
	}
	go func() {
		outWG.Wait()
		stop.Store(true)
		close(done)
	}()

	e.stdinMu.Lock()
	stdin := e.stdin
	e.stdinMu.Unlock()
	if opts.Stdin != nil && stdin != nil {
		go func() {
			err := forward(opts.Stdin, stdin, &stop)
			if err != nil {
				klog.V(2).InfoS("Forwarding exec stdin ended with an error", "execID", e.id, "err", err)
			}
			if stop.Load() {
				return
			}
			if opts.StdinOnce && !opts.Tty {
				e.closeStdin()
				if opts.CloseStdin != nil {
					if err := opts.CloseStdin(); err != nil {
						klog.ErrorS(err, "Failed to close exec stdin in the task", "execID", e.id)
					}
				}
				return
			}
			_ = e.stdout.Close()
			if e.stderr != nil {
				_ = e.stderr.Close()
			}
		}()
	}
	return done
}

// copyDraining copies r to w; after a write error (or with a nil w) it keeps
// reading r and discards the data so that the process never blocks on output.
func copyDraining(r io.Reader, w io.Writer, id, name string) {
	buf := make([]byte, copyBufSize)
	for {
		n, err := r.Read(buf)
		if n > 0 && w != nil {
			if _, werr := w.Write(buf[:n]); werr != nil {
				klog.V(2).InfoS("Writing exec output to the client failed, discarding the rest", "execID", id, "stream", name, "err", werr)
				w = nil
			}
		}
		if err != nil {
			return
		}
	}
}

// forward copies src into dst until src ends, dst fails or stop is set.
func forward(src io.Reader, dst io.Writer, stop *atomic.Bool) error {
	buf := make([]byte, copyBufSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if stop.Load() {
				return nil
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return fmt.Errorf("writing stdin: %w", werr)
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading stdin: %w", err)
		}
	}
}

func (e *ExecIO) closeStdin() {
	e.stdinMu.Lock()
	defer e.stdinMu.Unlock()
	if e.stdin != nil && !e.stdinClosed {
		_ = e.stdin.Close()
	}
	e.stdinClosed = true
}

// Cancel aborts FIFO opens still waiting for the shim (cio.IO).
func (e *ExecIO) Cancel() { e.cancel() }

// Wait blocks until the output copying started by Attach is over (cio.IO).
func (e *ExecIO) Wait() { e.wg.Wait() }

// Close closes the FIFOs and removes the FIFO directory (cio.IO). It does not
// wait for the copying to end. It is idempotent.
func (e *ExecIO) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.cancel()
	for _, c := range []io.Closer{e.stdout, e.stderr} {
		if c != nil {
			_ = c.Close()
		}
	}
	e.closeStdin()
	if err := os.RemoveAll(e.dir); err != nil {
		return fmt.Errorf("removing FIFO directory of exec %s: %w", e.id, err)
	}
	return nil
}
