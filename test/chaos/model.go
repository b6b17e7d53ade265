package main

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The model is what the CRI server acknowledged to the churn workers: every
// pod and container whose create call returned OK, and the last lifecycle
// call acknowledged on it. Invariants compare it with what the daemon
// reports and with the truth (containerd tasks, log files).

// PodState is the acknowledged state of a pod.
type PodState int

// Pod states, in lifecycle order.
const (
	PodReady PodState = iota
	PodStopped
	PodRemoved
)

// CtrState is the acknowledged state of a container.
type CtrState int

// Container states, in lifecycle order.
const (
	CtrCreated CtrState = iota
	CtrStarted
	CtrStopped // StopContainer acknowledged
	CtrRemoved
)

// CtrKind says what the container's command does.
type CtrKind int

const (
	// KindExit prints Lines numbered lines and exits with ExitCode.
	KindExit CtrKind = iota
	// KindLong prints a numbered line now and then until stopped.
	KindLong
)

// PodRec is one acknowledged pod.
type PodRec struct {
	ID    string
	Name  string
	State PodState
}

// CtrRec is one acknowledged container.
type CtrRec struct {
	ID       string
	PodID    string
	Name     string
	Kind     CtrKind
	ExitCode int32 // KindExit: the code its command exits with
	Lines    int   // KindExit: the number of lines it prints
	LogPath  string
	State    CtrState
	// LogExempt: the container lived through a fault that may lose output
	// (full log filesystem, an outage): its log is not checked for
	// completeness, only for damage to what was already written.
	LogExempt bool
	// DaemonDown: the container was live while the daemon was killed.
	// Output it wrote while the daemon was down is lost if it also exited
	// before the daemon came back (the known design limitation that the
	// outage scenario measures): lines lost then are counted apart.
	DaemonDown bool
}

// Model is the shared record of acknowledged objects.
type Model struct {
	mu   sync.Mutex
	pods map[string]*PodRec
	ctrs map[string]*CtrRec
}

// NewModel returns an empty model.
func NewModel() *Model {
	return &Model{pods: map[string]*PodRec{}, ctrs: map[string]*CtrRec{}}
}

// AddPod records an acknowledged RunPodSandbox.
func (m *Model) AddPod(p PodRec) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pods[p.ID] = &p
}

// SetPod records an acknowledged pod lifecycle call.
func (m *Model) SetPod(id string, s PodState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.pods[id]; p != nil && s > p.State {
		p.State = s
	}
}

// AddCtr records an acknowledged CreateContainer.
func (m *Model) AddCtr(c CtrRec) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ctrs[c.ID] = &c
}

// SetCtr records an acknowledged container lifecycle call.
func (m *Model) SetCtr(id string, s CtrState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.ctrs[id]; c != nil && s > c.State {
		c.State = s
	}
}

// ExemptLive marks the logs of every container not yet removed as exempt
// from the completeness check (a fault that may lose output is starting).
func (m *Model) ExemptLive() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.ctrs {
		if c.State != CtrRemoved {
			c.LogExempt = true
		}
	}
}

// MarkDaemonDown marks every container not yet removed as having lived
// through a daemon outage.
func (m *Model) MarkDaemonDown() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.ctrs {
		if c.State != CtrRemoved {
			c.DaemonDown = true
		}
	}
}

// Snapshot copies the model.
func (m *Model) Snapshot() (map[string]PodRec, map[string]CtrRec) {
	m.mu.Lock()
	defer m.mu.Unlock()
	pods := make(map[string]PodRec, len(m.pods))
	for k, v := range m.pods {
		pods[k] = *v
	}
	ctrs := make(map[string]CtrRec, len(m.ctrs))
	for k, v := range m.ctrs {
		ctrs[k] = *v
	}
	return pods, ctrs
}

// Ctr returns one container record.
func (m *Model) Ctr(id string) (CtrRec, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.ctrs[id]
	if !ok {
		return CtrRec{}, false
	}
	return *c, true
}

// Known reports whether an ID is an acknowledged pod or container.
func (m *Model) Known(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, p := m.pods[id]
	_, c := m.ctrs[id]
	return p || c
}

// ObservedPod is a pod as the daemon lists it.
type ObservedPod struct {
	State string // READY, NOTREADY
}

// ObservedCtr is a container as the daemon reports it, next to the truth.
type ObservedCtr struct {
	State    string // CREATED, RUNNING, EXITED, UNKNOWN
	ExitCode int32
	// TaskRunning is containerd's truth: the container's task exists and
	// is running (or paused/pausing).
	TaskRunning bool
}

// Observation is one look at the daemon and the truth.
type Observation struct {
	Pods map[string]ObservedPod
	Ctrs map[string]ObservedCtr
	// Logs holds the current content of log files (by container ID) read
	// for the prefix check; a missing entry skips the check.
	Logs map[string][]byte
	// Reaped names the containers whose task containerd itself reaped at
	// its restart, dropping the exit status (see ReapedByContainerd).
	Reaped map[string]bool
}

// unknownExit is the exit code reported when the real one is gone.
const unknownExit = 255

// ExitLostByContainerd reports whether a wrong exit code is containerd's
// loss, not ours: the task exited while containerd was down and containerd
// reaped it at its restart without keeping the status.
func ExitLostByContainerd(reaped map[string]bool, id string, reported int32) bool {
	return reported == unknownExit && reaped[id]
}

// ReapedByContainerd returns the IDs containerd's log says it reaped at
// start ("cleaning leaked shim process"): tasks whose process had exited
// while containerd was down; their exit status is dropped by containerd.
func ReapedByContainerd(log []byte) map[string]bool {
	out := map[string]bool{}
	for _, l := range strings.Split(string(log), "\n") {
		if !strings.Contains(l, "cleaning leaked shim process") {
			continue
		}
		if i := strings.Index(l, " id="); i >= 0 {
			id := l[i+4:]
			if j := strings.IndexByte(id, ' '); j >= 0 {
				id = id[:j]
			}
			out[strings.Trim(id, `"`)] = true
		}
	}
	return out
}

// ViolationKind classifies a broken invariant.
type ViolationKind string

// Violation kinds.
const (
	LostPod       ViolationKind = "lost pod"
	LostContainer ViolationKind = "lost container"
	WrongState    ViolationKind = "wrong state"
	LostExit      ViolationKind = "lost exit"
	WrongExitCode ViolationKind = "wrong exit code"
	LogDamaged    ViolationKind = "log damaged"
	LogIncomplete ViolationKind = "log incomplete"
)

// Violation is one broken invariant.
type Violation struct {
	Kind   ViolationKind
	ID     string
	Detail string
}

func (v Violation) String() string {
	id := v.ID
	if len(id) > 12 {
		id = id[:12]
	}
	return fmt.Sprintf("%s %s: %s", v.Kind, id, v.Detail)
}

// IsLostExit reports whether the violation loses an exit (never seen, or
// seen with the wrong code).
func (v Violation) IsLostExit() bool { return v.Kind == LostExit || v.Kind == WrongExitCode }

// Check compares the acknowledged model with an observation. before holds
// log contents taken before a strike: each must still be a prefix of the
// log file now (lines written before a crash stay intact).
func Check(pods map[string]PodRec, ctrs map[string]CtrRec, obs Observation, before map[string][]byte) []Violation {
	var out []Violation
	add := func(k ViolationKind, id, f string, a ...any) {
		out = append(out, Violation{Kind: k, ID: id, Detail: fmt.Sprintf(f, a...)})
	}
	for _, id := range sortedKeys(pods) {
		p := pods[id]
		if p.State == PodRemoved {
			continue
		}
		o, ok := obs.Pods[id]
		if !ok {
			add(LostPod, id, "pod %s acknowledged (%s) but not listed", p.Name, podStateName(p.State))
			continue
		}
		if p.State == PodReady && o.State != "READY" {
			add(WrongState, id, "pod %s: acknowledged ready, reported %s", p.Name, o.State)
		}
		if p.State == PodStopped && o.State != "NOTREADY" {
			add(WrongState, id, "pod %s: stop acknowledged, reported %s", p.Name, o.State)
		}
	}
	for _, id := range sortedKeys(ctrs) {
		c := ctrs[id]
		if c.State == CtrRemoved {
			continue
		}
		o, ok := obs.Ctrs[id]
		if !ok {
			add(LostContainer, id, "container %s acknowledged (%s) but not listed", c.Name, ctrStateName(c.State))
			continue
		}
		switch c.State {
		case CtrCreated:
			if o.State != "CREATED" {
				add(WrongState, id, "container %s: created, never started, reported %s", c.Name, o.State)
			}
		case CtrStarted:
			switch {
			case o.TaskRunning && o.State != "RUNNING":
				add(WrongState, id, "container %s: task runs, reported %s", c.Name, o.State)
			case !o.TaskRunning && o.State != "EXITED":
				add(LostExit, id, "container %s: task ended, reported %s", c.Name, o.State)
			case !o.TaskRunning && c.Kind == KindExit && o.ExitCode != c.ExitCode && !ExitLostByContainerd(obs.Reaped, id, o.ExitCode):
				add(WrongExitCode, id, "container %s: exited with %d, reported %d", c.Name, c.ExitCode, o.ExitCode)
			}
		case CtrStopped:
			if o.State != "EXITED" {
				add(WrongState, id, "container %s: stop acknowledged, reported %s (task running: %v)", c.Name, o.State, o.TaskRunning)
			}
		}
	}
	for _, id := range sortedKeys(before) {
		c, ok := ctrs[id]
		if !ok || c.State == CtrRemoved {
			continue
		}
		now, ok := obs.Logs[id]
		if !ok {
			continue
		}
		if !bytes.HasPrefix(now, before[id]) {
			add(LogDamaged, id, "log %s: the %d bytes present before the strike changed (now %d bytes)", c.LogPath, len(before[id]), len(now))
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func podStateName(s PodState) string {
	return [...]string{"ready", "stopped", "removed"}[s]
}

func ctrStateName(s CtrState) string {
	return [...]string{"created", "started", "stopped", "removed"}[s]
}

// ---------------------------------------------------------------------------
// CRI log files

// LogRecord is one line of a CRI log file.
type LogRecord struct {
	Time    time.Time
	Stream  string
	Partial bool
	Content string
}

// ParseCRILog parses "<RFC3339Nano> <stream> <P|F> <content>" lines; a
// trailing line without newline (being written) is ignored. bad counts
// malformed lines.
func ParseCRILog(data []byte) (recs []LogRecord, bad int) {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		line := string(data[:i])
		data = data[i+1:]
		parts := strings.SplitN(line, " ", 4)
		if len(parts) < 3 {
			bad++
			continue
		}
		ts, err := time.Parse(time.RFC3339Nano, parts[0])
		if err != nil || (parts[2] != "P" && parts[2] != "F") {
			bad++
			continue
		}
		r := LogRecord{Time: ts, Stream: parts[1], Partial: parts[2] == "P"}
		if len(parts) == 4 {
			r.Content = parts[3]
		}
		recs = append(recs, r)
	}
	return recs, bad
}

// LogLines joins partial records into the lines of one stream.
func LogLines(recs []LogRecord, stream string) []string {
	var out []string
	var cur strings.Builder
	for _, r := range recs {
		if r.Stream != stream {
			continue
		}
		cur.WriteString(r.Content)
		if !r.Partial {
			out = append(out, cur.String())
			cur.Reset()
		}
	}
	return out
}

// SeqStats describes the numbered lines "<prefix><N>[ rest]" of a log.
type SeqStats struct {
	Seen    int // distinct numbers seen
	Max     int // highest number seen (-1: none)
	Missing int // numbers in [0, Max] never seen
	Dups    int // numbers seen more than once
}

// Sequence checks numbered lines "<prefix><N>..." (N from 0).
func Sequence(lines []string, prefix string) SeqStats {
	st := SeqStats{Max: -1}
	seen := map[int]bool{}
	for _, l := range lines {
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		rest := l[len(prefix):]
		if i := strings.IndexByte(rest, ' '); i >= 0 {
			rest = rest[:i]
		}
		n, err := strconv.Atoi(rest)
		if err != nil {
			continue
		}
		if seen[n] {
			st.Dups++
			continue
		}
		seen[n] = true
		st.Seen++
		st.Max = max(st.Max, n)
	}
	st.Missing = st.Max + 1 - st.Seen
	return st
}

// CheckComplete checks the log of a finished KindExit container: all of
// 0..want-1 present, nothing duplicated. It returns the number of lines lost.
func CheckComplete(data []byte, prefix string, want int) (lost int, detail string) {
	recs, bad := ParseCRILog(data)
	st := Sequence(LogLines(recs, "stdout"), prefix)
	lost = want - st.Seen
	if lost < 0 {
		lost = 0
	}
	if lost == 0 && st.Dups == 0 && bad == 0 {
		return 0, ""
	}
	return lost, fmt.Sprintf("%d of %d lines present (max %d), %d duplicated, %d malformed", st.Seen, want, st.Max, st.Dups, bad)
}
