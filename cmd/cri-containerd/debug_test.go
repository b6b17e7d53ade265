package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cri-containerd/cri-containerd/config"
)

// TestRegressionMetricsBindFailureIgnored: a metrics address that cannot be
// bound was only logged from a goroutine and the daemon went on without
// metrics. It must be a start-up error naming the address, returned before
// the daemon even connects to containerd.
func TestRegressionMetricsBindFailureIgnored(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, flag string }{
		{"metrics", "--metrics-addr"},
		{"pprof", "--pprof-addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{
				"--config", cfgFile,
				"--socket-path", filepath.Join(dir, "cri.sock"),
				"--root-dir", filepath.Join(dir, "root"),
				"--state-dir", filepath.Join(dir, "state"),
				"--containerd-endpoint", filepath.Join(dir, "no-containerd.sock"),
				"--containerd-start-timeout", "1s",
				"--metrics-addr", "",
				tc.flag, addr,
			}
			err := run(args)
			if err == nil || !strings.Contains(err.Error(), addr) {
				t.Fatalf("run with %s %s already in use: %v; want an error naming the address", tc.flag, addr, err)
			}
		})
	}
}

func httpGet(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// TestPprofOffMetricsListener: /metrics is served on the metrics address and
// no longer serves /debug/pprof; pprof is served on its own address, a TCP
// port or a unix socket (mode 0600), and does not serve /metrics.
func TestPprofOffMetricsListener(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "test_total", Help: "test"}))
	sock := filepath.Join(t.TempDir(), "debug", "pprof.sock")
	for _, tc := range []struct {
		name      string
		pprofAddr string
	}{
		{"tcp", freeAddr(t)},
		{"unix", "unix://" + sock},
		{"disabled", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			metricsAddr := freeAddr(t)
			stop, err := startDebugServers(config.Config{MetricsAddr: metricsAddr, PprofAddr: tc.pprofAddr}, reg)
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			tcp := &http.Client{}
			if code, body := httpGet(t, tcp, "http://"+metricsAddr+"/metrics"); code != 200 || !strings.Contains(body, "test_total") {
				t.Fatalf("/metrics: %d %q", code, body)
			}
			if code, _ := httpGet(t, tcp, "http://"+metricsAddr+"/debug/pprof/"); code != http.StatusNotFound {
				t.Fatalf("/debug/pprof/ on the metrics listener: %d, want 404", code)
			}
			if tc.pprofAddr == "" {
				return
			}
			c, base := tcp, "http://"+tc.pprofAddr
			if path, ok := strings.CutPrefix(tc.pprofAddr, "unix://"); ok {
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("pprof socket mode %v, want 0600", fi.Mode().Perm())
				}
				c = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, "unix", path)
				}}}
				base = "http://pprof"
			}
			if code, body := httpGet(t, c, base+"/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
				t.Fatalf("/debug/pprof/ on the pprof listener: %d %q", code, body)
			}
			if code, body := httpGet(t, c, base+"/debug/pprof/cmdline"); code != 200 || body == "" {
				t.Fatalf("/debug/pprof/cmdline: %d %q", code, body)
			}
			if code, _ := httpGet(t, c, base+"/metrics"); code != http.StatusNotFound {
				t.Fatalf("/metrics on the pprof listener: %d, want 404", code)
			}
		})
	}
	// A stale socket left by a killed daemon is replaced.
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	_ = stale.Close()
	stop, err := startPprof("unix://" + sock)
	if err != nil {
		t.Fatalf("pprof on a stale socket: %v", err)
	}
	stop()
	if _, err := startPprof("unix://relative.sock"); err == nil {
		t.Fatal("relative unix socket path accepted")
	}
}

// TestSocketGroupUnknownIsStartupError: an unknown --socket-group stops the
// daemon at start, before it connects to containerd or recovers anything.
func TestSocketGroupUnknownIsStartupError(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := run([]string{
		"--config", cfgFile,
		"--socket-path", filepath.Join(dir, "cri.sock"),
		"--root-dir", filepath.Join(dir, "root"),
		"--state-dir", filepath.Join(dir, "state"),
		"--containerd-endpoint", filepath.Join(dir, "no-containerd.sock"),
		"--containerd-start-timeout", "1s",
		"--metrics-addr", "",
		"--socket-group", "no-such-group-cri",
	})
	if err == nil || !strings.Contains(err.Error(), `unknown group "no-such-group-cri"`) {
		t.Fatalf("run with an unknown socket group: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "root")); !os.IsNotExist(err) {
		t.Errorf("the root directory was made before the socket group was checked: %v", err)
	}
}
