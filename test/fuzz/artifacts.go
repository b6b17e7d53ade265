package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Evidence of a failed run is kept: a goroutine dump of the daemon taken the
// moment a call hits its deadline (from its pprof endpoint), and a copy of
// the daemon log at the end. Both go to Config.KeepDir, made on first use.

// artifacts collects what a run kept; workers share it.
type artifacts struct {
	dir    string // Config.KeepDir
	pprof  string // Config.PprofSocket (unix socket path)
	mu     sync.Mutex
	dumps  int
	paths  []string
	client *http.Client
}

// maxDumps bounds the goroutine dumps a run keeps (a stuck lock can make
// every later call hang too).
const maxDumps = 5

func newArtifacts(dir, pprofSocket string) *artifacts {
	a := &artifacts{dir: dir, pprof: pprofSocket}
	if pprofSocket != "" {
		a.client = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", pprofSocket)
			},
		}}
	}
	return a
}

// keep writes b as name in the keep directory and remembers its path.
func (a *artifacts) keep(name string, r io.Reader) (string, error) {
	if a == nil || a.dir == "" {
		return "", nil
	}
	if err := os.MkdirAll(a.dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(a.dir, name)
	out, err := os.Create(p)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(out, r)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	a.mu.Lock()
	a.paths = append(a.paths, p)
	a.mu.Unlock()
	return p, nil
}

// fetchGoroutines reads the daemon's goroutine dump (pprof
// goroutine?debug=2).
func (a *artifacts) fetchGoroutines(ctx context.Context) ([]byte, error) {
	if a == nil || a.client == nil {
		return nil, errors.New("no pprof socket")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://pprof/debug/pprof/goroutine?debug=2", nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// watch takes a goroutine dump shortly before a call's deadline, while the
// call is still in the daemon, unless done is called first. done returns the
// dump (nil when none was taken or it failed).
func (a *artifacts) watch(ctx context.Context, timeout time.Duration) (done func() ([]byte, error)) {
	if a == nil || a.client == nil || a.dir == "" {
		return func() ([]byte, error) { return nil, errors.New("no pprof socket or keep dir") }
	}
	lead := min(2*time.Second, timeout/10)
	var (
		mu   sync.Mutex
		dump []byte
		derr = errors.New("the call ended before its deadline")
		wg   sync.WaitGroup
	)
	wg.Add(1)
	t := time.AfterFunc(timeout-lead, func() {
		defer wg.Done()
		b, err := a.fetchGoroutines(ctx)
		mu.Lock()
		dump, derr = b, err
		mu.Unlock()
	})
	return func() ([]byte, error) {
		if t.Stop() {
			wg.Done()
		}
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return dump, derr
	}
}

// saveGoroutines keeps a dump named for the call that hung (at most
// maxDumps per run: a stuck lock can make every later call hang too) and
// says where it is, or why there is none.
func (a *artifacts) saveGoroutines(what string, dump []byte, derr error) string {
	if a == nil || a.dir == "" {
		return "no goroutine dump: no keep dir"
	}
	if derr != nil {
		return "no goroutine dump: " + derr.Error()
	}
	a.mu.Lock()
	if a.dumps >= maxDumps {
		a.mu.Unlock()
		return fmt.Sprintf("no goroutine dump: already %d", maxDumps)
	}
	a.dumps++
	n := a.dumps
	a.mu.Unlock()
	p, err := a.keep(fmt.Sprintf("goroutines-%d-%s.txt", n, safeName(what)), bytes.NewReader(dump))
	if err != nil {
		return "no goroutine dump: " + err.Error()
	}
	return "goroutines in " + p
}

// daemonLog copies the daemon log into the keep directory.
func (a *artifacts) daemonLog(path string) {
	if a == nil || path == "" {
		return
	}
	in, err := os.Open(path)
	if err != nil {
		return
	}
	defer in.Close()
	_, _ = a.keep("daemon.log", in)
}

func (a *artifacts) kept() []string {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.paths...)
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}
