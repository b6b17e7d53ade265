package containerio

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"
)

const testTimeout = 10 * time.Second

var testTime = time.Date(2024, 1, 2, 3, 4, 5, 123456789, time.UTC)

// fakeShim opens the FIFOs the way containerd-shim-runc-v2 does: every output
// FIFO both O_WRONLY and O_RDONLY (so the pipe survives our side closing),
// stdin O_RDONLY.
type fakeShim struct {
	t                *testing.T
	stdoutW, stdoutR *os.File
	stderrW, stderrR *os.File
	stdin            *os.File
}

func openShim(t *testing.T, c cio.Config) *fakeShim {
	t.Helper()
	s := &fakeShim{t: t}
	open := func(path string, flag int) *os.File {
		f, err := os.OpenFile(path, flag, 0)
		if err != nil {
			t.Fatalf("shim: opening %s: %v", path, err)
		}
		return f
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if c.Stdout != "" {
			s.stdoutW = open(c.Stdout, os.O_WRONLY)
			s.stdoutR = open(c.Stdout, os.O_RDONLY|syscall.O_NONBLOCK)
		}
		if c.Stderr != "" {
			s.stderrW = open(c.Stderr, os.O_WRONLY)
			s.stderrR = open(c.Stderr, os.O_RDONLY|syscall.O_NONBLOCK)
		}
		if c.Stdin != "" {
			s.stdin = open(c.Stdin, os.O_RDONLY)
		}
	}()
	select {
	case <-done:
	case <-time.After(testTimeout):
		t.Fatal("shim: opening the FIFOs timed out")
	}
	t.Cleanup(s.closeAll)
	return s
}

func (s *fakeShim) write(f *os.File, data string) {
	s.t.Helper()
	if _, err := f.Write([]byte(data)); err != nil {
		s.t.Fatalf("shim: write: %v", err)
	}
}

// closeOutputs closes both shim ends of the output FIFOs: our side sees EOF.
func (s *fakeShim) closeOutputs() {
	for _, f := range []*os.File{s.stdoutW, s.stdoutR, s.stderrW, s.stderrR} {
		if f != nil {
			_ = f.Close()
		}
	}
}

func (s *fakeShim) closeAll() {
	s.closeOutputs()
	if s.stdin != nil {
		_ = s.stdin.Close()
	}
}

// readStdin reads what arrives on the shim's stdin within d; eof reports EOF.
func (s *fakeShim) readStdin(want int, d time.Duration) (data string, eof bool) {
	s.t.Helper()
	_ = s.stdin.SetReadDeadline(time.Now().Add(d))
	var buf bytes.Buffer
	b := make([]byte, 4096)
	for want < 0 || buf.Len() < want {
		n, err := s.stdin.Read(b)
		buf.Write(b[:n])
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return buf.String(), false
			}
			return buf.String(), true
		}
	}
	return buf.String(), false
}

type errWriter struct{ closed chan struct{} }

func (w *errWriter) Write([]byte) (int, error) { return 0, errors.New("client went away") }
func (w *errWriter) Close() error              { close(w.closed); return nil }

func waitErr(t *testing.T, what string, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
}

func isFIFO(t *testing.T, path string) bool {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		return false
	}
	return fi.Mode()&os.ModeNamedPipe != 0
}

func fileContains(path, s string) bool {
	b, err := os.ReadFile(path)
	return err == nil && strings.Contains(string(b), s)
}
