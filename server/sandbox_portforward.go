package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/pkg/netns"
	"github.com/containerd/errdefs"
	cnins "github.com/containernetworking/plugins/pkg/ns"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/sandbox"
)

const (
	// portForwardDialTimeout bounds connecting to the port in the pod.
	portForwardDialTimeout = 10 * time.Second
	// portForwardHalfCloseIdle: once one side has finished sending, the
	// other direction is given up after this long without data.
	portForwardHalfCloseIdle = 30 * time.Second
	// portForwardAbandonWait bounds the wait for a copy goroutine after its
	// streams were closed.
	portForwardAbandonWait = 5 * time.Second
)

// PortForward checks that the sandbox is ready and returns the streaming URL
// that forwards ports into it (see streamRuntime.PortForward).
func (s *Service) PortForward(ctx context.Context, r *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	if s.stream == nil {
		return nil, fmt.Errorf("streaming server: %w", errdefs.ErrUnavailable)
	}
	sb, err := s.readySandbox(r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	for _, p := range r.GetPort() {
		if err := validatePort(p); err != nil {
			return nil, err
		}
	}
	return s.stream.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: sb.ID, Port: r.GetPort()})
}

// readySandbox finds a sandbox (NotFound) and checks that it is ready
// (FailedPrecondition).
func (s *Service) readySandbox(id string) (*sandbox.Sandbox, error) {
	sb, err := s.sandboxes.Get(id)
	if err != nil {
		return nil, err
	}
	if st, _ := sb.State(); st != sandbox.StateReady {
		return nil, fmt.Errorf("sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	return sb, nil
}

func validatePort(port int32) error {
	if port <= 0 || port > math.MaxUint16 {
		return fmt.Errorf("invalid port %d, must be 1-65535: %w", port, errdefs.ErrInvalidArgument)
	}
	return nil
}

// portForward connects to localhost:port inside the sandbox's network
// namespace (on the host for host-network pods) and copies data both ways
// until both directions are finished.
func (s *Service) portForward(ctx context.Context, id string, port int32, stream io.ReadWriteCloser) error {
	if err := validatePort(port); err != nil {
		return err
	}
	sb, err := s.readySandbox(id)
	if err != nil {
		return err
	}
	md := sb.GetMetadata()
	hostNetwork := md.Config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE

	var conn net.Conn
	if hostNetwork {
		conn, err = dialLocalhost(ctx, port)
	} else {
		if md.NetNSPath == "" {
			return fmt.Errorf("sandbox %s has no network namespace: %w", sb.ID, errdefs.ErrFailedPrecondition)
		}
		ns := netns.LoadNetNS(md.NetNSPath)
		closed, cerr := ns.Closed()
		if cerr != nil {
			return fmt.Errorf("checking network namespace %s of sandbox %s: %w", md.NetNSPath, sb.ID, cerr)
		}
		if closed {
			return fmt.Errorf("network namespace %s of sandbox %s is gone: %w", md.NetNSPath, sb.ID, errdefs.ErrFailedPrecondition)
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
		return fmt.Errorf("port forward to sandbox %s port %d: %w", sb.ID, port, err)
	}
	defer conn.Close()
	klog.V(2).InfoS("Port forwarding started", "podSandboxID", sb.ID, "port", port, "hostNetwork", hostNetwork)
	err = proxyStream(ctx, stream, conn, portForwardHalfCloseIdle)
	klog.V(2).InfoS("Port forwarding finished", "podSandboxID", sb.ID, "port", port, "err", err)
	if err != nil {
		return fmt.Errorf("port forward to sandbox %s port %d: %w", sb.ID, port, err)
	}
	return nil
}

// dialLocalhost connects to localhost:port over IPv4, then IPv6. The
// addresses are tried one after the other in the calling goroutine (no
// parallel "happy eyeballs" dial, whose goroutines may run outside the
// network namespace the caller's thread is in).
func dialLocalhost(ctx context.Context, port int32) (net.Conn, error) {
	d := net.Dialer{Timeout: portForwardDialTimeout}
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
		case <-time.After(portForwardAbandonWait):
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
