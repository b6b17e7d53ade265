package server

import (
	"context"
	"fmt"
	"io"

	"github.com/cri-containerd/cri-containerd/containerexec"
	"github.com/cri-containerd/cri-containerd/streaming"
)

// newStreamServer makes the CRI streaming server (already listening, so its
// URLs carry the real port even for port 0). Service.Serve serves it.
func (s *Service) newStreamServer() (*streaming.Server, error) {
	return streaming.NewServer(streaming.Config{
		Addr:        s.config.StreamAddr,
		Port:        s.config.StreamPort,
		IdleTimeout: s.config.StreamIdleTimeout.Duration,
		// A certificate implies TLS; without one a self-signed pair is made.
		TLS:         s.config.EnableTLSStreaming || s.config.StreamTLSCert != "",
		TLSCertFile: s.config.StreamTLSCert,
		TLSKeyFile:  s.config.StreamTLSKey,
	}, &streamRuntime{s: s})
}

// streamRuntime serves the streaming URLs handed out by Exec, Attach and
// PortForward.
type streamRuntime struct {
	s *Service
}

var _ streaming.Runtime = (*streamRuntime)(nil)

// Exec runs cmd in the container until it exits. A non-zero exit code is
// returned as a *streaming.ExitError, unwrapped, as the streaming library
// requires.
func (r *streamRuntime) Exec(ctx context.Context, containerID string, cmd []string, stdin io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan streaming.TerminalSize) error {
	code, err := r.s.execInContainer(r.s.nsCtx(ctx), containerID, containerexec.Options{
		Cmd:    cmd,
		Stdin:  stdin,
		Stdout: stdout,
		Stderr: stderr,
		Tty:    tty,
		Resize: resize,
	})
	if err != nil {
		return fmt.Errorf("exec in container %s: %w", containerID, err)
	}
	if code != 0 {
		return streaming.NewExitError(int(code), fmt.Errorf("command %q in container %s exited with code %d", cmd, containerID, code))
	}
	return nil
}

// Attach attaches the streams to the container's main process.
func (r *streamRuntime) Attach(ctx context.Context, containerID string, stdin io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan streaming.TerminalSize) error {
	return r.s.attachContainer(r.s.nsCtx(ctx), containerID, stdin, stdout, stderr, tty, resize)
}

// PortForward forwards stream to port in the pod's network namespace.
func (r *streamRuntime) PortForward(ctx context.Context, podSandboxID string, port int32, stream io.ReadWriteCloser) error {
	return r.s.portForward(r.s.nsCtx(ctx), podSandboxID, port, stream)
}
