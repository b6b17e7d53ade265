// Package streaming runs the CRI streaming server (exec, attach and
// port-forward over SPDY/WebSocket) on top of k8s.io/cri-streaming.
//
// The CRI Exec, Attach and PortForward RPCs only hand out a single-use URL
// (GetExec, GetAttach, GetPortForward); the client then connects to that URL
// and the server calls back into a [Runtime] to do the work. This package owns
// the HTTP listener and the server lifecycle; the runtime callbacks are
// implemented by the CRI service, which this package does not import.
//
// The listener is opened by [NewServer], before any URL is handed out, so a
// configured port "0" is resolved to the real port in every URL (the
// cri-streaming Start method resolves it only once it runs, without
// synchronisation).
package streaming

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	cristreaming "k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/klog/v2"
	utilexec "k8s.io/utils/exec"
)

// TerminalSize is a terminal size sent by the client of a TTY session.
type TerminalSize = remotecommand.TerminalSize

// Runtime does the work behind the streaming URLs. It is implemented by the
// CRI service.
type Runtime interface {
	// Exec runs cmd in the container and blocks until it exits. A non-zero
	// exit status must be returned as an error from [NewExitError] so that
	// the client sees the exit code.
	Exec(ctx context.Context, containerID string, cmd []string, stdin io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan TerminalSize) error
	// Attach connects the streams to the container's main process and blocks
	// until the container output ends or the client goes away.
	Attach(ctx context.Context, containerID string, stdin io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan TerminalSize) error
	// PortForward proxies stream to port inside the pod's network namespace
	// and blocks until the forwarding ends.
	PortForward(ctx context.Context, podSandboxID string, port int32, stream io.ReadWriteCloser) error
}

var _ cristreaming.Runtime = Runtime(nil)

// Config configures the streaming server.
type Config struct {
	// Addr is the IP (or host name) to listen on. Empty means the host's
	// primary IP (the source address of the default route).
	Addr string
	// Port is the TCP port; "0" (or empty) picks a free port.
	Port string
	// IdleTimeout closes a streaming connection that carried no data for this
	// long; 0 means no limit.
	IdleTimeout time.Duration
	// CreationTimeout bounds how long a client may take to create its streams
	// after connecting; 0 means the cri-streaming default.
	CreationTimeout time.Duration
	// TLS serves the streaming URLs over https, with the PEM key pair in
	// TLSCertFile and TLSKeyFile, or, when both are empty, a self-signed
	// pair generated at start for the advertised address.
	TLS         bool
	TLSCertFile string
	TLSKeyFile  string
}

// Server is the streaming server.
type Server struct {
	cri      cristreaming.Server
	listener net.Listener
	baseURL  *url.URL
	http     *http.Server

	mu      sync.Mutex
	conns   map[*trackedConn]struct{}
	stopped bool
}

// NewServer listens on the configured address and prepares the server;
// [Server.Serve] serves it. URLs returned by GetExec, GetAttach and
// GetPortForward carry the real listening address.
func NewServer(cfg Config, rt Runtime) (*Server, error) {
	if rt == nil {
		return nil, errors.New("streaming: nil runtime")
	}
	host := cfg.Addr
	if host == "" {
		ip, err := primaryHostIP()
		if err != nil {
			return nil, fmt.Errorf("streaming: resolving the address to listen on: %w", err)
		}
		host = ip.String()
	}
	port := cfg.Port
	if port == "" {
		port = "0"
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("streaming: listening on %s: %w", net.JoinHostPort(host, port), err)
	}
	s, err := newServer(cfg, rt, l)
	if err != nil {
		_ = l.Close()
		return nil, err
	}
	return s, nil
}

func newServer(cfg Config, rt Runtime, l net.Listener) (*Server, error) {
	base := &url.URL{Scheme: "http", Host: advertisedAddr(l.Addr())}
	c := cristreaming.DefaultConfig
	if cfg.TLS {
		host, _, _ := net.SplitHostPort(base.Host)
		tc, err := tlsConfig(cfg, host)
		if err != nil {
			return nil, fmt.Errorf("streaming: %w", err)
		}
		base.Scheme = "https"
		c.TLSConfig = tc
	}
	c.Addr = l.Addr().String()
	c.BaseURL = base
	c.StreamIdleTimeout = cfg.IdleTimeout
	if cfg.CreationTimeout > 0 {
		c.StreamCreationTimeout = cfg.CreationTimeout
	}
	cri, err := cristreaming.NewServer(c, rt)
	if err != nil {
		return nil, fmt.Errorf("streaming: creating server: %w", err)
	}
	s := &Server{
		cri:     cri,
		baseURL: base,
		conns:   map[*trackedConn]struct{}{},
	}
	s.listener = &trackingListener{Listener: l, s: s}
	if c.TLSConfig != nil {
		// TLS over the tracked connections: Stop closes them underneath.
		s.listener = tls.NewListener(s.listener, c.TLSConfig)
	}
	s.http = &http.Server{
		Handler:           cri,
		ReadHeaderTimeout: 30 * time.Second,
	}
	return s, nil
}

// advertisedAddr is the host:port put into URLs. An unspecified listening IP
// (only possible with an explicit 0.0.0.0 or ::) is advertised as loopback.
func advertisedAddr(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := ta.IP
	if ip == nil || ip.IsUnspecified() {
		switch hip, err := primaryHostIP(); {
		case err == nil:
			ip = hip
		case ip != nil && ip.To4() == nil:
			ip = net.IPv6loopback
		default:
			ip = net.IPv4(127, 0, 0, 1)
		}
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(ta.Port))
}

// primaryHostIP returns the source address the host uses for its default
// route (no packet is sent), or the first global unicast interface address.
func primaryHostIP() (net.IP, error) {
	for _, probe := range []struct{ network, addr string }{{"udp4", "192.0.2.1:9"}, {"udp6", "[2001:db8::1]:9"}} {
		c, err := net.Dial(probe.network, probe.addr)
		if err != nil {
			continue
		}
		ip := c.LocalAddr().(*net.UDPAddr).IP
		_ = c.Close()
		if ip.IsGlobalUnicast() {
			return ip, nil
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.IsGlobalUnicast() {
			return n.IP, nil
		}
	}
	return nil, errors.New("no global unicast address on any interface")
}

// URL returns the base URL of the server, e.g. http://127.0.0.1:43567 (https
// with TLS).
func (s *Server) URL() string { return s.baseURL.String() }

// Addr returns the listening address.
func (s *Server) Addr() net.Addr { return s.listener.Addr() }

// GetExec validates req and returns the single-use URL serving it. Errors are
// gRPC status errors (InvalidArgument, ResourceExhausted) to return as is.
func (s *Server) GetExec(req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	return s.cri.GetExec(req)
}

// GetAttach is GetExec for Attach.
func (s *Server) GetAttach(req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	return s.cri.GetAttach(req)
}

// GetPortForward is GetExec for PortForward.
func (s *Server) GetPortForward(req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	return s.cri.GetPortForward(req)
}

// Serve serves until Stop is called (it then returns nil) or the listener
// fails.
func (s *Server) Serve() error {
	klog.InfoS("Serving CRI streaming", "url", s.URL())
	err := s.http.Serve(s.listener)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("streaming server: %w", err)
}

// Stop closes the listener and every connection, including the upgraded
// (hijacked) exec/attach/port-forward connections. It is idempotent; a
// Server that never served is stopped too.
func (s *Server) Stop() error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	conns := s.conns
	s.conns = map[*trackedConn]struct{}{}
	s.mu.Unlock()

	err := s.http.Close()
	// http.Server.Close closes the listener only if Serve ran.
	if lerr := s.listener.Close(); lerr != nil && !errors.Is(lerr, net.ErrClosed) && err == nil {
		err = lerr
	}
	for c := range conns {
		_ = c.Conn.Close()
	}
	return err
}

// trackingListener remembers accepted connections so that Stop can close
// the ones http.Server has handed over to the SPDY/WebSocket handlers.
type trackingListener struct {
	net.Listener
	s *Server
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, s: l.s}
	l.s.mu.Lock()
	stopped := l.s.stopped
	if !stopped {
		l.s.conns[tc] = struct{}{}
	}
	l.s.mu.Unlock()
	if stopped {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	return tc, nil
}

type trackedConn struct {
	net.Conn
	s    *Server
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

// ExitError is a non-zero exit of an exec'd command. The streaming library
// recognises it (k8s.io/utils/exec.ExitError) and reports the exit code to the
// client instead of an internal error. It is matched by a plain type
// assertion, so Runtime.Exec must return it unwrapped.
type ExitError struct {
	Err  error
	Code int
}

// NewExitError returns the error for a command that exited with code.
func NewExitError(code int, err error) *ExitError { return &ExitError{Err: err, Code: code} }

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("command exited with code %d", e.Code)
	}
	return e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *ExitError) Unwrap() error { return e.Err }

// String implements utilexec.ExitError.
func (e *ExitError) String() string { return e.Error() }

// Exited implements utilexec.ExitError: the process has finished.
func (e *ExitError) Exited() bool { return true }

// ExitStatus implements utilexec.ExitError.
func (e *ExitError) ExitStatus() int { return e.Code }

var _ utilexec.ExitError = (*ExitError)(nil)
