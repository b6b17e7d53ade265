package streaming

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/pkg/netns"
	"github.com/containerd/errdefs"
	cnins "github.com/containernetworking/plugins/pkg/ns"
	"k8s.io/klog/v2"
)

const (
	// dialTimeout bounds connecting to the port in the pod.
	dialTimeout = 10 * time.Second
	// halfCloseIdle: once one side of a forwarded connection has finished
	// sending, the other direction is given up after this long without data.
	halfCloseIdle = 30 * time.Second
	// abandonWait bounds the wait for a copy goroutine after its streams
	// were closed.
	abandonWait = 5 * time.Second
)

// ForwardPort connects to localhost:port inside the network namespace at
// netNSPath (an empty path means the daemon's own namespace, for
// host-network pods) and copies data between it and stream both ways until
// both directions are finished. podSandboxID names the pod in errors and
// logs. A namespace that is gone is errdefs.ErrFailedPrecondition.
func ForwardPort(ctx context.Context, podSandboxID, netNSPath string, port int32, stream io.ReadWriteCloser) error {
	hostNetwork := netNSPath == ""
	var (
		conn net.Conn
		err  error
	)
	if hostNetwork {
		conn, err = dialLocalhost(ctx, port)
	} else {
		ns := netns.LoadNetNS(netNSPath)
		closed, cerr := ns.Closed()
		if cerr != nil {
			return fmt.Errorf("checking network namespace %s of sandbox %s: %w", netNSPath, podSandboxID, cerr)
		}
		if closed {
			return fmt.Errorf("network namespace %s of sandbox %s is gone: %w", netNSPath, podSandboxID, errdefs.ErrFailedPrecondition)
		}
		// Only the dial runs inside the namespace: the socket belongs to the
		// namespace it was created in, so the copying can run anywhere.
		err = ns.Do(func(cnins.NetNS) error {
			var derr error
			conn, derr = dialLocalhost(ctx, port)
			return derr
		})
	}
	if err != nil {
		return fmt.Errorf("port forward to sandbox %s port %d: %w", podSandboxID, port, err)
	}
	defer conn.Close()
	klog.V(2).InfoS("Port forwarding started", "podSandboxID", podSandboxID, "port", port, "hostNetwork", hostNetwork)
	err = proxyStream(ctx, stream, conn, halfCloseIdle)
	klog.V(2).InfoS("Port forwarding finished", "podSandboxID", podSandboxID, "port", port, "err", err)
	if err != nil {
		return fmt.Errorf("port forward to sandbox %s port %d: %w", podSandboxID, port, err)
	}
	return nil
}

// dialLocalhost connects to localhost:port over IPv4, then IPv6. The
// addresses are tried one after the other in the calling goroutine (no
// parallel "happy eyeballs" dial, whose goroutines may run outside the
// network namespace the caller's thread is in).
func dialLocalhost(ctx context.Context, port int32) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	p := strconv.Itoa(int(port))
	c, err4 := d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", p))
	if err4 == nil {
		return c, nil
	}
	c, err6 := d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", p))
	if err6 == nil {
		return c, nil
	}
	return nil, fmt.Errorf("connecting to localhost:%d: IPv4: %v; IPv6: %w", port, err4, err6)
}

// halfCloser is a connection whose write side can be closed alone
// (*net.TCPConn).
type halfCloser interface {
	CloseWrite() error
}

// resetter is a stream that can be aborted (httpstream.Stream).
type resetter interface {
	Reset() error
}

// proxyStream copies stream to conn and conn to stream until both directions
// end, preserving half-closes: when the client finishes sending, the write
// side of conn is closed (and the pod's answer is still forwarded); when the
// pod finishes sending, the stream is closed (FIN to the client) and the
// client may still send. After one direction ended, the other is abandoned
// when idle for halfCloseIdle. An error in either direction aborts both.
func proxyStream(ctx context.Context, stream io.ReadWriteCloser, conn net.Conn, halfCloseIdle time.Duration) error {
	podConn := &idleConn{Conn: conn}
	toPod := make(chan error, 1)    // client -> pod
	toClient := make(chan error, 1) // pod -> client
	go func() {
		_, err := io.Copy(conn, stream)
		toPod <- err
	}()
	go func() {
		_, err := io.Copy(stream, podConn)
		toClient <- err
	}()

	abort := func() {
		_ = conn.Close()
		if r, ok := stream.(resetter); ok {
			_ = r.Reset()
		} else {
			_ = stream.Close()
		}
	}
	waitAbandoned := func(ch <-chan error, name string) {
		select {
		case <-ch:
		case <-time.After(abandonWait):
			klog.V(2).InfoS("Port forward copy did not end after its streams were closed", "direction", name)
		}
	}

	select {
	case err := <-toPod:
		if err != nil {
			abort()
			waitAbandoned(toClient, "pod-to-client")
			return fmt.Errorf("copying from client to pod: %w", err)
		}
		// The client finished sending: pass the FIN on and forward the
		// rest of the pod's answer while it keeps coming.
		if hc, ok := conn.(halfCloser); ok {
			_ = hc.CloseWrite()
		}
		podConn.setIdle(halfCloseIdle)
		select {
		case err = <-toClient:
		case <-ctx.Done():
			abort()
			waitAbandoned(toClient, "pod-to-client")
			return ctx.Err()
		}
		if err != nil && !errors.Is(err, errIdle) {
			abort()
			return fmt.Errorf("copying from pod to client: %w", err)
		}
		_ = stream.Close()
		return nil
	case err := <-toClient:
		if err != nil {
			abort()
			waitAbandoned(toPod, "client-to-pod")
			return fmt.Errorf("copying from pod to client: %w", err)
		}
		// The pod finished sending: pass the FIN on (stream.Close only
		// closes our sending side) and let the client finish.
		_ = stream.Close()
		t := time.NewTimer(halfCloseIdle)
		defer t.Stop()
		select {
		case err = <-toPod:
			if err != nil {
				abort()
				return fmt.Errorf("copying from client to pod: %w", err)
			}
			return nil
		case <-t.C:
			klog.V(4).InfoS("Port forward: pod closed its side and the client did not finish, closing")
		case <-ctx.Done():
		}
		abort()
		waitAbandoned(toPod, "client-to-pod")
		return ctx.Err()
	case <-ctx.Done():
		abort()
		waitAbandoned(toPod, "client-to-pod")
		waitAbandoned(toClient, "pod-to-client")
		return ctx.Err()
	}
}

var errIdle = errors.New("idle after half-close")

// idleConn reads from a connection; once setIdle was called every Read
// fails with errIdle when no data came for that long.
type idleConn struct {
	net.Conn
	idle atomic.Int64
}

func (c *idleConn) setIdle(d time.Duration) {
	c.idle.Store(int64(d))
	_ = c.Conn.SetReadDeadline(time.Now().Add(d))
}

func (c *idleConn) Read(p []byte) (int, error) {
	if d := time.Duration(c.idle.Load()); d > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(d))
	}
	n, err := c.Conn.Read(p)
	var ne net.Error
	if err != nil && c.idle.Load() > 0 && errors.As(err, &ne) && ne.Timeout() {
		return n, errIdle
	}
	return n, err
}
