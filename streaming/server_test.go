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
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
	utilexec "k8s.io/utils/exec"
)

// fakeRuntime's Exec writes "hello ..." to stdout and exits with exitCode;
// with release set it first waits for release (or ctx).
type fakeRuntime struct {
	exitCode int
	started  chan struct{}
	release  chan struct{}
}

func (f *fakeRuntime) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan TerminalSize) error {
	if f.started != nil {
		close(f.started)
	}
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
		}
	}
	if out != nil {
		fmt.Fprintf(out, "hello from %s %v", id, cmd)
	}
	if f.exitCode != 0 {
		return NewExitError(f.exitCode, fmt.Errorf("exit %d", f.exitCode))
	}
	return nil
}

func (f *fakeRuntime) Attach(context.Context, string, io.Reader, io.WriteCloser, io.WriteCloser, bool, <-chan TerminalSize) error {
	return nil
}

func (f *fakeRuntime) PortForward(context.Context, string, int32, io.ReadWriteCloser) error {
	return nil
}

func newTestServer(t *testing.T, rt Runtime) *Server {
	t.Helper()
	s, err := NewServer(Config{Addr: "127.0.0.1", Port: "0", IdleTimeout: time.Minute}, rt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

func TestPortZeroIsResolvedBeforeServing(t *testing.T) {
	s := newTestServer(t, &fakeRuntime{})
	u, err := url.Parse(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	if u.Port() == "" || u.Port() == "0" {
		t.Fatalf("base URL %s has no real port", s.URL())
	}
	if u.Hostname() != "127.0.0.1" {
		t.Fatalf("base URL %s: want host 127.0.0.1", s.URL())
	}
	if got := s.Addr().(*net.TCPAddr).Port; fmt.Sprint(got) != u.Port() {
		t.Fatalf("listening on port %d, URL says %s", got, u.Port())
	}

	// URLs handed out before Serve carry the real port.
	ex, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"sh"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	at, err := s.GetAttach(&runtimeapi.AttachRequest{ContainerId: "c1", Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	pf, err := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, got := range []string{ex.GetUrl(), at.GetUrl(), pf.GetUrl()} {
		if !strings.HasPrefix(got, s.URL()+"/") {
			t.Errorf("URL %s does not start with %s/", got, s.URL())
		}
	}
	if !strings.Contains(ex.GetUrl(), "/exec/") || !strings.Contains(at.GetUrl(), "/attach/") || !strings.Contains(pf.GetUrl(), "/portforward/") {
		t.Errorf("unexpected URLs %s %s %s", ex.GetUrl(), at.GetUrl(), pf.GetUrl())
	}

	serveDone := make(chan error, 1)
	go func() { serveDone <- s.Serve() }()
	resp, err := http.Get(s.URL() + "/exec/unknowntoken")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown token: status %d, want 404", resp.StatusCode)
	}

	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-serveDone:
		if err != nil {
			t.Fatalf("Serve after Stop: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Stop")
	}
	if c, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
		_ = c.Close()
		t.Fatal("port still open after Stop")
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestStopWithoutServeReleasesPort(t *testing.T) {
	s := newTestServer(t, &fakeRuntime{})
	addr := s.Addr().String()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port not released: %v", err)
	}
	_ = l.Close()
	if err := s.Serve(); err != nil {
		t.Fatalf("Serve after Stop: %v", err)
	}
}

func TestInvalidRequestsAreRejected(t *testing.T) {
	s := newTestServer(t, &fakeRuntime{})
	if _, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c", Cmd: []string{"sh"}, Tty: true, Stderr: true}); err == nil {
		t.Error("tty+stderr accepted")
	}
	if _, err := s.GetPortForward(&runtimeapi.PortForwardRequest{}); err == nil {
		t.Error("empty sandbox id accepted")
	}
}

func TestListenError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	if _, err := NewServer(Config{Addr: "127.0.0.1", Port: port}, &fakeRuntime{}); err == nil {
		t.Fatal("listening on a used port succeeded")
	}
}

// spdyExec connects to the exec URL with a SPDY (v4) client and opens the
// error and stdout streams (the request asked for stdout only).
func spdyExec(t *testing.T, execURL string) (httpstream.Connection, httpstream.Stream, httpstream.Stream) {
	t.Helper()
	return spdyExecTLS(t, execURL, nil)
}

// spdyExecTLS is spdyExec over https with the client TLS configuration tc.
func spdyExecTLS(t *testing.T, execURL string, tc *tls.Config) (httpstream.Connection, httpstream.Stream, httpstream.Stream) {
	t.Helper()
	rt, err := spdy.NewRoundTripper(tc)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, execURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(httpstream.HeaderProtocolVersion, "v4.channel.k8s.io")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := rt.NewConnection(resp)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(typ string) httpstream.Stream {
		h := http.Header{}
		h.Set("streamType", typ)
		st, err := conn.CreateStream(h)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	errStream := mk("error")
	out := mk("stdout")
	return conn, errStream, out
}

func TestExecOverSPDYReportsExitCode(t *testing.T) {
	s := newTestServer(t, &fakeRuntime{exitCode: 3})
	go func() { _ = s.Serve() }()
	ex, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"false"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	conn, errStream, out := spdyExec(t, ex.GetUrl())
	defer conn.Close()
	stdout, _ := io.ReadAll(out)
	status, _ := io.ReadAll(errStream)
	if string(stdout) != "hello from c1 [false]" {
		t.Errorf("stdout %q", stdout)
	}
	if !strings.Contains(string(status), "NonZeroExitCode") || !strings.Contains(string(status), `"message":"3"`) {
		t.Errorf("status %s does not carry exit code 3", status)
	}
}

func TestStopClosesUpgradedConnections(t *testing.T) {
	rt := &fakeRuntime{started: make(chan struct{}), release: make(chan struct{})}
	defer close(rt.release)
	s := newTestServer(t, rt)
	go func() { _ = s.Serve() }()
	ex, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"sleep"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	conn, _, _ := spdyExec(t, ex.GetUrl())
	defer conn.Close()
	select {
	case <-rt.started:
	case <-time.After(10 * time.Second):
		t.Fatal("exec did not start")
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-conn.CloseChan():
	case <-time.After(5 * time.Second):
		t.Fatal("upgraded connection still open after Stop")
	}
}

func TestExitError(t *testing.T) {
	inner := errors.New("boom")
	var err error = NewExitError(7, inner)
	ee, ok := err.(utilexec.ExitError)
	if !ok {
		t.Fatal("not a utilexec.ExitError")
	}
	if !ee.Exited() || ee.ExitStatus() != 7 || ee.String() != "boom" {
		t.Fatalf("got exited=%v status=%d string=%q", ee.Exited(), ee.ExitStatus(), ee.String())
	}
	if !errors.Is(err, inner) {
		t.Fatal("does not unwrap")
	}
	if NewExitError(2, nil).Error() == "" {
		t.Fatal("empty message")
	}
}

func TestUnspecifiedAddressIsNotAdvertised(t *testing.T) {
	s, err := NewServer(Config{Addr: "0.0.0.0", Port: "0"}, &fakeRuntime{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	u, err := url.Parse(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || ip.IsUnspecified() || u.Port() == "0" {
		t.Fatalf("advertised %s", s.URL())
	}
}
