package streaming

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// pipeStream is the daemon side of a port-forward data stream; the test
// plays the client with clientR/clientW. Close is a half-close (the client
// reads EOF), Reset aborts both directions, as for an httpstream.Stream.
type pipeStream struct {
	in  *io.PipeReader // data from the client
	out *io.PipeWriter // data to the client
}

func newPipeStream() (s *pipeStream, clientR *io.PipeReader, clientW *io.PipeWriter) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	return &pipeStream{in: inR, out: outW}, outR, inW
}

func (s *pipeStream) Read(p []byte) (int, error)  { return s.in.Read(p) }
func (s *pipeStream) Write(p []byte) (int, error) { return s.out.Write(p) }
func (s *pipeStream) Close() error                { return s.out.Close() }
func (s *pipeStream) Reset() error {
	_ = s.in.CloseWithError(errors.New("reset"))
	return s.out.CloseWithError(errors.New("reset"))
}

// podServer accepts one connection on loopback and runs handle on it.
func podServer(t *testing.T, handle func(c *net.TCPConn)) (port int32, done chan struct{}) {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done = make(chan struct{})
	go func() {
		defer close(done)
		defer l.Close()
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		handle(c.(*net.TCPConn))
	}()
	return int32(l.Addr().(*net.TCPAddr).Port), done
}

func runProxy(t *testing.T, port int32, stream io.ReadWriteCloser, idle time.Duration) chan error {
	t.Helper()
	conn, err := dialLocalhost(context.Background(), port)
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() {
		defer conn.Close()
		res <- proxyStream(context.Background(), stream, conn, idle)
	}()
	return res
}

func waitErr(t *testing.T, ch chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("proxy did not end")
		return nil
	}
}

// The client sends a request and half-closes; the pod answers after reading
// EOF: the answer reaches the client.
func TestProxyClientHalfClose(t *testing.T) {
	port, podDone := podServer(t, func(c *net.TCPConn) {
		req, _ := io.ReadAll(c)
		time.Sleep(100 * time.Millisecond)
		_, _ = c.Write([]byte("got:" + string(req)))
	})
	stream, clientR, clientW := newPipeStream()
	res := runProxy(t, port, stream, 5*time.Second)
	_, _ = clientW.Write([]byte("ping"))
	_ = clientW.Close()
	answer, _ := io.ReadAll(clientR)
	if string(answer) != "got:ping" {
		t.Fatalf("answer %q", answer)
	}
	if err := waitErr(t, res); err != nil {
		t.Fatal(err)
	}
	<-podDone
}

// The pod sends and half-closes first; the client still sends afterwards.
func TestProxyPodHalfClose(t *testing.T) {
	got := make(chan string, 1)
	port, podDone := podServer(t, func(c *net.TCPConn) {
		_, _ = c.Write([]byte("hello"))
		_ = c.CloseWrite()
		b, _ := io.ReadAll(c)
		got <- string(b)
	})
	stream, clientR, clientW := newPipeStream()
	res := runProxy(t, port, stream, 5*time.Second)
	greeting, _ := io.ReadAll(clientR) // EOF once the pod half-closed
	if string(greeting) != "hello" {
		t.Fatalf("greeting %q", greeting)
	}
	_, _ = clientW.Write([]byte("bye"))
	_ = clientW.Close()
	if err := waitErr(t, res); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "bye" {
		t.Fatalf("pod got %q", s)
	}
	<-podDone
}

// After the client half-closed, a pod that never answers nor closes is given
// up once idle.
func TestProxyHalfCloseIdle(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	port, _ := podServer(t, func(c *net.TCPConn) { <-release })
	stream, clientR, clientW := newPipeStream()
	go func() { _, _ = io.Copy(io.Discard, clientR) }()
	res := runProxy(t, port, stream, 150*time.Millisecond)
	_ = clientW.Close()
	start := time.Now()
	if err := waitErr(t, res); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("gave up after %v", d)
	}
}

// A broken client stream aborts both directions: the pod sees its
// connection closed.
func TestProxyClientError(t *testing.T) {
	podEOF := make(chan struct{})
	port, _ := podServer(t, func(c *net.TCPConn) {
		_, _ = io.Copy(io.Discard, c)
		close(podEOF)
	})
	stream, clientR, clientW := newPipeStream()
	go func() { _, _ = io.Copy(io.Discard, clientR) }()
	res := runProxy(t, port, stream, 5*time.Second)
	_ = clientW.CloseWithError(errors.New("connection lost"))
	if err := waitErr(t, res); err == nil || !strings.Contains(err.Error(), "connection lost") {
		t.Fatalf("err %v", err)
	}
	select {
	case <-podEOF:
	case <-time.After(5 * time.Second):
		t.Fatal("pod connection not closed")
	}
}

func TestDialLocalhost(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := int32(l.Addr().(*net.TCPAddr).Port)
	c, err := dialLocalhost(context.Background(), port)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	_ = l.Close()
	if c, err := dialLocalhost(context.Background(), port); err == nil {
		_ = c.Close()
		t.Fatal("dial to a closed port succeeded")
	}
}

// ForwardPort with an empty namespace path (a host-network pod) forwards to
// the daemon's own localhost.
func TestForwardPortHostNetwork(t *testing.T) {
	port, podDone := podServer(t, func(c *net.TCPConn) {
		req, _ := io.ReadAll(c)
		_, _ = c.Write([]byte("got:" + string(req)))
	})
	stream, clientR, clientW := newPipeStream()
	res := make(chan error, 1)
	go func() { res <- ForwardPort(context.Background(), "sb1", "", port, stream) }()
	_, _ = clientW.Write([]byte("ping"))
	_ = clientW.Close()
	answer, _ := io.ReadAll(clientR)
	if string(answer) != "got:ping" {
		t.Fatalf("answer %q", answer)
	}
	if err := waitErr(t, res); err != nil {
		t.Fatal(err)
	}
	<-podDone
}

// A network namespace that is gone is FailedPrecondition, and nothing is
// dialled.
func TestForwardPortNetNSGone(t *testing.T) {
	stream, _, _ := newPipeStream()
	path := filepath.Join(t.TempDir(), "gone")
	err := ForwardPort(context.Background(), "sb1", path, 80, stream)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "sb1") {
		t.Fatalf("ForwardPort into a missing namespace = %v, want FailedPrecondition naming the sandbox", err)
	}
}
