package image

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stallingServer writes chunk every tick for n ticks, then stalls until the
// client goes away.
func stallingServer(t *testing.T, n int, tick time.Duration) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		for i := 0; i < n; i++ {
			_, _ = w.Write([]byte("0123456789"))
			w.(http.Flusher).Flush()
			select {
			case <-time.After(tick):
			case <-r.Context().Done():
				return
			}
		}
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return srv
}

func trackedClient(tr *progressTracker) *http.Client {
	c := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	_ = updateClient(tr, nil)(c)
	return c
}

// fetch reads the body until the context ends; it returns how long it ran.
func fetch(ctx context.Context, c *http.Client, url string) (time.Duration, error) {
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		return time.Since(start), err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return time.Since(start), err
}

func TestWatchdogCancelsStalledPull(t *testing.T) {
	srv := stallingServer(t, 3, 50*time.Millisecond)
	tr := &progressTracker{}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	stall := errors.New("stalled")
	go watchProgress(ctx, "r", tr, 300*time.Millisecond, 25*time.Millisecond, func() { cancel(stall) })
	took, err := fetch(ctx, trackedClient(tr), srv.URL)
	if err == nil || !errors.Is(context.Cause(ctx), stall) {
		t.Fatalf("fetch err = %v, cause = %v; want cancelled by watchdog", err, context.Cause(ctx))
	}
	// 150ms of progress, then 300ms of silence (+ tick slack).
	if took < 400*time.Millisecond || took > 2*time.Second {
		t.Errorf("cancelled after %s", took)
	}
	if _, n := tr.status(); n != 30 {
		t.Errorf("bytes counted = %d, want 30", n)
	}
}

func TestWatchdogKeepsProgressingPull(t *testing.T) {
	// 20 chunks 30ms apart: 600ms total, far over the 200ms timeout, but never silent for 200ms.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 20; i++ {
			_, _ = w.Write([]byte("x"))
			w.(http.Flusher).Flush()
			time.Sleep(30 * time.Millisecond)
		}
	}))
	defer srv.Close()
	tr := &progressTracker{}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	var fired atomic.Bool
	go watchProgress(ctx, "r", tr, 200*time.Millisecond, 20*time.Millisecond, func() { fired.Store(true); cancel(errors.New("stalled")) })
	if _, err := fetch(ctx, trackedClient(tr), srv.URL); err != nil || fired.Load() {
		t.Fatalf("err = %v, watchdog fired = %v", err, fired.Load())
	}
	if active, n := tr.status(); active != 0 || n != 20 {
		t.Errorf("after fetch: active = %d, bytes = %d", active, n)
	}
}

func TestWatchdogIgnoresIdleTime(t *testing.T) {
	// No request in flight (e.g. unpacking) for longer than the timeout.
	tr := &progressTracker{}
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	var fired atomic.Bool
	watchProgress(ctx, "r", tr, 100*time.Millisecond, 20*time.Millisecond, func() { fired.Store(true) })
	if fired.Load() {
		t.Fatal("watchdog fired while no request was in flight")
	}
}

func TestWatchdogDisabled(t *testing.T) {
	done := make(chan struct{})
	go func() {
		watchProgress(context.Background(), "r", &progressTracker{}, 0, 0, func() {})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("watchProgress with timeout 0 did not return")
	}
}

func TestPullTransport(t *testing.T) {
	var gotAuth []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotAuth = append(gotAuth, r.Header.Get("Authorization"))
		mu.Unlock()
		_, _ = w.Write([]byte("hello"))
	}))
	defer srv.Close()
	tr := &progressTracker{}
	c := &http.Client{Transport: http.DefaultTransport}
	upd := updateClient(tr, func(host string) string { return "tok-" + host })
	_ = upd(c)
	// A second call on a copy of the wrapped client must not wrap again.
	c2 := *c
	_ = upd(&c2)
	if inner := c2.Transport.(*pullTransport).rt; inner != http.DefaultTransport {
		t.Fatalf("transport wrapped twice: %T", inner)
	}
	for _, cl := range []*http.Client{c, &c2} {
		resp, err := cl.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	// An explicit Authorization header (the resolver's own) is kept.
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Authorization", "Basic xyz")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if active, n := tr.status(); active != 0 || n != 10 {
		t.Errorf("active = %d, bytes = %d; want 0, 10", active, n)
	}
	host := srv.Listener.Addr().String()
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"Bearer tok-" + host, "Bearer tok-" + host, "Basic xyz"}; len(gotAuth) != 3 || gotAuth[0] != want[0] || gotAuth[1] != want[1] || gotAuth[2] != want[2] {
		t.Errorf("Authorization headers = %q, want %q", gotAuth, want)
	}
}
