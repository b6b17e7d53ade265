package e2e

// The two gaps of container_log_mode = "shim" closed later: the log write
// errors of the shim-side writer in the daemon's metric, and containers with
// stdin.

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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
	checkLogWriteFailureReported(t, e.d, id, started)

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

// shimlogTTYAttach attaches to a TTY container with stdin and a size queue.
func shimlogTTYAttach(t *testing.T, rc runtimeapi.RuntimeServiceClient, id string) (*streamAttachSession, *framework.SizeQueue) {
	t.Helper()
	u := streamAttachURL(t, rc, &runtimeapi.AttachRequest{ContainerId: id, Stdin: true, Stdout: true, Tty: true})
	ctx, cancel := context.WithCancel(context.Background())
	inR, inW := io.Pipe()
	s := &streamAttachSession{stdin: inW, out: &streamBuffer{}, errOut: &streamBuffer{}, cancel: cancel, done: make(chan error, 1)}
	q := framework.NewSizeQueue(ctx)
	q.C <- framework.TerminalSize{Width: 80, Height: 24}
	go func() {
		s.done <- framework.StreamSPDY(ctx, u, framework.StreamOptions{Stdin: inR, Stdout: s.out, Tty: true, TerminalSizeQueue: q})
	}()
	t.Cleanup(s.detach)
	return s, q
}

// TestShimLogStdinContainers: in shim mode a container with stdin and a
// terminal hands its output to the shim-side writer too (it used to stay on
// the daemon's FIFOs): its output goes on being logged while the daemon is
// down (kill -9, 5 s), and attach (stdin, output, resize) works before and
// after the restart. A container with stdin and no terminal keeps the FIFOs
// (the runc shim gives such a task no stdin with a log URI); it still works.
func TestShimLogStdinContainers(t *testing.T) {
	e := newCtrEnv(t, "--container-log-mode", "shim")
	rc := e.rc()
	podID, podCfg := e.runPod("shimlogstdin")

	cfg := framework.NewContainerConfig("tty-stdin", framework.BusyboxImageRef,
		ctrSh("(i=0; while :; do echo tick-$i; i=$((i+1)); sleep 0.2; done) & exec sh")...)
	cfg.Stdin, cfg.Tty = true, true
	id := e.run(podID, podCfg, cfg)
	logPath := ctrLogPath(podCfg, cfg)
	if _, err := os.Stat(filepath.Join(e.d.StateDir(), "containers", id, "log.sock")); err != nil {
		t.Fatalf("container with stdin and a terminal has no shim log writer: %v", err)
	}
	ctrWaitLogLine(t, logPath, "stdout", "tick-3", 30*time.Second)

	s, q := shimlogTTYAttach(t, rc, id)
	s.send(t, "echo before-$((20+1))\n")
	streamWaitOutput(t, s.out, "before-21\r\n", 30*time.Second)
	s.send(t, "stty size\n")
	streamWaitOutput(t, s.out, "24 80", 30*time.Second)
	q.C <- framework.TerminalSize{Width: 132, Height: 43}
	time.Sleep(500 * time.Millisecond) // the resize goes through the task, not the stream
	s.send(t, "stty size\n")
	streamWaitOutput(t, s.out, "43 132", 30*time.Second)
	s.detach()
	_ = s.wait(t, 30*time.Second)

	framework.KillDaemon(t, e.d)
	killedAt := time.Now()
	time.Sleep(5 * time.Second)
	e.d.Restart()
	restartedAt := time.Now()
	rc = e.rc()
	if st := framework.ContainerStatusOrFail(t, rc, id); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("after the restart: state %s", st.State)
	}
	// Output written while the daemon was down was logged then.
	var during int
	for _, r := range framework.ReadCRILog(t, logPath) {
		if strings.HasPrefix(r.Content, "tick-") && r.Time.After(killedAt.Add(time.Second)) && r.Time.Before(restartedAt.Add(-time.Second)) {
			during++
		}
	}
	t.Logf("%d lines logged during the %s outage", during, restartedAt.Sub(killedAt).Round(time.Millisecond))
	if during < 5 {
		t.Errorf("%d lines logged while the daemon was down, want >= 5 (a line every 0.2 s)", during)
	}

	s2, q2 := shimlogTTYAttach(t, rc, id)
	s2.send(t, "echo after-$((2+3))\n")
	streamWaitOutput(t, s2.out, "after-5\r\n", 30*time.Second)
	q2.C <- framework.TerminalSize{Width: 100, Height: 30}
	time.Sleep(500 * time.Millisecond)
	s2.send(t, "stty size\n")
	streamWaitOutput(t, s2.out, "30 100", 30*time.Second)
	s2.send(t, "exit 7\n")
	if err := s2.wait(t, 30*time.Second); err != nil {
		t.Logf("attach ended with %v", err)
	}
	st := framework.WaitForContainerState(t, rc, id, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second)
	if st.ExitCode != 7 {
		t.Errorf("exit code %d, want 7", st.ExitCode)
	}
	lines := framework.CRILogLines(framework.ReadCRILog(t, logPath), "stdout")
	for _, want := range []string{"before-21", "after-5", "43 132", "30 100"} {
		if !slices.Contains(lines, want) {
			t.Errorf("container log lacks %q", want)
		}
	}

	// stdin without a terminal: the daemon's FIFOs, attach still works.
	cfg2 := framework.NewContainerConfig("stdin-only", framework.BusyboxImageRef, "sh")
	cfg2.Stdin = true
	id2 := e.run(podID, podCfg, cfg2)
	if _, err := os.Stat(filepath.Join(e.d.StateDir(), "containers", id2, "log.sock")); err == nil {
		t.Errorf("container with stdin and no terminal uses the shim log writer (its stdin would be /dev/null)")
	}
	s3 := streamStartAttach(t, rc, id2, false)
	s3.send(t, "echo plain-$((3*3))\n")
	streamWaitOutput(t, s3.out, "plain-9\n", 30*time.Second)
	s3.detach()
	_ = s3.wait(t, 30*time.Second)
}
