package main

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	pods := map[string]PodRec{
		"p-ready":   {ID: "p-ready", Name: "a", State: PodReady},
		"p-stopped": {ID: "p-stopped", Name: "b", State: PodStopped},
		"p-removed": {ID: "p-removed", Name: "c", State: PodRemoved},
	}
	ctrs := map[string]CtrRec{
		"c-created": {ID: "c-created", State: CtrCreated},
		"c-exit":    {ID: "c-exit", Kind: KindExit, ExitCode: 7, State: CtrStarted},
		"c-long":    {ID: "c-long", Kind: KindLong, State: CtrStarted},
		"c-stopped": {ID: "c-stopped", Kind: KindLong, State: CtrStopped},
		"c-removed": {ID: "c-removed", State: CtrRemoved},
	}
	healthy := func() Observation {
		return Observation{
			Pods: map[string]ObservedPod{"p-ready": {State: "READY"}, "p-stopped": {State: "NOTREADY"}, "unacked": {State: "READY"}},
			Ctrs: map[string]ObservedCtr{
				"c-created": {State: "CREATED"},
				"c-exit":    {State: "EXITED", ExitCode: 7},
				"c-long":    {State: "RUNNING", TaskRunning: true},
				"c-stopped": {State: "EXITED", ExitCode: 137},
			},
			Logs: map[string][]byte{"c-long": []byte("a\nb\nc\n")},
		}
	}
	before := map[string][]byte{"c-long": []byte("a\nb\n")}
	for _, tc := range []struct {
		name   string
		mutate func(*Observation)
		want   []ViolationKind
	}{
		{"healthy", func(*Observation) {}, nil},
		{"pod missing", func(o *Observation) { delete(o.Pods, "p-ready") }, []ViolationKind{LostPod}},
		{"ready pod reported notready", func(o *Observation) { o.Pods["p-ready"] = ObservedPod{State: "NOTREADY"} }, []ViolationKind{WrongState}},
		{"stopped pod reported ready", func(o *Observation) { o.Pods["p-stopped"] = ObservedPod{State: "READY"} }, []ViolationKind{WrongState}},
		{"container missing", func(o *Observation) { delete(o.Ctrs, "c-created") }, []ViolationKind{LostContainer}},
		{"exit not seen", func(o *Observation) { o.Ctrs["c-exit"] = ObservedCtr{State: "RUNNING"} }, []ViolationKind{LostExit}},
		{"wrong exit code", func(o *Observation) { o.Ctrs["c-exit"] = ObservedCtr{State: "EXITED", ExitCode: 255} }, []ViolationKind{WrongExitCode}},
		{"running task reported exited", func(o *Observation) { o.Ctrs["c-long"] = ObservedCtr{State: "EXITED", TaskRunning: true} }, []ViolationKind{WrongState}},
		{"stop acknowledged but running", func(o *Observation) { o.Ctrs["c-stopped"] = ObservedCtr{State: "RUNNING", TaskRunning: true} }, []ViolationKind{WrongState}},
		{"created reported running", func(o *Observation) { o.Ctrs["c-created"] = ObservedCtr{State: "RUNNING", TaskRunning: true} }, []ViolationKind{WrongState}},
		{"log rewritten", func(o *Observation) { o.Logs["c-long"] = []byte("a\nX\nc\n") }, []ViolationKind{LogDamaged}},
		{"log truncated", func(o *Observation) { o.Logs["c-long"] = []byte("a\n") }, []ViolationKind{LogDamaged}},
		{"log unreadable skips the check", func(o *Observation) { delete(o.Logs, "c-long") }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := healthy()
			tc.mutate(&obs)
			got := Check(pods, ctrs, obs, before)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want kinds %v", got, tc.want)
			}
			for i := range got {
				if got[i].Kind != tc.want[i] {
					t.Fatalf("got %v, want kinds %v", got, tc.want)
				}
			}
		})
	}
}

func TestModelStatesOnlyAdvance(t *testing.T) {
	m := NewModel()
	m.AddCtr(CtrRec{ID: "c"})
	m.SetCtr("c", CtrStopped)
	m.SetCtr("c", CtrStarted) // a late acknowledgement never moves back
	if c, _ := m.Ctr("c"); c.State != CtrStopped {
		t.Fatalf("state %v, want stopped", c.State)
	}
	m.ExemptLive()
	if c, _ := m.Ctr("c"); !c.LogExempt {
		t.Fatal("live container not exempted")
	}
	m.AddPod(PodRec{ID: "p"})
	m.SetPod("p", PodRemoved)
	m.SetPod("p", PodStopped)
	pods, _ := m.Snapshot()
	if pods["p"].State != PodRemoved {
		t.Fatalf("pod state %v, want removed", pods["p"].State)
	}
	if !m.Known("p") || !m.Known("c") || m.Known("x") {
		t.Fatal("Known is wrong")
	}
}

func TestCheckComplete(t *testing.T) {
	line := func(stream, tag, content string) string {
		return "2026-01-02T03:04:05.123456789Z " + stream + " " + tag + " " + content + "\n"
	}
	full := line("stdout", "F", "L0") + line("stdout", "P", "L") + line("stdout", "F", "1") + line("stderr", "F", "noise") + line("stdout", "F", "L2")
	for _, tc := range []struct {
		name     string
		data     string
		want     int
		wantLost int
		ok       bool
	}{
		{"complete, partial lines joined", full, 3, 0, true},
		{"tail being written is ignored", full + "2026-01-02T03:04:05Z stdout F L3", 3, 0, true},
		{"tail missing", full, 5, 2, false},
		{"gap", line("stdout", "F", "L0") + line("stdout", "F", "L2"), 3, 1, false},
		{"duplicate", full + line("stdout", "F", "L2"), 3, 0, false},
		{"malformed line", full + "garbage\n", 3, 0, false},
		{"empty", "", 2, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lost, detail := CheckComplete([]byte(tc.data), "L", tc.want)
			if lost != tc.wantLost || (detail == "") != tc.ok {
				t.Fatalf("CheckComplete = %d, %q; want lost %d ok %v", lost, detail, tc.wantLost, tc.ok)
			}
		})
	}
}

func TestSequence(t *testing.T) {
	st := Sequence([]string{"W0 xx", "W1 xx", "W3 xx", "W3 xx", "other", "Wabc"}, "W")
	if st.Seen != 3 || st.Max != 3 || st.Missing != 1 || st.Dups != 1 {
		t.Fatalf("Sequence = %+v", st)
	}
	if st := Sequence(nil, "W"); st.Seen != 0 || st.Max != -1 || st.Missing != 0 {
		t.Fatalf("empty Sequence = %+v", st)
	}
}

func TestViolationString(t *testing.T) {
	v := Violation{Kind: LostExit, ID: strings.Repeat("a", 64), Detail: "x"}
	if got := v.String(); got != "lost exit aaaaaaaaaaaa: x" {
		t.Fatalf("String = %q", got)
	}
	if !v.IsLostExit() || (Violation{Kind: LostPod}).IsLostExit() {
		t.Fatal("IsLostExit wrong")
	}
}

func TestReapedByContainerd(t *testing.T) {
	log := `time="2026-12-04T15:13:51.485Z" level=info msg="connecting to shim aaa" address="unix:///x" namespace=cri-chaos
time="2026-12-04T15:13:51.568Z" level=info msg="cleaning leaked shim process" id=fcef5864 namespace=cri-chaos
time="2026-12-04T15:13:51.684Z" level=info msg="shim disconnected" id=bbb namespace=cri-chaos
time="2026-12-04T15:13:52.000Z" level=info msg="cleaning leaked shim process" error="not found" id="ccc"`
	got := ReapedByContainerd([]byte(log))
	if len(got) != 2 || !got["fcef5864"] || !got["ccc"] {
		t.Fatalf("ReapedByContainerd = %v", got)
	}
}

func TestCheckExitDroppedByContainerd(t *testing.T) {
	ctrs := map[string]CtrRec{"c": {ID: "c", Kind: KindExit, ExitCode: 38, State: CtrStarted}}
	obs := Observation{Ctrs: map[string]ObservedCtr{"c": {State: "EXITED", ExitCode: 255}}}
	if v := Check(nil, ctrs, obs, nil); len(v) != 1 || v[0].Kind != WrongExitCode {
		t.Fatalf("255 without a containerd reap: %v, want a wrong exit code", v)
	}
	obs.Reaped = map[string]bool{"c": true}
	if v := Check(nil, ctrs, obs, nil); len(v) != 0 {
		t.Fatalf("255 after containerd reaped the task: %v, want none", v)
	}
	obs.Ctrs["c"] = ObservedCtr{State: "EXITED", ExitCode: 1}
	if v := Check(nil, ctrs, obs, nil); len(v) != 1 {
		t.Fatalf("a wrong code other than 255 must count even when reaped: %v", v)
	}
}
