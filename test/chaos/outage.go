package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The outage scenario: writers print 1 MiB/s each (1024 numbered lines of
// about 1 KiB per second) and record their progress in their own rootfs
// (/tmp/progress, read through /proc/<pid>/root while the daemon is down);
// the daemon is killed for OutageSeconds. Half the writers finish while it
// is down. Blocked writers (progress stalled for 3 s or more while the
// daemon was down), lost lines and lost exits are measured.

type writer struct {
	rec     CtrRec
	podID   string
	seconds int
	pid     uint32

	mu        sync.Mutex
	last      string
	lastMove  time.Time
	maxStall  time.Duration
	exitedAt  time.Time
	exitedRun bool
}

// writerCmd prints 1024 lines of ~1 KiB per second for seconds, then, when
// tail > 0, sleeps pause seconds and prints tail more lines (less than the
// pipe buffer) before it exits with code.
func writerCmd(seconds, pause, tail int, code int32) []string {
	prog := fmt.Sprintf(`BEGIN { pad = sprintf("%%1000s", ""); gsub(/ /, "x", pad);
  for (s = 0; s < %d; s++) {
    for (i = 0; i < 1024; i++) printf "W%%d %%s\n", s * 1024 + i, pad;
    fflush();
    printf "%%d\n", s > "/tmp/progress"; close("/tmp/progress");
    system("sleep 1");
  }
  if (%d > 0) {
    system("sleep %d");
    for (i = 0; i < %d; i++) printf "W%%d %%s\n", s * 1024 + i, pad;
    fflush();
  }
  exit %d }`, seconds, tail, pause, tail, code)
	return []string{"awk", prog}
}

// RunOutage runs the scenario and cleans up its pods.
func RunOutage(ctx context.Context, d *Driver, env *Env, o Options) (*OutageResult, error) {
	res := &OutageResult{Writers: o.OutageWriters, RatePerWriter: 1 << 20, Outage: time.Duration(o.OutageSeconds) * time.Second}
	logDir := filepath.Join(env.LibDir, "outage-logs") // on disk: the tmpfs is too small for this
	var ws []*writer
	defer func() {
		cctx := context.WithoutCancel(ctx)
		for _, w := range ws {
			d.stopCtr(cctx, w.rec.ID)
			d.removeCtr(cctx, w.rec.ID)
			d.stopRemovePod(cctx, w.podID)
		}
		_ = os.RemoveAll(logDir)
	}()
	lead := 6 // seconds of output before the kill
	for i := 0; i < o.OutageWriters; i++ {
		// odd writers write 1 MiB/s through the whole outage and outlive it;
		// even ones stop writing just before it, then, while the daemon is
		// down, print 32 lines (32 KiB, within the pipe buffer) and exit.
		secs, pause, tail := lead+o.OutageSeconds+20, 0, 0
		if i%2 == 0 {
			secs, pause, tail = lead-2, 6, 32
		}
		name := fmt.Sprintf("outage-%d", i)
		podID, pcfg, ok := d.runPod(ctx, name, logDir)
		if !ok {
			return res, fmt.Errorf("outage: RunPodSandbox %s failed", name)
		}
		rec := CtrRec{Name: "writer", Kind: KindExit, ExitCode: int32(10 + i), Lines: secs*1024 + tail, LogExempt: true}
		rec, ok = d.createCtr(ctx, podID, pcfg, rec, writerCmd(secs, pause, tail, int32(10+i)))
		if !ok {
			d.stopRemovePod(ctx, podID)
			return res, fmt.Errorf("outage: CreateContainer in %s failed", name)
		}
		ws = append(ws, &writer{rec: rec, podID: podID, seconds: secs})
	}
	for _, w := range ws {
		if !d.startCtr(ctx, w.rec.ID) {
			return res, fmt.Errorf("outage: StartContainer %s failed", w.rec.ID)
		}
		r, err := env.Ctrd.TaskService().Get(NSContext(ctx), &tasks.GetRequest{ContainerID: w.rec.ID})
		if err != nil {
			return res, fmt.Errorf("outage: task of %s: %w", w.rec.ID, err)
		}
		w.pid = r.Process.Pid
		w.lastMove = time.Now()
	}
	res.LinesExpected = 0
	for _, w := range ws {
		res.LinesExpected += w.rec.Lines
	}
	time.Sleep(time.Duration(lead) * time.Second)
	logf("outage: %d writers at 1 MiB/s; killing the daemon for %ds", len(ws), o.OutageSeconds)
	d.model.MarkDaemonDown()
	env.Daemon.Kill9()
	down := time.Now()
	for _, w := range ws {
		w.lastMove = down
	}
	for time.Since(down) < res.Outage {
		now := time.Now()
		for _, w := range ws {
			w.sample(now)
		}
		time.Sleep(250 * time.Millisecond)
	}
	for _, w := range ws {
		w.sample(time.Now())
		if w.maxStall >= 3*time.Second {
			res.Blocked++
		}
		res.MaxStall = max(res.MaxStall, w.maxStall)
		if w.exitedRun {
			res.ExitedDuring++
		}
	}
	took, err := env.StartDaemon(ctx)
	if err != nil {
		return res, fmt.Errorf("%w: daemon restart after the outage: %v", errFatal, err)
	}
	res.Recovered, res.RecoverSeconds = true, took.Seconds()
	logf("outage: daemon back in %s; %d writer(s) stalled >= 3s, %d exited while it was down", took.Round(time.Millisecond), res.Blocked, res.ExitedDuring)
	for _, w := range ws {
		deadline := time.Now().Add(time.Duration(w.seconds)*time.Second + 2*time.Minute)
		var st *runtimeapi.ContainerStatus
		for time.Now().Before(deadline) {
			st, err = d.ctrStatus(ctx, w.rec.ID)
			if err == nil && st.State == runtimeapi.ContainerState_CONTAINER_EXITED {
				break
			}
			time.Sleep(time.Second)
		}
		if st == nil || st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != w.rec.ExitCode {
			res.LostExits++
			got := "no status"
			if st != nil {
				got = fmt.Sprintf("%s exit %d", st.State, st.ExitCode)
			}
			logf("outage: writer %s: exit %d expected, got %s", w.rec.ID[:12], w.rec.ExitCode, got)
		}
		time.Sleep(2 * time.Second) // the last lines reach the file
		data, err := os.ReadFile(w.rec.LogPath)
		if err != nil {
			res.LinesLost += w.rec.Lines
			continue
		}
		recs, _ := ParseCRILog(data)
		st2 := Sequence(LogLines(recs, "stdout"), "W")
		lost := w.rec.Lines - st2.Seen
		res.LinesLost += max(lost, 0)
		logf("outage: writer %s (%d s at 1 MiB/s, exited while the daemon was down: %v): %d of %d lines, max stall %s", w.rec.ID[:12], w.seconds, w.exitedRun, st2.Seen, w.rec.Lines, w.maxStall.Round(100*time.Millisecond))
	}
	return res, nil
}

// sample reads the writer's progress file through its rootfs.
func (w *writer) sample(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.exitedRun {
		return
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/tmp/progress", w.pid))
	if err != nil {
		if _, serr := os.Stat(fmt.Sprintf("/proc/%d", w.pid)); serr != nil {
			w.exitedRun, w.exitedAt = true, now
		}
		return
	}
	cur := strings.TrimSpace(string(b))
	if cur != w.last {
		w.last, w.lastMove = cur, now
		return
	}
	if n, err := strconv.Atoi(cur); err == nil && n >= w.seconds-1 {
		return // done with the 1 MiB/s part: pausing or printing its tail
	}
	// a writer sleeps 1 s between bursts: a stall is time without progress beyond that
	if s := now.Sub(w.lastMove) - time.Second; s > w.maxStall {
		w.maxStall = s
	}
}

// runDoctor runs `cri-containerd doctor --json` with the daemon's flags
// when the binary has that subcommand, and records the orphans it reports.
func runDoctor(ctx context.Context, env *Env, rep *Report) {
	if env.Daemon == nil {
		return
	}
	args := append(append([]string{}, env.Daemon.Args...), "doctor", "--json")
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	var stderr strings.Builder
	cmd := exec.CommandContext(cctx, env.Daemon.Path, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	_ = os.WriteFile(filepath.Join(env.OutDir, "doctor.json"), out, 0o644)
	if strings.Contains(stderr.String(), "unknown command") {
		rep.Notes = append(rep.Notes, "cri-containerd doctor: not in this binary, skipped")
		return
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		rep.Notes = append(rep.Notes, "cri-containerd doctor: "+err.Error())
		return
	}
	n, ok := countOrphans(out)
	if !ok || code > 1 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("cri-containerd doctor exited %d without a JSON report: %s", code, strings.TrimSpace(stderr.String())))
		return
	}
	if code == 1 && n == 0 {
		n = 1 // it says there are orphans
	}
	rep.DoctorOrphans = n
	if n > 0 {
		rep.Notes = append(rep.Notes, "cri-containerd doctor found orphans: see "+filepath.Join(env.OutDir, "doctor.json"))
	}
}

// countOrphans counts the orphans in doctor's JSON report: its "findings"
// that are not marked young (too recent to judge).
func countOrphans(out []byte) (int, bool) {
	var r struct {
		Findings []struct {
			Young bool `json:"young"`
		} `json:"findings"`
	}
	if json.Unmarshal(out, &r) != nil {
		return 0, false
	}
	n := 0
	for _, f := range r.Findings {
		if !f.Young {
			n++
		}
	}
	return n, true
}
