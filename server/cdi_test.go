package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/cri-containerd/cri-containerd/backend/backendtest"
	"github.com/cri-containerd/cri-containerd/config"
)

func writeCDISpec(t *testing.T, dir, file, device string) {
	t.Helper()
	spec := fmt.Sprintf(`{"cdiVersion":"0.6.0","kind":"cri-test.example/dev","devices":[{"name":%q,"containerEdits":{"env":["CDI_TEST=yes"]}}]}`, device)
	// Written atomically, as device plugins do: temp file, then rename.
	tmp := filepath.Join(dir, "."+file+".tmp")
	if err := os.WriteFile(tmp, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, file)); err != nil {
		t.Fatal(err)
	}
}

// cdiGoroutines lists the goroutines that watch CDI spec dirs: ours and the
// CDI library's own auto-refresh watcher.
func cdiGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "server.watchCDISpecDirs") || strings.Contains(g, "container-device-interface/pkg/cdi.(*watch)") {
			out = append(out, g)
		}
	}
	return out
}

// TestRegressionCDIWatcherNotStoppedOnShutdown: the CDI cache ran the
// library's auto-refresh watcher goroutine, which nothing stopped: it
// outlived the Service. The spec dirs are now watched by one of the
// Service's background goroutines, cancelled and joined on stop, and the
// cache still follows spec files written, removed, and in a spec dir created
// after start.
func TestRegressionCDIWatcherNotStoppedOnShutdown(t *testing.T) {
	dir := t.TempDir()
	later := filepath.Join(t.TempDir(), "run", "cdi") // created after start
	cfg := config.Default()
	cfg.EnableCDI, cfg.CDISpecDirs = true, []string{dir, later}
	cache := newCDICache(cfg)
	s := &Service{}
	s.watchCDI(cache)
	for _, w := range s.watchers {
		s.bg.Go(w)
	}
	has := func(name string) func() bool {
		return func() bool { return cache.GetDevice("cri-test.example/dev="+name) != nil }
	}

	writeCDISpec(t, dir, "a.json", "a")
	backendtest.WaitFor(t, "device a", has("a"))
	if err := os.MkdirAll(later, 0o755); err != nil {
		t.Fatal(err)
	}
	writeCDISpec(t, later, "b.json", "b")
	backendtest.WaitFor(t, "device b in a spec dir created after start", has("b"))
	if err := os.Remove(filepath.Join(dir, "a.json")); err != nil {
		t.Fatal(err)
	}
	backendtest.WaitFor(t, "device a removed", func() bool { return !has("a")() })
	if err := os.RemoveAll(later); err != nil {
		t.Fatal(err)
	}
	backendtest.WaitFor(t, "device b removed with its dir", func() bool { return !has("b")() })
	if err := os.MkdirAll(later, 0o755); err != nil {
		t.Fatal(err)
	}
	writeCDISpec(t, later, "c.json", "c")
	backendtest.WaitFor(t, "device c in the recreated spec dir", has("c"))

	if len(cdiGoroutines()) == 0 {
		t.Fatal("no CDI watcher goroutine while the service runs")
	}
	if !s.bg.stop(time.Now().Add(10 * time.Second)) {
		t.Fatal("background goroutines not joined")
	}
	// Joined: our watcher has returned. Nothing else may watch the dirs.
	deadline := time.Now().Add(5 * time.Second)
	for g := cdiGoroutines(); len(g) > 0; g = cdiGoroutines() {
		if time.Now().After(deadline) {
			t.Fatalf("CDI watcher goroutines left after stop:\n%s", strings.Join(g, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A disabled CDI adds no watcher.
func TestWatchCDIDisabled(t *testing.T) {
	s := &Service{}
	s.watchCDI(nil)
	if len(s.watchers) != 0 {
		t.Fatal("watcher added without a CDI cache")
	}
}

// The watcher ends with its context even when it fell back to polling or
// has nothing to watch.
func TestWatchCDISpecDirsEndsWithContext(t *testing.T) {
	cache, _ := cdi.NewCache(cdi.WithSpecDirs("/nonexistent/cdi"), cdi.WithAutoRefresh(false))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { watchCDISpecDirs(ctx, cache, []string{"/nonexistent/cdi"}); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("watcher did not end with its context")
	}
}
