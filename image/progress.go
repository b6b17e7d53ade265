package image

import (
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/klog/v2"
)

// defaultProgressCheckInterval is how often the watchdog looks at a pull.
const defaultProgressCheckInterval = 10 * time.Second

// progressTracker counts the HTTP requests in flight and the response body
// bytes read for one pull. The registry clients of the pull's resolver go
// through a pullTransport that feeds it.
type progressTracker struct {
	active atomic.Int32
	bytes  atomic.Uint64
	// other counts progress that is no registry byte (a transfer's
	// unpacking), which the watchdog takes as progress too.
	other atomic.Uint64
}

func (t *progressTracker) status() (int32, uint64) { return t.active.Load(), t.bytes.Load() }

// pullTransport wraps a registry client's transport: it counts requests and
// body bytes for the watchdog and adds a per-request registry bearer token.
type pullTransport struct {
	rt      http.RoundTripper
	tracker *progressTracker
	// token returns the bearer token for a host ("" for none).
	token func(host string) string
}

func (p *pullTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if p.token != nil && req.Header.Get("Authorization") == "" {
		if tok := p.token(req.URL.Host); tok != "" {
			req = req.Clone(req.Context())
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	if p.tracker == nil {
		return p.rt.RoundTrip(req)
	}
	p.tracker.active.Add(1)
	resp, err := p.rt.RoundTrip(req)
	if err != nil {
		p.tracker.active.Add(-1)
		return nil, err
	}
	resp.Body = &countingBody{rc: resp.Body, tracker: p.tracker}
	return resp, nil
}

// countingBody counts bytes read and ends the request's "active" state at
// EOF or Close, whichever comes first.
type countingBody struct {
	rc      io.ReadCloser
	tracker *progressTracker
	once    sync.Once
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.tracker.bytes.Add(uint64(n))
	if err != nil {
		b.done()
	}
	return n, err
}

func (b *countingBody) Close() error {
	err := b.rc.Close()
	b.done()
	return err
}

func (b *countingBody) done() { b.once.Do(func() { b.tracker.active.Add(-1) }) }

// updateClient is a docker config UpdateClientFunc installing pullTransport.
// ConfigureHosts may call it again on a copy of an already wrapped client;
// wrapping twice would count every byte twice.
func updateClient(tracker *progressTracker, token func(string) string) func(*http.Client) error {
	return func(c *http.Client) error {
		if _, ok := c.Transport.(*pullTransport); ok {
			return nil
		}
		rt := c.Transport
		if rt == nil {
			rt = http.DefaultTransport
		}
		c.Transport = &pullTransport{rt: rt, tracker: tracker, token: token}
		return nil
	}
}

// watchProgress cancels a pull (calls stalled) when requests are in flight
// but no byte arrived for timeout. Time spent with no request in flight
// (resolving locally, unpacking) does not count, and the clock restarts when
// a request starts after such an idle period. It returns when ctx is done.
func watchProgress(ctx context.Context, ref string, t *progressTracker, timeout, interval time.Duration, stalled func()) {
	if timeout <= 0 {
		return
	}
	if interval <= 0 || interval > timeout/2 {
		interval = min(defaultProgressCheckInterval, timeout/2)
	}
	if interval <= 0 {
		interval = timeout
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	var (
		lastBytes  uint64
		lastSeen   = time.Now()
		prevActive int32
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		active, read := t.status()
		read += t.other.Load()
		klog.V(5).InfoS("Image pull progress", "ref", ref, "activeRequests", active, "bytesRead", read)
		if active == 0 || read > lastBytes || prevActive == 0 {
			lastBytes, lastSeen, prevActive = read, time.Now(), active
			continue
		}
		prevActive = active
		if time.Since(lastSeen) >= timeout {
			klog.ErrorS(nil, "Cancelling image pull: no progress", "ref", ref, "timeout", timeout,
				"activeRequests", active, "bytesRead", read)
			stalled()
			return
		}
	}
}
