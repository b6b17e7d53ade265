package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"time"
)

// SlowProxy is a reverse proxy in front of the shared registry. When slow,
// it delays every response and throttles bodies, so pulls are in flight
// when other strikes land.
type SlowProxy struct {
	ln       net.Listener
	srv      *http.Server
	delayMs  atomic.Int64
	rateBps  atomic.Int64 // 0: unthrottled
	requests atomic.Int64
}

// NewSlowProxy listens on a free loopback port and forwards to registry
// (host:port, plain http).
func NewSlowProxy(registry string) (*SlowProxy, error) {
	target, err := url.Parse("http://" + registry)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &SlowProxy{ln: ln}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(r *http.Response) error {
		if rate := p.rateBps.Load(); rate > 0 && r.Body != nil {
			r.Body = &slowBody{rc: r.Body, rate: rate, ctx: r.Request.Context()}
		}
		return nil
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		if d := p.delayMs.Load(); d > 0 {
			select {
			case <-time.After(time.Duration(d) * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		rp.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Addr is host:port of the proxy.
func (p *SlowProxy) Addr() string { return p.ln.Addr().String() }

// SetSlow turns slowness on (delay per request, bytes per second) or off.
func (p *SlowProxy) SetSlow(delay time.Duration, rate int64) {
	p.delayMs.Store(delay.Milliseconds())
	p.rateBps.Store(rate)
}

// Close stops the proxy.
func (p *SlowProxy) Close() { _ = p.srv.Close() }

type slowBody struct {
	rc   io.ReadCloser
	rate int64
	ctx  context.Context
}

func (b *slowBody) Read(p []byte) (int, error) {
	chunk := int(b.rate / 10)
	if chunk < 512 {
		chunk = 512
	}
	if len(p) > chunk {
		p = p[:chunk]
	}
	n, err := b.rc.Read(p)
	if n > 0 {
		select {
		case <-time.After(time.Duration(int64(n) * int64(time.Second) / b.rate)):
		case <-b.ctx.Done():
			return n, b.ctx.Err()
		}
	}
	return n, err
}

func (b *slowBody) Close() error { return b.rc.Close() }
