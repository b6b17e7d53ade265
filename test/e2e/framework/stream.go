package framework

// Clients for the CRI streaming URLs (Exec, Attach, PortForward), built on
// the client-go packages kubelet's and kubectl's streaming paths use: SPDY
// (what kubelet proxies to the runtime) and WebSocket for remote commands,
// SPDY for port forwarding.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
)

// StreamOptions are the streams of an exec or attach session.
type StreamOptions = remotecommand.StreamOptions

// TerminalSize is a TTY size sent by the client.
type TerminalSize = remotecommand.TerminalSize

// streamConfig is a REST config that reaches the streaming server of rawURL.
// An https URL (--enable-tls-streaming) is reached without verifying the
// server's certificate (InsecureSkipVerify): the daemon's is self-signed
// unless one is given.
func streamConfig(rawURL string) (*rest.Config, *url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing streaming URL %q: %w", rawURL, err)
	}
	cfg := &rest.Config{Host: u.Scheme + "://" + u.Host, Timeout: 0}
	if u.Scheme == "https" {
		cfg.TLSClientConfig = rest.TLSClientConfig{Insecure: true}
	}
	return cfg, u, nil
}

// StreamSPDY runs an exec or attach session at a streaming URL over SPDY
// (the protocol kubelet uses towards the runtime). A non-zero exit code of an
// exec comes back as k8s.io/client-go/util/exec.CodeExitError.
func StreamSPDY(ctx context.Context, rawURL string, opts StreamOptions) error {
	cfg, u, err := streamConfig(rawURL)
	if err != nil {
		return err
	}
	ex, err := remotecommand.NewSPDYExecutor(cfg, http.MethodPost, u)
	if err != nil {
		return fmt.Errorf("creating SPDY executor: %w", err)
	}
	return ex.StreamWithContext(ctx, opts)
}

// StreamWebSocket runs an exec or attach session over WebSocket with the
// given subprotocols (e.g. "v4.channel.k8s.io").
func StreamWebSocket(ctx context.Context, rawURL string, opts StreamOptions, protocols ...string) error {
	cfg, _, err := streamConfig(rawURL)
	if err != nil {
		return err
	}
	ex, err := remotecommand.NewWebSocketExecutorForProtocols(cfg, http.MethodGet, rawURL, protocols...)
	if err != nil {
		return fmt.Errorf("creating WebSocket executor: %w", err)
	}
	return ex.StreamWithContext(ctx, opts)
}

// SizeQueue is a TerminalSizeQueue fed by the test.
type SizeQueue struct {
	ctx context.Context
	C   chan TerminalSize
}

// NewSizeQueue returns a queue whose sizes the test sends on C.
func NewSizeQueue(ctx context.Context) *SizeQueue {
	return &SizeQueue{ctx: ctx, C: make(chan TerminalSize, 16)}
}

// Next implements remotecommand.TerminalSizeQueue.
func (q *SizeQueue) Next() *TerminalSize {
	select {
	case s := <-q.C:
		return &s
	case <-q.ctx.Done():
		return nil
	}
}

// PortForwarder is a running client-side port forward: connections to
// 127.0.0.1:LocalPort are forwarded through the streaming URL.
type PortForwarder struct {
	LocalPort uint16
	stop      chan struct{}
	done      chan error

	once sync.Once
	err  error
}

// Stop ends the forward and waits for it (idempotent).
func (p *PortForwarder) Stop() error {
	p.once.Do(func() {
		close(p.stop)
		select {
		case p.err = <-p.done:
		case <-time.After(30 * time.Second):
			p.err = fmt.Errorf("port forwarder did not stop within 30s")
		}
	})
	return p.err
}

// StartPortForward forwards a free local port on 127.0.0.1 to remotePort
// through a PortForward streaming URL over SPDY, as kubectl port-forward
// does. It is stopped at the end of the test.
func StartPortForward(t testing.TB, rawURL string, remotePort int, out, errOut io.Writer) *PortForwarder {
	t.Helper()
	cfg, u, err := streamConfig(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		t.Fatalf("SPDY round tripper: %v", err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	if out == nil {
		out = io.Discard
	}
	if errOut == nil {
		errOut = io.Discard
	}
	pf := &PortForwarder{stop: make(chan struct{}), done: make(chan error, 1)}
	ready := make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", remotePort)}, pf.stop, ready, out, errOut)
	if err != nil {
		t.Fatalf("creating port forwarder: %v", err)
	}
	go func() { pf.done <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-pf.done:
		t.Fatalf("port forwarding ended before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		_ = pf.Stop()
		t.Fatal("port forwarder not ready within 30s")
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) != 1 {
		_ = pf.Stop()
		t.Fatalf("forwarded ports: %v, %v", ports, err)
	}
	pf.LocalPort = ports[0].Local
	t.Cleanup(func() { _ = pf.Stop() })
	return pf
}
