package logwriter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
)

// BinaryName is the name under which the daemon's executable runs as the log
// writer (the daemon points a symbolic link of that name at itself, and the
// executable dispatches on it).
const BinaryName = "cri-containerd-log-writer"

// Subcommand is the explicit form: cri-containerd log-writer FLAGS.
const Subcommand = "log-writer"

// Control operations.
const (
	OpStatus = "status"
	OpReopen = "reopen"
	OpWait   = "wait"
	OpAttach = "attach"
)

// Frame stream identifiers on an attach connection.
const (
	frameStdout byte = 1
	frameStderr byte = 2
)

const (
	frameHeaderSize = 5
	maxRequestSize  = 4 << 10
	maxFrameSize    = 1 << 20
)

// request is one control request, sent as a JSON line.
type request struct {
	Op     string `json:"op"`
	Stdout bool   `json:"stdout,omitempty"`
	Stderr bool   `json:"stderr,omitempty"`
}

// response answers a request, as a JSON line. On an attach connection the
// frames follow it.
type response struct {
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`
}

// Status is what a log writer reports about itself.
type Status struct {
	Pid         int    `json:"pid"`
	LogPath     string `json:"logPath,omitempty"`
	TTY         bool   `json:"tty,omitempty"`
	StdoutBytes int64  `json:"stdoutBytes"`
	StderrBytes int64  `json:"stderrBytes"`
	// WriteErrors counts log records that could not be written.
	WriteErrors int64 `json:"writeErrors"`
	Reopens     int64 `json:"reopens"`
	// Done: the output has ended and the log is closed.
	Done bool `json:"done"`
}

// ErrNotRunning is returned by a Client when no log writer listens on the
// control socket (it has exited, or never started).
var ErrNotRunning = errors.New("shimlog: log writer not running")

func writeFrameHeader(hdr []byte, stream byte, n int) {
	hdr[0] = stream
	binary.BigEndian.PutUint32(hdr[1:], uint32(n))
}

// readFrame reads one frame; buf is reused when large enough.
func readFrame(r io.Reader, buf []byte) (byte, []byte, error) {
	var hdr [frameHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrameSize {
		return 0, nil, fmt.Errorf("shimlog: frame of %d bytes exceeds %d", n, maxFrameSize)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return hdr[0], buf, nil
}

// maxSunPath is the usable length of a unix socket path (sun_path is 108
// bytes with the terminating NUL).
const maxSunPath = 107

// withSocketPath calls f with a path that names the socket at path and fits
// in sun_path: path itself when short enough, otherwise a path through
// /proc/self/fd to its directory, opened for the duration of f. State
// directories (…/containers/<64 hex ID>/log.sock) easily exceed 107 bytes.
func withSocketPath(path string, f func(string) error) error {
	if len(path) <= maxSunPath {
		return f(path)
	}
	dir := filepath.Dir(path)
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening socket directory %s: %w", dir, err)
	}
	defer syscall.Close(fd)
	short := fmt.Sprintf("/proc/self/fd/%d/%s", fd, filepath.Base(path))
	if len(short) > maxSunPath {
		return fmt.Errorf("socket name %q is too long", filepath.Base(path))
	}
	return f(short)
}

// listen listens on the unix socket path, replacing a stale socket file.
// Closing the listener does not remove the file (the caller does).
func listen(path string) (*net.UnixListener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing stale control socket %s: %w", path, err)
	}
	var ln *net.UnixListener
	err := withSocketPath(path, func(p string) error {
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		if err != nil {
			return err
		}
		l.SetUnlinkOnClose(false)
		ln = l
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listening on control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		_ = os.Remove(path)
		return nil, fmt.Errorf("restricting control socket %s: %w", path, err)
	}
	return ln, nil
}
