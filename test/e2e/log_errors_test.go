package e2e

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

// TestRegressionLogWriteErrorsFullDisk: a container whose log directory is on
// a full file system (a 64 KiB tmpfs) keeps running, every record lost is
// counted in cri_containerd_container_log_write_errors_total, and the daemon
// logs the failure once (not once per record, nor silently).
func TestRegressionLogWriteErrorsFullDisk(t *testing.T) {
	metricsAddr := freeAddr(t)
	e := newCtrEnv(t, "--metrics-addr", metricsAddr, "--container-log-mode", "daemon")
	rc := e.rc()

	logDir := filepath.Join(t.TempDir(), "full-logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", logDir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("mounting a small tmpfs: %v", err)
	}
	// Lazily: the daemon may still hold the log file open.
	t.Cleanup(func() { _ = unix.Unmount(logDir, unix.MNT_DETACH) })

	podID, podCfg := e.runPod("logfull", framework.WithLogDirectory(logDir))
	// ~400 KiB of lines, then wait: the log fills up after ~64 KiB.
	cfg := framework.NewContainerConfig("writer", framework.BusyboxImageRef,
		ctrSh("i=0; while [ $i -lt 4000 ]; do echo line-$i-padding-padding-padding-padding-padding-padding-padding-padding-padding; i=$((i+1)); done; echo writer-done; sleep 3600")...)
	started := time.Now()
	id := e.run(podID, podCfg, cfg)

	re := regexp.MustCompile(`(?m)^cri_containerd_container_log_write_errors_total (\d+)`)
	var dropped int
	ctrWaitFor(t, 60*time.Second, "log write errors counted", func() bool {
		m := re.FindStringSubmatch(scrapeMetrics(t, metricsAddr))
		if m == nil {
			return false
		}
		dropped, _ = strconv.Atoi(m[1])
		return dropped >= 1000
	})
	t.Logf("records dropped on the full log file system: %d", dropped)
	if st := framework.ContainerStatusOrFail(t, rc, id); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container state %s after its log file system filled up, want RUNNING", st.State)
	}
	// The daemon still serves the container.
	out, _, code := framework.ExecSyncOrFail(t, rc, id, 10*time.Second, "echo", "alive")
	if code != 0 || out != "alive\n" {
		t.Errorf("exec in the container: %q, %d", out, code)
	}
	checkLogWriteFailureReported(t, e.d, id, started)
}

// checkLogWriteFailureReported checks that the daemon's log reports the log
// write failures of container id at least once and at most once a minute
// since started (a test that runs within its first minute: exactly once).
func checkLogWriteFailureReported(t *testing.T, d *framework.Daemon, id string, started time.Time) {
	t.Helper()
	b, err := os.ReadFile(d.LogPath())
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
}
