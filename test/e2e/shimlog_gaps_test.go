package e2e

// The two gaps of container_log_mode = "shim" closed later: the log write
// errors of the shim-side writer in the daemon's metric, and containers with
// stdin.

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

var logWriteErrorsRE = regexp.MustCompile(`(?m)^cri_containerd_container_log_write_errors_total (\d+)`)

func logWriteErrorsMetric(t *testing.T, addr string) (int, bool) {
	t.Helper()
	m := logWriteErrorsRE.FindStringSubmatch(scrapeMetrics(t, addr))
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	return n, err == nil
}

// TestRegressionShimLogWriteErrorsFullDisk: in shim mode the records the
// shim-side writer could not write (the pod log directory is a full 64 KiB
// tmpfs) were missing from cri_containerd_container_log_write_errors_total
// (it stayed 0) and from the daemon's log. They are now counted, logged once
// per container per minute, and still counted by a restarted daemon and
// after the container exited.
func TestRegressionShimLogWriteErrorsFullDisk(t *testing.T) {
	metricsAddr := freeAddr(t)
	e := newCtrEnv(t, "--metrics-addr", metricsAddr, "--container-log-mode", "shim")

	logDir := filepath.Join(t.TempDir(), "full-logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", logDir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("mounting a small tmpfs: %v", err)
	}
	// Lazily: the shim's log writer may still hold the log file open.
	t.Cleanup(func() { _ = unix.Unmount(logDir, unix.MNT_DETACH) })

	podID, podCfg := e.runPod("shimlogfull", framework.WithLogDirectory(logDir))
	// ~400 KiB of lines, then wait for "go" (a file in the container) and
	// write 500 more lines: the log fills up after ~64 KiB.
	cfg := framework.NewContainerConfig("writer", framework.BusyboxImageRef,
		ctrSh("w() { i=0; while [ $i -lt $1 ]; do echo line-$i-padding-padding-padding-padding-padding-padding-padding-padding-padding; i=$((i+1)); done; }; "+
			"w 4000; while [ ! -e /tmp/go ]; do sleep 0.2; done; w 500; exit 0")...)
	started := time.Now()
	id := e.run(podID, podCfg, cfg)
	if _, err := os.Stat(filepath.Join(e.d.StateDir(), "containers", id, "log.sock")); err != nil {
		t.Fatalf("no shim log writer for %s: %v", id, err)
	}

	var dropped int
	ctrWaitFor(t, 60*time.Second, "log write errors of the shim writer counted", func() bool {
		dropped, _ = logWriteErrorsMetric(t, metricsAddr)
		return dropped >= 1000
	})
	t.Logf("records dropped by the shim log writer: %d", dropped)
	b, err := os.ReadFile(e.d.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	var reports int
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "Failed to write container log records") && strings.Contains(l, id) {
			reports++
		}
	}
	if maxReports := 1 + int(time.Since(started)/time.Minute); reports < 1 || reports > maxReports {
		t.Errorf("the daemon logged the write failure of %s %d times in %s, want 1..%d", id, reports, time.Since(started).Round(time.Second), maxReports)
	}

	// A restarted daemon counts them again (read from the container's
	// directory), and then what the writer drops while it runs.
	framework.KillDaemon(t, e.d)
	e.d.Restart()
	rc := e.rc()
	if n, ok := logWriteErrorsMetric(t, metricsAddr); !ok || n < dropped {
		t.Fatalf("metric after a daemon restart: %d (%v), want >= %d", n, ok, dropped)
	}
	framework.ExecSyncOrFail(t, rc, id, 10*time.Second, "touch", "/tmp/go")
	framework.WaitForContainerState(t, rc, id, runtimeapi.ContainerState_CONTAINER_EXITED, time.Minute)
	ctrWaitFor(t, 30*time.Second, "the last 500 lost records counted", func() bool {
		n, _ := logWriteErrorsMetric(t, metricsAddr)
		return n >= dropped+500
	})
	n, _ := logWriteErrorsMetric(t, metricsAddr)
	t.Logf("records dropped in all: %d", n)
}
