package e2e

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// TestKubeletLogRotation: kubelet rotates the log of a chatty container
// (containerLogMaxSize 1Ki, checked every 3s): it renames the file and calls
// ReopenContainerLog, which must make our daemon write to a new file without
// losing or repeating a line. After several rotations (more than
// containerLogMaxFiles, so kubelet also compressed and removed old files) the
// retained files, in order, hold one unbroken run of the container's
// sequence numbers ending in the current file, which keeps growing.
func TestKubeletLogRotation(t *testing.T) {
	const maxFiles = 4
	_, k := kubeletDaemon(t, framework.KubeletOptions{Config: map[string]any{
		"containerLogMaxSize":         "1Ki",
		"containerLogMaxFiles":        maxFiles,
		"containerLogMonitorInterval": "3s",
	}})
	const name = "logrotate"
	pod := busyboxPod(name, map[string]string{
		"chatty": "i=0; while true; do i=$((i+1)); echo seq $i; sleep 0.02; done",
	})
	k.AddStaticPod(pod)
	sp := k.WaitStaticPodRunning(t, "default", name, 3*time.Minute, "chatty")
	ctr := sp.Containers["chatty"]
	logPath := framework.ContainerStatusOrFail(t, k.Daemon.RuntimeClient(), ctr.GetId()).GetLogPath()
	if logPath == "" {
		t.Fatal("container status has no log path")
	}
	t.Logf("log: %s", logPath)

	// Watch the rotations: every rotated file carries the time of its
	// rotation in its name.
	rotated := map[string]bool{}
	deadline := time.Now().Add(3 * time.Minute)
	const wantRotations = maxFiles + 3
	for len(rotated) < wantRotations {
		if time.Now().After(deadline) {
			k.DumpLog(60)
			t.Fatalf("%d rotations seen within 3m, want %d: %v", len(rotated), wantRotations, rotated)
		}
		ms, _ := filepath.Glob(logPath + ".*")
		for _, m := range ms {
			stamp := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(m, logPath+"."), ".tmp"), ".gz")
			rotated[stamp] = true
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Stop kubelet so that the files hold still (the container runs on and
	// keeps writing its current log).
	k.Stop()
	for _, bad := range []string{"Failed to rotate log", "reopen container log failed", "Failed to rename rotated log"} {
		if k.LogContains(bad) {
			k.DumpLog(60)
			t.Errorf("kubelet logged %q", bad)
		}
	}

	files, nums := readRotatedLogs(t, logPath)
	t.Logf("%d rotations seen; files now: %v; %d lines, %d..%d", len(rotated), files, len(nums), nums[0], nums[len(nums)-1])
	if len(files) > maxFiles {
		t.Errorf("%d log files kept, containerLogMaxFiles is %d: %v", len(files), maxFiles, files)
	}
	if !slices.ContainsFunc(files, func(f string) bool { return strings.HasSuffix(f, ".gz") }) {
		t.Errorf("no compressed rotated log among %v", files)
	}
	if nums[0] == 1 {
		t.Errorf("the retained logs start at line 1 after %d rotations: kubelet removed nothing", len(rotated))
	}
	for i := 1; i < len(nums); i++ {
		if nums[i] != nums[i-1]+1 {
			lo, hi := max(0, i-3), min(len(nums), i+3)
			t.Fatalf("sequence broken at line %d of the concatenated logs: %v (a line lost or repeated across a rotation)", i, nums[lo:hi])
		}
	}

	// The current file keeps growing, continuing the sequence.
	last := nums[len(nums)-1]
	framework.WaitForCRILog(t, logPath, time.Minute, "the current log to grow", func(recs []framework.CRILogRecord) bool {
		got := framework.SequenceNumbers(framework.CRILogLines(recs, "stdout"), "seq")
		return len(got) > 0 && got[len(got)-1] > last+20
	})
	_, after := readRotatedLogs(t, logPath)
	for i := 1; i < len(after); i++ {
		if after[i] != after[i-1]+1 {
			t.Fatalf("sequence broken after the rotations at %d: %d then %d", i, after[i-1], after[i])
		}
	}
}

// readRotatedLogs reads a container's rotated logs (oldest first, gunzipped;
// kubelet's temporary files and an uncompressed twin of a .gz are skipped)
// and then its current log, and returns the file names and the "seq N"
// numbers in order. A file that vanishes while being read (compressed or
// removed by kubelet) restarts the read.
func readRotatedLogs(t *testing.T, logPath string) ([]string, []int) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		files, nums, err := tryReadRotatedLogs(logPath)
		if err == nil {
			if len(nums) == 0 {
				t.Fatalf("no sequence lines in %v", files)
			}
			return files, nums
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt > 20 {
			t.Fatalf("reading the logs of %s: %v", logPath, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tryReadRotatedLogs(logPath string) ([]string, []int, error) {
	ms, err := filepath.Glob(logPath + ".*")
	if err != nil {
		return nil, nil, err
	}
	have := map[string]bool{}
	for _, m := range ms {
		have[m] = true
	}
	var rot []string
	for _, m := range ms {
		if strings.HasSuffix(m, ".tmp") || have[m+".gz"] {
			continue
		}
		rot = append(rot, m)
	}
	sort.Strings(rot) // names end in the rotation time (YYYYMMDD-hhmmss)
	files := append(rot, logPath)
	var nums []int
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, err
		}
		if strings.HasSuffix(f, ".gz") {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				return nil, nil, err
			}
			if b, err = io.ReadAll(zr); err != nil {
				return nil, nil, err
			}
		}
		// Only the current file can end in a torn line (a record is one write).
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			b = b[:i+1]
		} else {
			b = nil
		}
		recs, err := framework.ParseCRILog(b)
		if err != nil {
			return nil, nil, err
		}
		nums = append(nums, framework.SequenceNumbers(framework.CRILogLines(recs, "stdout"), "seq")...)
		names = append(names, filepath.Base(f))
	}
	return names, nums, nil
}
