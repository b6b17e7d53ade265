package e2e

// Container output across a daemon outage with container_log_mode = "shim":
// the log writer runs under the containerd shim, so a kill -9 of the daemon
// neither blocks a container that writes a lot nor loses the output of one
// that exits meanwhile.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// shimlogOutage is how long the daemon stays down.
const shimlogOutage = 30 * time.Second

// shimlogFloodScript prints "seq N T <pad>" lines (T: the container's clock in
// seconds), ~100 bytes each, in batches of 1000 lines followed by a 50 ms
// sleep: about 1 MiB/s. With a line count, it prints that many lines as fast
// as it can, then an incomplete line, and exits 3.
func shimlogFloodScript(lines int) []string {
	pad := strings.Repeat("x", 80)
	pause, stop := `system("sleep 0.05")`, ""
	if lines > 0 {
		pause = "i = i"
		stop = fmt.Sprintf(`if (i >= %d) { printf "tail-without-newline"; fflush(); exit 3 }`, lines)
	}
	prog := fmt.Sprintf(`BEGIN { srand(); t = srand(); while (1) { for (j = 0; j < 1000; j++) { i++; printf "seq %%d %%d %s\n", i, t; %s } fflush(); %s; srand(); t = srand() } }`, pad, stop, pause)
	return []string{"awk", prog}
}

type seqLine struct {
	n    int
	t    int64     // container clock, seconds
	crit time.Time // CRI record timestamp (when the writer read it)
}

// shimlogRecords parses the "seq" lines of the given log files (in rotation
// order).
func shimlogRecords(t *testing.T, files ...string) (seqs []seqLine, other []framework.CRILogRecord) {
	t.Helper()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("reading %s: %v", f, err)
		}
		recs, err := framework.ParseCRILog(b)
		if err != nil {
			t.Fatalf("parsing %s: %v", f, err)
		}
		for _, r := range recs {
			fs := strings.Fields(r.Content)
			if r.Stream == "stdout" && r.Tag == "F" && len(fs) >= 3 && fs[0] == "seq" {
				n, err1 := strconv.Atoi(fs[1])
				ts, err2 := strconv.ParseInt(fs[2], 10, 64)
				if err1 == nil && err2 == nil {
					seqs = append(seqs, seqLine{n: n, t: ts, crit: r.Time})
					continue
				}
			}
			other = append(other, r)
		}
	}
	return seqs, other
}

// checkSeq verifies 1..N without gap or duplicate and returns N.
func checkSeq(t *testing.T, what string, seqs []seqLine) int {
	t.Helper()
	for i, s := range seqs {
		if s.n != i+1 {
			t.Fatalf("%s: line %d is seq %d (lost or duplicated lines)", what, i+1, s.n)
		}
	}
	return len(seqs)
}

// maxStall is the longest interval between two consecutive records as the
// writer stamped them.
func maxStall(seqs []seqLine) time.Duration {
	var m time.Duration
	for i := 1; i < len(seqs); i++ {
		if d := seqs[i].crit.Sub(seqs[i-1].crit); d > m {
			m = d
		}
	}
	return m
}

// perSecond counts the lines the container printed in each second of its
// clock in [from, to].
func perSecond(seqs []seqLine, from, to int64) map[int64]int {
	m := map[int64]int{}
	for s := from; s <= to; s++ {
		m[s] = 0
	}
	for _, s := range seqs {
		if s.t >= from && s.t <= to {
			m[s.t]++
		}
	}
	return m
}

// lockedBuffer collects attached output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestShimLogDaemonOutage: with the shim log writer, a container writing
// ~1 MiB/s keeps writing through a 30 s kill -9 outage of the daemon with no
// line lost, a container that exits during the outage has all its output
// (and its exit code) after the restart, rotation through ReopenContainerLog
// loses nothing, and attach works after the restart.
func TestShimLogDaemonOutage(t *testing.T) {
	e := newCtrEnv(t, "--container-log-mode", "shim")
	podID, podCfg := e.runPod("shimlog")

	floodCfg := framework.NewContainerConfig("flood", framework.BusyboxImageRef, shimlogFloodScript(0)...)
	floodID := e.run(podID, podCfg, floodCfg)
	floodLog := ctrLogPath(podCfg, floodCfg)

	// Exits during the outage: waits 8 s, prints 100000 lines (~10 MB,
	// far beyond the pipe buffer) and an incomplete line, exits 3.
	const exiterLines = 100000
	exitCfg := framework.NewContainerConfig("exiter", framework.BusyboxImageRef,
		"sh", "-c", "sleep 8; exec "+shellQuote(shimlogFloodScript(exiterLines)))
	exitID := e.run(podID, podCfg, exitCfg)
	exitLog := ctrLogPath(podCfg, exitCfg)

	// The writer runs under the shim: a control socket per container.
	for _, id := range []string{floodID, exitID} {
		if _, err := os.Stat(filepath.Join(e.d.StateDir(), "containers", id, "log.sock")); err != nil {
			t.Fatalf("no shim log writer for %s: %v", id, err)
		}
	}
	framework.WaitForCRILog(t, floodLog, 30*time.Second, "1000 lines", func(r []framework.CRILogRecord) bool { return len(r) >= 1000 })

	framework.KillDaemon(t, e.d)
	killedAt := time.Now()
	t.Logf("daemon killed; down for %s", shimlogOutage)
	time.Sleep(shimlogOutage)
	e.d.Restart()
	restartedAt := time.Now()
	rc := e.rc()

	// The exiter: exit code and complete output.
	st := framework.WaitForContainerState(t, rc, exitID, runtimeapi.ContainerState_CONTAINER_EXITED, time.Minute)
	if st.GetExitCode() != 3 {
		t.Errorf("exiter exit code %d, want 3 (reason %q)", st.GetExitCode(), st.GetReason())
	}
	if fin := time.Unix(0, st.GetFinishedAt()); fin.Before(killedAt) || fin.After(restartedAt) {
		t.Errorf("exiter finished at %s, not during the outage [%s, %s]", fin, killedAt, restartedAt)
	}
	exitSeqs, exitOther := shimlogRecords(t, exitLog)
	if n := checkSeq(t, "exiter", exitSeqs); n != exiterLines {
		t.Errorf("exiter log has %d lines, want %d", n, exiterLines)
	}
	if len(exitOther) != 1 || exitOther[0].Tag != "P" || exitOther[0].Content != "tail-without-newline" {
		t.Errorf("exiter's last incomplete line: %+v", exitOther)
	}

	// The flood: attach after the restart.
	attachOut := &lockedBuffer{}
	actx, acancel := context.WithTimeout(context.Background(), 30*time.Second)
	u := streamAttachURL(t, rc, &runtimeapi.AttachRequest{ContainerId: floodID, Stdout: true, Stderr: true})
	adone := make(chan error, 1)
	go func() {
		adone <- framework.StreamSPDY(actx, u, framework.StreamOptions{Stdout: attachOut, Stderr: &lockedBuffer{}})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(attachOut.String(), "\nseq ") < 1000 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	acancel()
	<-adone
	if got := strings.Count(attachOut.String(), "\nseq "); got < 1000 {
		t.Errorf("attach after the restart got %d lines in 20s, want >= 1000", got)
	}

	// Rotation as kubelet does it: rename, then ReopenContainerLog.
	var files []string
	for i := 1; i <= 3; i++ {
		time.Sleep(time.Second)
		f := fmt.Sprintf("%s.%d", floodLog, i)
		if err := os.Rename(floodLog, f); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		ctx, cancel := context.WithTimeout(context.Background(), framework.CallTimeout)
		_, err := rc.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: floodID})
		cancel()
		if err != nil {
			t.Fatalf("ReopenContainerLog %d: %v", i, err)
		}
	}
	time.Sleep(time.Second)
	framework.StopContainerOrFail(t, rc, floodID, 10)
	files = append(files, floodLog)

	seqs, other := shimlogRecords(t, files...)
	written := checkSeq(t, "flood", seqs)
	for _, o := range other {
		// The container is killed mid-line at the end at most.
		if o.Tag != "P" {
			t.Errorf("unexpected record in the flood log: %+v", o)
		}
	}
	// The container's own rate during the outage: every second of its
	// clock strictly inside the outage has lines.
	outFrom, outTo := killedAt.Unix()+1, restartedAt.Unix()-1
	ps := perSecond(seqs, outFrom, outTo)
	minRate, outageLines := -1, 0
	for _, n := range ps {
		outageLines += n
		if minRate < 0 || n < minRate {
			minRate = n
		}
	}
	stall := maxStall(seqs)
	t.Logf("flood: %d lines written and logged, 0 lost; %d lines during the %s outage (min %d lines/s, %.2f MiB/s); max stall between records %s",
		written, outageLines, shimlogOutage, minRate, float64(outageLines)*100/float64(outTo-outFrom+1)/(1<<20), stall)
	t.Logf("exiter: %d lines + 1 partial, exit code %d, finished %s after the kill", len(exitSeqs), st.GetExitCode(),
		time.Unix(0, st.GetFinishedAt()).Sub(killedAt).Round(time.Millisecond))
	if minRate < 100 {
		t.Errorf("the container stalled during the outage: lines per second %v", ps)
	}
	if stall > 5*time.Second {
		t.Errorf("max stall between log records %s", stall)
	}
}

// shellQuote quotes args for sh -c.
func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// TestShimLogDaemonModeBaseline measures the same outage with
// container_log_mode = "daemon" (the daemon reads the FIFOs), for
// comparison. It asserts nothing; it runs only with CRI_E2E_SHIMLOG_BASELINE=1.
func TestShimLogDaemonModeBaseline(t *testing.T) {
	if os.Getenv("CRI_E2E_SHIMLOG_BASELINE") != "1" {
		t.Skip("set CRI_E2E_SHIMLOG_BASELINE=1 to measure the daemon log mode")
	}
	e := newCtrEnv(t, "--container-log-mode", "daemon")
	podID, podCfg := e.runPod("shimlog-baseline")
	floodCfg := framework.NewContainerConfig("flood", framework.BusyboxImageRef, shimlogFloodScript(0)...)
	floodID := e.run(podID, podCfg, floodCfg)
	const exiterLines = 100000
	exitCfg := framework.NewContainerConfig("exiter", framework.BusyboxImageRef,
		"sh", "-c", "sleep 8; exec "+shellQuote(shimlogFloodScript(exiterLines)))
	exitID := e.run(podID, podCfg, exitCfg)
	framework.WaitForCRILog(t, ctrLogPath(podCfg, floodCfg), 30*time.Second, "1000 lines", func(r []framework.CRILogRecord) bool { return len(r) >= 1000 })
	framework.KillDaemon(t, e.d)
	killedAt := time.Now()
	time.Sleep(shimlogOutage)
	e.d.Restart()
	restartedAt := time.Now()
	rc := e.rc()
	st := framework.WaitForContainerState(t, rc, exitID, runtimeapi.ContainerState_CONTAINER_EXITED, time.Minute)
	time.Sleep(3 * time.Second)
	framework.StopContainerOrFail(t, rc, floodID, 10)
	exitSeqs, _ := shimlogRecords(t, ctrLogPath(podCfg, exitCfg))
	seqs, _ := shimlogRecords(t, ctrLogPath(podCfg, floodCfg))
	lost := 0
	for i := 1; i < len(seqs); i++ {
		lost += seqs[i].n - seqs[i-1].n - 1
	}
	ps := perSecond(seqs, killedAt.Unix()+1, restartedAt.Unix()-1)
	outageLines := 0
	for _, n := range ps {
		outageLines += n
	}
	t.Logf("daemon mode: flood %d lines logged, %d lost (gaps); %d lines printed during the %s outage; max stall between records %s",
		len(seqs), lost, outageLines, shimlogOutage, maxStall(seqs))
	t.Logf("daemon mode: exiter exit code %d, %d of %d lines logged (%d lost)", st.GetExitCode(), len(exitSeqs), exiterLines, exiterLines-len(exitSeqs))
}
