package containerio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/fifo"
)

const (
	fifoDirMode os.FileMode = 0o700
	fifoMode    uint32      = 0o700
	copyBufSize             = 32 << 10
)

// fifoPaths returns the FIFO paths of process id in dir: <dir>/<id>-stdin
// (only with stdin), <dir>/<id>-stdout and <dir>/<id>-stderr (not with a TTY).
func fifoPaths(dir, id string, stdin, tty bool) cio.Config {
	c := cio.Config{
		Terminal: tty,
		Stdout:   filepath.Join(dir, id+"-stdout"),
	}
	if stdin {
		c.Stdin = filepath.Join(dir, id+"-stdin")
	}
	if !tty {
		c.Stderr = filepath.Join(dir, id+"-stderr")
	}
	return c
}

// makeFIFOs creates the FIFOs of c that do not exist yet.
func makeFIFOs(c cio.Config) error {
	for _, p := range []string{c.Stdin, c.Stdout, c.Stderr} {
		if p == "" {
			continue
		}
		err := syscall.Mkfifo(p, fifoMode)
		if err == nil {
			continue
		}
		if !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("creating fifo %s: %w", p, err)
		}
		fi, serr := os.Stat(p)
		if serr != nil {
			return fmt.Errorf("checking fifo %s: %w", p, serr)
		}
		if fi.Mode()&os.ModeNamedPipe == 0 {
			return fmt.Errorf("%s exists and is not a fifo: %w", p, os.ErrExist)
		}
	}
	return nil
}

// openPendingReader opens the read side of a FIFO without waiting for a
// writer: the open completes in the background when the shim opens the write
// side, and reads wait for it. Cancelling ctx aborts an open still pending.
func openPendingReader(ctx context.Context, path string) (io.ReadCloser, error) {
	f, err := fifo.OpenFifo(ctx, path, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("opening fifo %s for reading: %w", path, err)
	}
	return f, nil
}

// openPendingWriter opens the write side of a FIFO without waiting for a
// reader (see openPendingReader).
func openPendingWriter(ctx context.Context, path string) (io.WriteCloser, error) {
	f, err := fifo.OpenFifo(ctx, path, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("opening fifo %s for writing: %w", path, err)
	}
	return f, nil
}

// openExistingReader opens the read side of a FIFO whose writer (the shim)
// should already be open. If no writer is left, reads return EOF at once once
// the pipe is empty, instead of waiting forever.
func openExistingReader(path string) (io.ReadCloser, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("re-opening fifo %s for reading: %w", path, err)
	}
	return f, nil
}

// openExistingWriter opens the write side of a FIFO whose reader (the shim)
// should already be open. It returns (nil, nil) when no reader is left.
func openExistingWriter(path string) (io.WriteCloser, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ENXIO) {
			return nil, nil
		}
		return nil, fmt.Errorf("re-opening fifo %s for writing: %w", path, err)
	}
	return f, nil
}
