package containerio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/fifo"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/cri-containerd/cri-containerd/crilog"
)

var (
	// ErrClosed is returned when using a closed ContainerIO or ExecIO. It
	// is crilog.ErrClosed, which a closed log file or logger returns: one
	// error says "closed" whatever was.
	ErrClosed = crilog.ErrClosed
	// ErrAlreadyStarted is returned when a ContainerIO is started twice (by
	// its Creator or its Attacher).
	ErrAlreadyStarted = errors.New("containerio: already started")
)

// Config describes the IO of one container.
type Config struct {
	// ID is the container ID; the FIFOs are named <ID>-stdin|stdout|stderr.
	ID string
	// FIFODir is an absolute directory dedicated to this container's FIFOs,
	// e.g. <stateDir>/containers/<ID>/io. It is created (0700) when the task
	// is created and removed by Cleanup, with everything in it.
	FIFODir string
	// LogPath is the CRI log file; empty means the output is not logged.
	// Its parent directory must exist.
	LogPath string
	// Stdin keeps a stdin FIFO open for the container (CRI ContainerConfig.Stdin).
	Stdin bool
	// StdinOnce (CRI ContainerConfig.StdinOnce): see AttachOptions.StdinOnce.
	StdinOnce bool
	// Tty: the container has a terminal; its only output stream is stdout.
	Tty bool
	// MaxLineSize is the maximum CRI log line size in bytes; longer lines are
	// split into partial records. <= 0 means unlimited.
	MaxLineSize int
	// Clock stamps the log records (default: real time).
	Clock clock.PassiveClock
	// LogErrors counts and reports the log records that could not be
	// written (nil: only logged).
	LogErrors *LogErrorReporter
	// AttachBufferSize is how many bytes of one stream may be queued for one
	// attached client before it is detached (default crilog.DefaultAttachBufferSize).
	AttachBufferSize int
	// Remote is the shim-side log writer (see Remote). With UseRemote, a new
	// task gets Remote's log URI instead of output FIFOs, unless it has
	// Stdin without Tty (see useRemoteForNew); a stdin FIFO is kept. Attacher
	// uses Remote for a task whose stdout is a log URI whatever UseRemote
	// says, so a daemon restarted in another log mode re-attaches to what
	// each task has.
	Remote    Remote
	UseRemote bool
}

// AttachOptions describes one attached client (CRI Attach).
type AttachOptions struct {
	// Stdin is forwarded to the container stdin when the container has one.
	Stdin io.Reader
	// Stdout and Stderr receive the raw container output from now on; they
	// are closed when the client is detached. Stderr is unused with a TTY.
	Stdout io.WriteCloser
	Stderr io.WriteCloser
	// Tty is the TTY flag of the request.
	Tty bool
	// StdinOnce: when the client's stdin ends and there is no TTY, close the
	// container stdin (then call CloseStdin). Without StdinOnce, or with a
	// TTY, the end of the client's stdin detaches the client instead.
	// Config.StdinOnce has the same effect.
	StdinOnce bool
	// CloseStdin is called after the container stdin FIFO is closed because
	// of StdinOnce; it should call task.CloseIO(ctx, client.WithStdinCloser).
	CloseStdin func() error
	// Attached is for a Remote: when not nil, Remote.Attach calls it once
	// the output streams reach the client (ContainerIO forwards the
	// client's stdin only from then on, so no output it causes is missed).
	Attached func()
}

// ContainerIO is the IO of one container: FIFOs, CRI log and attach fan-out.
// The cio.IO handed to containerd is TaskIO. See the package documentation
// for its life cycle.
type ContainerIO struct {
	cfg    Config
	clock  clock.PassiveClock
	stdout *crilog.Fanout
	stderr *crilog.Fanout
	done   chan struct{} // closed when the output copying is over (or never started and closed)

	mu         sync.Mutex
	fifos      cio.Config
	started    bool
	closed     bool
	cancelOpen context.CancelFunc
	readers    []io.Closer
	logFile    *crilog.LogFile
	remoteIO   cio.IO // set when the output is handled by cfg.Remote
	// remoteErrsDone stops following the remote writer's log write errors
	// (see followRemoteErrors); nil when not followed.
	remoteErrsDone func()
	doneOnce       sync.Once

	stdinMu     sync.Mutex
	stdin       io.WriteCloser
	stdinClosed bool
}

// New returns the IO of a container. It does not touch the disk: the FIFOs
// and the log file are opened by Creator or Attacher.
func New(cfg Config) (*ContainerIO, error) {
	if cfg.ID == "" {
		return nil, errors.New("containerio: empty container ID")
	}
	if cfg.FIFODir == "" || !filepath.IsAbs(cfg.FIFODir) {
		return nil, fmt.Errorf("containerio: FIFO directory %q of container %s must be an absolute path", cfg.FIFODir, cfg.ID)
	}
	cfg.FIFODir = filepath.Clean(cfg.FIFODir)
	c := &ContainerIO{
		cfg:    cfg,
		clock:  cfg.Clock,
		stdout: crilog.NewFanout(cfg.AttachBufferSize),
		stderr: crilog.NewFanout(cfg.AttachBufferSize),
		done:   make(chan struct{}),
		fifos:  fifoPaths(cfg.FIFODir, cfg.ID, cfg.Stdin, cfg.Tty),
	}
	if c.clock == nil {
		c.clock = clock.RealClock{}
	}
	return c, nil
}

// ID returns the container ID.
func (c *ContainerIO) ID() string { return c.cfg.ID }

// Config returns the FIFO paths given to containerd. Before the IO is
// started they are the paths Creator will create.
func (c *ContainerIO) Config() cio.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fifos
}

// Creator returns the cio.Creator to pass to container.NewTask: it creates
// the FIFOs in FIFODir, opens the log file and starts copying.
func (c *ContainerIO) Creator() cio.Creator {
	return func(string) (cio.IO, error) {
		if err := c.start(nil); err != nil {
			return nil, err
		}
		return c.TaskIO(), nil
	}
}

// Attacher returns the cio.Attach to pass to container.Task after a daemon
// restart: it re-opens the FIFOs containerd stored for the task (normally the
// ones in FIFODir), appends to the log file and starts copying.
func (c *ContainerIO) Attacher() cio.Attach {
	return func(fifos *cio.FIFOSet) (cio.IO, error) {
		if fifos == nil {
			return nil, fmt.Errorf("re-attaching IO of container %s: no fifo set", c.cfg.ID)
		}
		if err := c.start(fifos); err != nil {
			return nil, err
		}
		return c.TaskIO(), nil
	}
}

// TaskIO returns the view of c that containerd's client uses (cio.IO): Config,
// Cancel, Wait (unbounded), Close. Creator and Attacher return it; it can also
// be returned from a cio.Attach when loading the task to delete it, so that
// task.Delete waits for the output and closes the IO, as containerd's CRI
// does.
func (c *ContainerIO) TaskIO() cio.IO { return taskIO{c} }

type taskIO struct{ c *ContainerIO }

func (t taskIO) Config() cio.Config { return t.c.Config() }
func (t taskIO) Cancel()            { t.c.Cancel() }
func (t taskIO) Wait()              { t.c.Wait(0) }
func (t taskIO) Close() error       { return t.c.Close() }

// start opens everything and starts the copy goroutines; existing is nil for
// a new task, or the FIFO set of a task to re-attach to.
func (c *ContainerIO) start(existing *cio.FIFOSet) (retErr error) {
	remote := (existing == nil && c.useRemoteForNew()) || (existing != nil && IsLogURI(existing.Stdout))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("starting IO of container %s: %w", c.cfg.ID, ErrClosed)
	}
	if c.started {
		return fmt.Errorf("starting IO of container %s: %w", c.cfg.ID, ErrAlreadyStarted)
	}
	if remote {
		return c.startRemoteLocked(existing)
	}
	reattach := existing != nil
	fifos := c.fifos
	if reattach {
		fifos = existing.Config
		if fifos.Terminal != c.cfg.Tty {
			klog.InfoS("Terminal flag of the task differs from the container config, using the task's",
				"containerID", c.cfg.ID, "taskTerminal", fifos.Terminal)
		}
		if fifos.Terminal {
			fifos.Stderr = ""
		}
		if fifos.Stdout != "" && filepath.Dir(fifos.Stdout) != c.cfg.FIFODir {
			klog.InfoS("Task FIFOs are outside the container FIFO directory", "containerID", c.cfg.ID,
				"stdout", fifos.Stdout, "fifoDir", c.cfg.FIFODir)
		}
	} else {
		if err := os.MkdirAll(c.cfg.FIFODir, fifoDirMode); err != nil {
			return fmt.Errorf("creating FIFO directory of container %s: %w", c.cfg.ID, err)
		}
		if err := makeFIFOs(fifos); err != nil {
			return fmt.Errorf("creating FIFOs of container %s: %w", c.cfg.ID, err)
		}
	}

	var (
		closers     []io.Closer
		ctx, cancel = context.WithCancel(context.Background())
	)
	defer func() {
		if retErr != nil {
			cancel()
			for _, cl := range closers {
				_ = cl.Close()
			}
		}
	}()

	var logFile *crilog.LogFile
	if c.cfg.LogPath != "" {
		lf, err := crilog.OpenLogFile(c.cfg.LogPath)
		if err != nil {
			return fmt.Errorf("container %s: %w", c.cfg.ID, err)
		}
		logFile = lf
		closers = append(closers, lf)
	}

	openReader := func(path string) (io.ReadCloser, error) {
		if reattach {
			return openExistingReader(path)
		}
		return openPendingReader(ctx, path)
	}
	var stdout, stderr io.ReadCloser
	var stdin io.WriteCloser
	var readers []io.Closer
	if fifos.Stdout != "" {
		r, err := openReader(fifos.Stdout)
		if err != nil {
			return fmt.Errorf("container %s stdout: %w", c.cfg.ID, err)
		}
		stdout = r
		closers = append(closers, r)
		readers = append(readers, r)
	}
	if fifos.Stderr != "" {
		r, err := openReader(fifos.Stderr)
		if err != nil {
			return fmt.Errorf("container %s stderr: %w", c.cfg.ID, err)
		}
		stderr = r
		closers = append(closers, r)
		readers = append(readers, r)
	}
	if fifos.Stdin != "" {
		if reattach {
			w, err := openExistingWriter(fifos.Stdin)
			if err != nil {
				return fmt.Errorf("container %s stdin: %w", c.cfg.ID, err)
			}
			if w == nil {
				klog.V(2).InfoS("Stdin of the container was closed while the daemon was down", "containerID", c.cfg.ID)
			} else {
				stdin = w
				closers = append(closers, w)
			}
		} else {
			w, err := openPendingWriter(ctx, fifos.Stdin)
			if err != nil {
				return fmt.Errorf("container %s stdin: %w", c.cfg.ID, err)
			}
			stdin = w
			closers = append(closers, w)
		}
	}

	c.started = true
	c.fifos = fifos
	c.cancelOpen = cancel
	c.readers = readers
	c.logFile = logFile
	c.stdinMu.Lock()
	c.stdin = stdin
	c.stdinClosed = stdin == nil
	c.stdinMu.Unlock()

	var wg sync.WaitGroup
	logErrs := c.cfg.LogErrors.ForContainer(c.cfg.ID)
	pipe := func(r io.ReadCloser, stream crilog.Stream, b *crilog.Fanout) {
		var logger *crilog.CRILogger
		if logFile != nil {
			logger = crilog.NewCRILogger(logFile, stream, c.cfg.MaxLineSize, crilog.WithClock(c.clock.Now), WithWriteErrors(logErrs))
		}
		wg.Go(func() { c.pipe(r, stream, logger, b) })
	}
	if stdout != nil {
		pipe(stdout, crilog.Stdout, c.stdout)
	} else {
		c.stdout.Close()
	}
	if stderr != nil {
		pipe(stderr, crilog.Stderr, c.stderr)
	} else {
		c.stderr.Close()
	}
	go func() {
		wg.Wait()
		if logFile != nil {
			if err := logFile.Close(); err != nil {
				klog.ErrorS(err, "Failed to close container log file", "containerID", c.cfg.ID)
			}
		}
		c.finish()
		klog.V(4).InfoS("Container output finished", "containerID", c.cfg.ID)
	}()
	klog.V(4).InfoS("Container IO started", "containerID", c.cfg.ID, "reattach", reattach,
		"stdin", fifos.Stdin, "stdout", fifos.Stdout, "stderr", fifos.Stderr, "terminal", fifos.Terminal)
	return nil
}

// pipe copies one output stream into the log and the attached clients until
// EOF or until the FIFO is closed.
func (c *ContainerIO) pipe(r io.ReadCloser, stream crilog.Stream, logger *crilog.CRILogger, b *crilog.Fanout) {
	buf := make([]byte, copyBufSize)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if logger != nil {
				_, _ = logger.Write(buf[:n])
			}
			b.Publish(buf[:n])
		}
		if err != nil {
			switch {
			case errors.Is(err, io.EOF):
			case c.isClosed() || errors.Is(err, fifo.ErrReadClosed) || errors.Is(err, os.ErrClosed):
				klog.V(4).InfoS("Container output FIFO closed", "containerID", c.cfg.ID, "stream", stream, "err", err)
			default:
				klog.ErrorS(err, "Failed to read container output", "containerID", c.cfg.ID, "stream", stream)
			}
			break
		}
	}
	if logger != nil {
		_ = logger.Close()
	}
	b.Close()
	_ = r.Close()
	klog.V(4).InfoS("Finished copying container output", "containerID", c.cfg.ID, "stream", stream)
}

func (c *ContainerIO) finish() {
	c.doneOnce.Do(func() { close(c.done) })
}

func (c *ContainerIO) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Attach attaches a client (CRI Attach). It blocks until the container output
// ends, the client is detached (its stdin ended without StdinOnce, it failed
// or was too slow) or ctx is done. It returns nil for a normal end, ctx.Err()
// when ctx is done, and the write error or crilog.ErrSlowAttacher when the client was
// dropped. A client without Stdout and Stderr is attached until its stdin ends.
func (c *ContainerIO) Attach(ctx context.Context, opts AttachOptions) error {
	if r := c.activeRemote(); r != nil {
		return c.attachRemote(ctx, r, opts)
	}
	select {
	case <-c.done:
		return nil
	default:
	}
	var outs []*crilog.Subscription
	if opts.Stdout != nil {
		outs = append(outs, c.stdout.Subscribe(opts.Stdout))
	}
	if opts.Stderr != nil && !opts.Tty && !c.cfg.Tty {
		outs = append(outs, c.stderr.Subscribe(opts.Stderr))
	}
	defer func() {
		// Every subscription has ended by now (or was cancelled):
		// this only forgets them.
		for _, o := range outs {
			o.Cancel(nil)
		}
	}()

	var stop atomic.Bool // set when Attach returns: stdin data arriving later is dropped
	defer stop.Store(true)
	stdinDone := make(chan struct{})
	if opts.Stdin != nil && c.hasStdin() {
		stdinOnce := (opts.StdinOnce || c.cfg.StdinOnce) && !opts.Tty
		go func() {
			defer close(stdinDone)
			if c.pumpStdin(opts, stdinOnce, &stop) != stdinDetach {
				return
			}
			for _, o := range outs {
				o.Unsubscribe()
			}
		}()
	} else {
		close(stdinDone)
	}

	if len(outs) == 0 {
		select {
		case <-stdinDone:
		case <-c.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	}
	for _, o := range outs {
		select {
		case <-o.Done():
		case <-ctx.Done():
			for _, o := range outs {
				o.Cancel(ctx.Err())
			}
			return ctx.Err()
		}
	}
	for _, o := range outs {
		if err := o.Err(); err != nil {
			return fmt.Errorf("attach to container %s: %w", c.cfg.ID, err)
		}
	}
	return nil
}

func (c *ContainerIO) hasStdin() bool {
	c.stdinMu.Lock()
	defer c.stdinMu.Unlock()
	return c.stdin != nil && !c.stdinClosed
}

// forwardStdin copies src into the container stdin until src ends, the
// container stdin fails or stop is set.
// stdinEnd says how an attached client's stdin ended.
type stdinEnd int

const (
	stdinStopped stdinEnd = iota // the attach ended first: nothing to do
	stdinClosed                  // StdinOnce: the container's stdin was closed
	stdinDetach                  // the client's stdin ended: detach the client
)

// pumpStdin forwards an attached client's stdin into the container until it
// ends, then closes the container's stdin (StdinOnce) or reports that the
// client detaches.
func (c *ContainerIO) pumpStdin(opts AttachOptions, stdinOnce bool, stop *atomic.Bool) stdinEnd {
	if err := c.forwardStdin(opts.Stdin, stop); err != nil {
		klog.V(2).InfoS("Forwarding attached stdin ended with an error", "containerID", c.cfg.ID, "err", err)
	}
	if stop.Load() {
		return stdinStopped
	}
	if stdinOnce {
		klog.V(4).InfoS("Attached stdin closed, closing container stdin (StdinOnce)", "containerID", c.cfg.ID)
		c.closeStdin()
		if opts.CloseStdin != nil {
			if err := opts.CloseStdin(); err != nil {
				klog.ErrorS(err, "Failed to close container stdin in the task", "containerID", c.cfg.ID)
			}
		}
		return stdinClosed
	}
	klog.V(4).InfoS("Attached stdin closed, detaching the client", "containerID", c.cfg.ID)
	return stdinDetach
}

func (c *ContainerIO) forwardStdin(src io.Reader, stop *atomic.Bool) error {
	buf := make([]byte, copyBufSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if stop.Load() {
				return nil
			}
			if werr := c.writeStdin(buf[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading attached stdin: %w", err)
		}
	}
}

func (c *ContainerIO) writeStdin(p []byte) error {
	c.stdinMu.Lock()
	w, closed := c.stdin, c.stdinClosed
	c.stdinMu.Unlock()
	if w == nil || closed {
		return fmt.Errorf("writing container stdin: %w", ErrClosed)
	}
	// Not under stdinMu: the write may block while the container does not
	// read; closing the FIFO concurrently makes it fail.
	if _, err := w.Write(p); err != nil {
		return fmt.Errorf("writing container stdin: %w", err)
	}
	return nil
}

// closeStdin closes the container stdin FIFO (idempotent).
func (c *ContainerIO) closeStdin() {
	c.stdinMu.Lock()
	defer c.stdinMu.Unlock()
	if c.stdin == nil || c.stdinClosed {
		c.stdinClosed = true
		return
	}
	c.stdinClosed = true
	if err := c.stdin.Close(); err != nil {
		klog.V(2).InfoS("Closing container stdin FIFO failed", "containerID", c.cfg.ID, "err", err)
	}
}

// ReopenLog reopens the log file (CRI ReopenContainerLog) so that the next
// record goes to a new file at LogPath. It is a no-op without LogPath, and
// fails with ErrClosed once the output has ended or the IO is closed.
func (c *ContainerIO) ReopenLog() error {
	if c.cfg.LogPath == "" {
		return nil
	}
	if r := c.activeRemote(); r != nil {
		return c.reopenRemote(r)
	}
	c.mu.Lock()
	lf, started, closed := c.logFile, c.started, c.closed
	c.mu.Unlock()
	if closed {
		return fmt.Errorf("reopening log of container %s: %w", c.cfg.ID, ErrClosed)
	}
	if !started || lf == nil {
		return fmt.Errorf("reopening log of container %s: IO not started", c.cfg.ID)
	}
	if err := lf.Reopen(); err != nil {
		return fmt.Errorf("reopening log of container %s: %w", c.cfg.ID, err)
	}
	klog.V(4).InfoS("Reopened container log file", "containerID", c.cfg.ID, "path", lf.Path())
	return nil
}

// Done is closed when the container output has ended (EOF on every output
// FIFO, log flushed and closed) or the IO is closed.
func (c *ContainerIO) Done() <-chan struct{} { return c.done }

// Cancel aborts FIFO opens still waiting for the shim. Data copying goes on
// until EOF.
func (c *ContainerIO) Cancel() {
	c.mu.Lock()
	cancel := c.cancelOpen
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// Wait blocks until the container output has ended (EOF on the output FIFOs,
// log flushed and closed) or for at most timeout (<= 0: no limit). It reports
// whether the output has ended; it returns true at once when the IO was never
// started. After a timeout, Close stops the copying (a process outside the
// container may hold the pipes open).
func (c *ContainerIO) Wait(timeout time.Duration) bool {
	if r := c.activeRemote(); r != nil {
		return c.waitRemote(r, timeout)
	}
	c.mu.Lock()
	started, closed := c.started, c.closed
	c.mu.Unlock()
	if !started && !closed {
		return true
	}
	if timeout <= 0 {
		<-c.done
		return true
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
		return true
	case <-t.C:
		return false
	}
}

// Close closes this process's side of the FIFOs, flushes and closes the log,
// and detaches every client once its queued output is written. The
// FIFOs stay on disk, so the task can be re-attached later; data the shim
// writes after Close stays in the pipe. Close is idempotent.
func (c *ContainerIO) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.done
		return nil
	}
	c.closed = true
	started, cancel, readers := c.started, c.cancelOpen, c.readers
	remote := c.remoteIO != nil
	c.mu.Unlock()

	if remote {
		return c.closeRemote()
	}

	if !started {
		c.stdout.Close()
		c.stderr.Close()
		c.finish()
		return nil
	}
	cancel()
	var errs []error
	for _, r := range readers {
		if err := r.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
	}
	c.closeStdin()
	<-c.done
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing IO of container %s: %w", c.cfg.ID, err)
	}
	return nil
}

// Cleanup closes the IO and removes FIFODir with everything in it (call it
// when the container is removed). It is idempotent.
func (c *ContainerIO) Cleanup() error {
	cerr := c.Close()
	if err := os.RemoveAll(c.cfg.FIFODir); err != nil {
		return errors.Join(cerr, fmt.Errorf("removing FIFO directory of container %s: %w", c.cfg.ID, err))
	}
	return cerr
}
