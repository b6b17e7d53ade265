package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// ProcSample is the daemon's process at one point of the run.
type ProcSample struct {
	Phase      string  `json:"phase"`
	RSSMiB     float64 `json:"rssMiB"`
	HWMMiB     float64 `json:"hwmMiB"`
	Threads    int     `json:"threads"`
	Goroutines int     `json:"goroutines,omitempty"` // from go_goroutines (0: unknown)
	CPUSeconds float64 `json:"cpuSeconds"`
	// Writers and WritersPSSMiB: the container log writer processes on the
	// machine (the shim-side writers of container_log_mode "shim", one per
	// running container, whatever daemon started it) and their summed
	// proportional set size: memory the node pays beside the daemon's RSS.
	Writers       int     `json:"writers,omitempty"`
	WritersPSSMiB float64 `json:"writersPssMiB,omitempty"`
}

// procWatch reads a process's figures from /proc (and its goroutines from
// a Prometheus endpoint, when it has one). A zero pid knows nothing.
type procWatch struct {
	pid        int
	metricsURL string
	procRoot   string
	hz         float64
}

func newProcWatch(pid int, metricsURL string) *procWatch {
	return &procWatch{pid: pid, metricsURL: metricsURL, procRoot: "/proc", hz: 100}
}

// cpu is the process's user+system CPU seconds so far.
func (w *procWatch) cpu() float64 {
	if w.pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", w.procRoot, w.pid))
	if err != nil {
		return 0
	}
	return parseStatCPU(string(b), w.hz)
}

// parseStatCPU reads utime+stime (fields 14 and 15) of /proc/<pid>/stat;
// the command name (field 2) may hold spaces, so fields count from its ')'.
func parseStatCPU(stat string, hz float64) float64 {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / hz
}

func (w *procWatch) sample(phase string) (ProcSample, bool) {
	if w.pid == 0 {
		return ProcSample{}, false
	}
	s := ProcSample{Phase: phase, CPUSeconds: w.cpu()}
	f, err := os.Open(fmt.Sprintf("%s/%d/status", w.procRoot, w.pid))
	if err != nil {
		return ProcSample{}, false
	}
	defer f.Close()
	s.RSSMiB, s.HWMMiB, s.Threads = parseStatus(f)
	s.Goroutines = w.goroutines()
	s.Writers, s.WritersPSSMiB = logWriters(w.procRoot)
	return s, true
}

// writerComm is the log writer's command name as /proc shows it (the
// executable's name, cri-containerd-log-writer, cut to 15 bytes); the
// daemon's own is "cri-containerd".
const writerComm = "cri-containerd-"

// logWriters counts the log writer processes under procRoot and sums their
// Pss (smaps_rollup), in MiB.
func logWriters(procRoot string) (n int, pssMiB float64) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return 0, 0
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("%s/%s/comm", procRoot, e.Name()))
		if err != nil || strings.TrimSpace(string(comm)) != writerComm {
			continue
		}
		f, err := os.Open(fmt.Sprintf("%s/%s/smaps_rollup", procRoot, e.Name()))
		if err != nil {
			continue
		}
		n++
		pssMiB += parsePSS(f)
		f.Close()
	}
	return n, pssMiB
}

// parsePSS reads the Pss line (kB) of a smaps_rollup, in MiB.
func parsePSS(r io.Reader) float64 {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return kb / 1024
			}
		}
	}
	return 0
}

// parseStatus reads VmRSS, VmHWM (MiB) and Threads of /proc/<pid>/status.
func parseStatus(r io.Reader) (rss, hwm float64, threads int) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseFloat(f[0], 64)
		switch k {
		case "VmRSS":
			rss = n / 1024
		case "VmHWM":
			hwm = n / 1024
		case "Threads":
			threads = int(n)
		}
	}
	return rss, hwm, threads
}

func (w *procWatch) goroutines() int {
	if w.metricsURL == "" {
		return 0
	}
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(w.metricsURL)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	return parseGoroutines(resp.Body)
}

// parseGoroutines finds go_goroutines in a Prometheus text exposition.
func parseGoroutines(r io.Reader) int {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(n)
		}
	}
	return 0
}
