package main

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestQuantile(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct{ q, want float64 }{{.5, 5}, {.9, 9}, {.99, 10}, {0, 1}, {1, 10}} {
		if got := quantile(s, tc.q); got != tc.want {
			t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if !math.IsNaN(quantile(nil, .5)) {
		t.Error("quantile of nothing must be NaN")
	}
}

func TestParseProc(t *testing.T) {
	stat := "123 (cri containerd) S 1 123 123 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 100 0 0"
	if got := parseStatCPU(stat, 100); got != 3 {
		t.Errorf("cpu = %v, want 3 (250+50 ticks)", got)
	}
	rss, hwm, threads := parseStatus(strings.NewReader("Name:\tx\nVmHWM:\t  40960 kB\nVmRSS:\t  20480 kB\nThreads:\t12\n"))
	if rss != 20 || hwm != 40 || threads != 12 {
		t.Errorf("status = %v %v %v", rss, hwm, threads)
	}
	if n := parseGoroutines(strings.NewReader("# HELP go_goroutines x\n# TYPE go_goroutines gauge\ngo_goroutines 42\n")); n != 42 {
		t.Errorf("goroutines = %d", n)
	}
}

func TestRecorder(t *testing.T) {
	r := newRecorder()
	_ = r.time("A", func() error { return nil })
	_ = r.time("A", func() error { return errors.New("boom") })
	if len(r.lat["A"]) != 1 || r.errs["A"] != 1 || r.firstErr["A"] != "boom" {
		t.Errorf("recorder = %v %v %v", r.lat, r.errs, r.firstErr)
	}
}

func TestReport(t *testing.T) {
	a := &Result{Name: "ours", Pods: 2, Containers: 1, Clients: 1, UpSeconds: 1, DownSeconds: 0.5,
		Latencies:  map[string][]float64{"RunPodSandbox": {100, 200}, "ListContainerStats": {1, 2, 3}},
		Errors:     map[string]int{"ListContainerStats": 1},
		CPUSeconds: map[string]float64{"up": 1, "down": 1},
		Process:    []ProcSample{{Phase: "idle", RSSMiB: 20, Goroutines: 30}, {Phase: "running", RSSMiB: 40}}}
	b := &Result{Name: "ref", Pods: 2, Containers: 1, Clients: 1, UpSeconds: 2, DownSeconds: 1,
		Latencies: map[string][]float64{"RunPodSandbox": {200, 400}}}
	var out bytes.Buffer
	WriteTable(&out, []*Result{a, b})
	for _, want := range []string{"RunPodSandbox", "0.50x", "(1 err)", "1000", "ours", "ref"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Index(out.String(), "RunPodSandbox") > strings.Index(out.String(), "ListContainerStats") {
		t.Error("lifecycle RPCs come before polled ones")
	}
	var svg bytes.Buffer
	WriteSVG(&svg, []*Result{a, b})
	s := svg.String()
	if !strings.HasPrefix(s, "<svg") || !strings.HasSuffix(strings.TrimSpace(s), "</svg>") || strings.Count(s, "<rect") < 5 || strings.Contains(s, "NaN") {
		t.Errorf("svg:\n%s", s)
	}
}

func TestFloorTable(t *testing.T) {
	r := &FloorResult{Name: "cri-containerd", Round: 3, NetNS: []float64{1, 2, 3}, CNIAdd: []float64{10, 30, 20},
		TaskCreate: []float64{40, 50, 60}, TaskStart: []float64{5, 5, 5}, Floor: []float64{56, 87, 88},
		RunPodSandbox: []float64{70, 90, 80}}
	r.MedianFloor, r.MedianRunPod = median(r.Floor), median(r.RunPodSandbox)
	if r.MedianFloor != 87 || r.MedianRunPod != 80 {
		t.Fatalf("medians %v %v, want 87 80", r.MedianFloor, r.MedianRunPod)
	}
	if r.Floor[0] != 56 {
		t.Fatal("median sorted its input")
	}
	var b strings.Builder
	WriteFloorTable(&b, []*FloorResult{r})
	if !strings.Contains(b.String(), "cri-containerd") || !strings.Contains(b.String(), "RunPodSandbox   80.0") {
		t.Errorf("table:\n%s", b.String())
	}
}

// TestLogWriters: the log writer processes are found by command name and
// their Pss summed; other processes are not counted.
func TestLogWriters(t *testing.T) {
	root := t.TempDir()
	proc := func(pid, comm string, pssKB int) {
		dir := filepath.Join(root, pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "comm"), []byte(comm+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		smaps := fmt.Sprintf("00400000-7fff [rollup]\nRss:  3300 kB\nPss:  %d kB\nPss_Anon: 840 kB\n", pssKB)
		if err := os.WriteFile(filepath.Join(dir, "smaps_rollup"), []byte(smaps), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	proc("10", "cri-containerd-", 1024)
	proc("11", "cri-containerd-", 2048)
	proc("12", "cri-containerd", 40960) // the daemon
	proc("13", "containerd-shim", 8192)
	if err := os.MkdirAll(filepath.Join(root, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	n, pss := logWriters(root)
	if n != 2 || pss != 3 {
		t.Errorf("logWriters = %d, %.2f MiB; want 2, 3", n, pss)
	}
}
