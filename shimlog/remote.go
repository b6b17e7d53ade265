package shimlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"

	"github.com/cri-containerd/cri-containerd/containerio"
	"github.com/cri-containerd/cri-containerd/shimlog/logwriter"
)

// ControlSocketName is the control socket's name in the container's
// directory.
const ControlSocketName = "log.sock"

// defaultWaitBound bounds Remote.Wait(0).
const defaultWaitBound = 15 * time.Second

// RemoteConfig describes the shim-side log writer of one container, seen from
// the daemon.
type RemoteConfig struct {
	// ID is the container ID.
	ID string
	// Dir is a directory of the container's own (removed with the
	// container): it holds the control socket and the link through which
	// the shim starts the writer.
	Dir string
	// Executable is the daemon's executable, which runs as the writer.
	Executable string
	// LogPath, MaxLineSize and TTY: see logwriter.Options.
	LogPath     string
	MaxLineSize int
	TTY         bool
}

// Remote is the daemon's handle on a container's shim-side log writer; it
// implements containerio.Remote.
type Remote struct {
	cfg    RemoteConfig
	client logwriter.Client
	ctx    context.Context // done once the daemon closes its IO
	cancel context.CancelFunc
}

var (
	_ containerio.Remote             = (*Remote)(nil)
	_ containerio.RemoteErrorCounter = (*Remote)(nil)
)

// NewRemote returns the handle; it touches nothing.
func NewRemote(cfg RemoteConfig) *Remote {
	ctx, cancel := context.WithCancel(context.Background())
	return &Remote{cfg: cfg, client: logwriter.Client{Path: filepath.Join(cfg.Dir, ControlSocketName)}, ctx: ctx, cancel: cancel}
}

// Client returns the control client.
func (r *Remote) Client() logwriter.Client { return r.client }

// LogURI returns the binary:// log URI that makes the shim start the writer.
func (r *Remote) LogURI() (string, error) {
	args := map[string]string{
		"--control":       r.client.Path,
		"--log-path":      r.cfg.LogPath,
		"--max-line-size": strconv.Itoa(r.cfg.MaxLineSize),
		"--tty":           strconv.FormatBool(r.cfg.TTY),
		"--errors-file":   r.errorsPath(),
	}
	u, err := cio.LogURIGenerator("binary", filepath.Join(r.cfg.Dir, logwriter.BinaryName), args)
	if err != nil {
		return "", fmt.Errorf("log writer URI: %w", err)
	}
	return u.String(), nil
}

func (r *Remote) errorsPath() string { return filepath.Join(r.cfg.Dir, logwriter.ErrorsFileName) }

// LogWriteErrors returns the number of log records the writer could not
// write so far (containerio.RemoteErrorCounter). The count outlives the
// writer: it is kept in the container's directory until the container is
// removed.
func (r *Remote) LogWriteErrors() (int64, error) { return logwriter.ReadErrorCount(r.errorsPath()) }

// NewTaskIO creates the container directory and the link to the executable,
// and returns the IO whose Config is the log URI.
func (r *Remote) NewTaskIO() (cio.IO, error) {
	if r.cfg.Executable == "" || !filepath.IsAbs(r.cfg.Executable) {
		return nil, fmt.Errorf("log writer executable %q must be an absolute path", r.cfg.Executable)
	}
	if err := os.MkdirAll(r.cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating log writer directory: %w", err)
	}
	if err := linkExecutable(filepath.Join(r.cfg.Dir, logwriter.BinaryName), r.cfg.Executable); err != nil {
		return nil, err
	}
	uri, err := r.LogURI()
	if err != nil {
		return nil, err
	}
	return &taskIO{config: cio.Config{Stdout: uri, Stderr: uri, Terminal: r.cfg.TTY}}, nil
}

// AttachTaskIO returns the IO of a task started with a log URI.
func (r *Remote) AttachTaskIO(fifos *cio.FIFOSet) (cio.IO, error) {
	return &taskIO{config: fifos.Config}, nil
}

// linkExecutable points link at target (atomically replacing what is there).
func linkExecutable(link, target string) error {
	if cur, err := os.Readlink(link); err == nil && cur == target {
		return nil
	}
	tmp := fmt.Sprintf("%s.%d.tmp", link, time.Now().UnixNano())
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("linking the log writer: %w", err)
	}
	if err := os.Rename(tmp, link); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("linking the log writer: %w", err)
	}
	return nil
}

// Attach serves CRI Attach from the writer's live output.
func (r *Remote) Attach(ctx context.Context, opts containerio.AttachOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(r.ctx, cancel)
	defer stop()

	var stdout, stderr io.Writer
	var closers []io.Closer
	if opts.Stdout != nil {
		stdout = opts.Stdout
		closers = append(closers, opts.Stdout)
	}
	if opts.Stderr != nil && !opts.Tty && !r.cfg.TTY {
		stderr = opts.Stderr
		closers = append(closers, opts.Stderr)
	}
	defer func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}()
	var err error
	if stdout == nil && stderr == nil {
		if opts.Attached != nil {
			opts.Attached()
		}
		err = r.client.Wait(ctx)
	} else {
		err = r.client.AttachNotify(ctx, stdout, stderr, opts.Attached)
	}
	switch {
	case err == nil, errors.Is(err, logwriter.ErrNotRunning):
		return nil // the output has ended
	case ctx.Err() != nil && r.ctx.Err() != nil:
		return nil // the daemon closed the IO
	default:
		return err
	}
}

// ReopenLog asks the writer to reopen the log file.
func (r *Remote) ReopenLog(ctx context.Context) error {
	if err := r.client.Reopen(ctx); err != nil {
		if errors.Is(err, logwriter.ErrNotRunning) {
			return fmt.Errorf("%w: %w", containerio.ErrClosed, err)
		}
		return err
	}
	return nil
}

// Wait reports whether the output has ended (the writer flushed and closed
// the log, or is gone) within timeout.
func (r *Remote) Wait(timeout time.Duration) bool {
	if timeout <= 0 {
		timeout = defaultWaitBound
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return r.client.Wait(ctx) == nil
}

// Close detaches the daemon's attached clients; the writer runs on.
func (r *Remote) Close() error {
	r.cancel()
	return nil
}

// taskIO is the cio.IO containerd's client holds: only a configuration, as
// containerd's own log URI IO.
type taskIO struct{ config cio.Config }

func (t *taskIO) Config() cio.Config { return t.config }
func (t *taskIO) Cancel()            {}
func (t *taskIO) Wait()              {}
func (t *taskIO) Close() error       { return nil }
