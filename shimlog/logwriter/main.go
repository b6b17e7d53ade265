package logwriter

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// File descriptors the runc shim gives a binary:// log writer.
const (
	logWriterStdoutFD = 3
	logWriterStderrFD = 4
	logWriterReadyFD  = 5
)

// ParseOptions parses the log writer's flags. The shim passes the log
// URI's query as "key value" pairs in random order, so every flag takes a
// value (booleans as "true"/"false").
func ParseOptions(args []string) (Options, error) {
	var (
		opts  Options
		tty   string
		drain time.Duration
	)
	fs := flag.NewFlagSet(BinaryName, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&opts.LogPath, "log-path", "", "CRI log file of the container (empty: not logged).")
	fs.IntVar(&opts.MaxLineSize, "max-line-size", 0, "Split longer lines into partial records (<= 0: no limit).")
	fs.StringVar(&opts.ControlPath, "control", "", "Unix control socket (reopen, attach, wait, status).")
	fs.StringVar(&tty, "tty", "false", "The container has a terminal: true or false.")
	fs.IntVar(&opts.AttachBufferSize, "attach-buffer-size", 0, "Bytes queued per attached client before it is detached (0: default).")
	fs.StringVar(&opts.ErrorsPath, "errors-file", "", "File that keeps the number of log records that could not be written (empty: none).")
	fs.DurationVar(&drain, "drain-timeout", DefaultDrainTimeout, "On SIGTERM, how long to read on until the output ends.")
	if err := fs.Parse(args); err != nil {
		return opts, err
	}
	if fs.NArg() > 0 {
		return opts, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	b, err := strconv.ParseBool(tty)
	if err != nil {
		return opts, fmt.Errorf("--tty: %w", err)
	}
	opts.TTY = b
	opts.DrainTimeout = drain
	if opts.ControlPath == "" {
		return opts, errors.New("--control is required")
	}
	return opts, nil
}

// inheritedFile returns the inherited descriptor fd, non-blocking so that
// closing it interrupts a pending read.
func inheritedFile(fd int, name string, nonblock bool) (*os.File, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("file descriptor %d (%s) not inherited: %w", fd, name, err)
	}
	syscall.CloseOnExec(fd)
	if nonblock {
		if err := syscall.SetNonblock(fd, true); err != nil {
			return nil, fmt.Errorf("file descriptor %d (%s): %w", fd, name, err)
		}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// Main runs the shim's log writer on the descriptors the shim passes.
func Main(args []string) error {
	opts, err := ParseOptions(args)
	if err != nil {
		return err
	}
	stdout, err := inheritedFile(logWriterStdoutFD, "stdout", true)
	if err != nil {
		return err
	}
	stderr, err := inheritedFile(logWriterStderrFD, "stderr", true)
	if err != nil {
		return err
	}
	ready, err := inheritedFile(logWriterReadyFD, "ready", false)
	if err != nil {
		return err
	}
	// The shim sends SIGTERM when the task is deleted; the daemon's own
	// signals (it may be restarted) never reach this process.
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return Run(ctx, opts, stdout, stderr, ready)
}
