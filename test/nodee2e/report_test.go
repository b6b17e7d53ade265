package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// A ginkgo JSON report as e2e_node.test writes it: suite nodes, a filtered
// spec (skipped, no message), a run-time skip (with a reason), and results.
const testReport = `[{"SpecReports":[
 {"LeafNodeType":"SynchronizedBeforeSuite","State":"passed"},
 {"ContainerHierarchyTexts":["[sig-node] Pods"],"LeafNodeType":"It","LeafNodeText":"should get a host IP [NodeConformance]","State":"passed"},
 {"ContainerHierarchyTexts":["[sig-node] Pods"],"LeafNodeType":"It","LeafNodeText":"should be updated [NodeConformance]","State":"failed","Failure":{"Message":"timed out"}},
 {"ContainerHierarchyTexts":["[sig-node] Probing container"],"LeafNodeType":"It","LeafNodeText":"should be restarted [NodeConformance]","State":"timedout","Failure":{"Message":"x"}},
 {"ContainerHierarchyTexts":["[sig-node] AppArmor"],"LeafNodeType":"It","LeafNodeText":"should enforce [NodeConformance]","State":"skipped","Failure":{"Message":"AppArmor is not enabled"}},
 {"ContainerHierarchyTexts":["[sig-node] Serial thing"],"LeafNodeType":"It","LeafNodeText":"runs alone [Serial]","State":"skipped"},
 {"LeafNodeType":"ReportAfterSuite","State":"failed"}
]}]`

func TestParseReport(t *testing.T) {
	r, err := ParseReport("x", []byte(testReport))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		spec string
		want Outcome
	}{
		{"[sig-node] Pods should get a host IP [NodeConformance]", Passed},
		{"[sig-node] Pods should be updated [NodeConformance]", Failed},
		{"[sig-node] Probing container should be restarted [NodeConformance]", Failed},
		{"[sig-node] AppArmor should enforce [NodeConformance]", Skipped},
		{"[sig-node] Serial thing runs alone [Serial]", NotSelected},
	}
	for _, tc := range tests {
		if got, ok := r.Specs[tc.spec]; !ok || got != tc.want {
			t.Errorf("%s: got %v (present %v), want %v", tc.spec, got, ok, tc.want)
		}
	}
	if len(r.Specs) != len(tests) {
		t.Errorf("%d specs, want %d (suite nodes must not count)", len(r.Specs), len(tests))
	}
	if c, want := r.Counts(), (Counts{Selected: 4, Passed: 1, Failed: 2, Skipped: 1}); c != want {
		t.Errorf("counts %+v, want %+v", c, want)
	}
	if _, err := ParseReport("bad", []byte("{")); err == nil {
		t.Error("a broken report must be an error")
	}
}

func TestCompareRuns(t *testing.T) {
	run := func(name string, specs map[string]Outcome) *Run {
		return &Run{Name: name, Specs: specs, ExitCode: -1, Seconds: -1}
	}
	ours := run("cri-containerd", map[string]Outcome{"a": Failed, "b": Failed, "c": Passed, "d": Skipped, "e": NotSelected, "f": Passed})
	ref := run("reference", map[string]Outcome{"a": Passed, "b": Failed, "c": Failed, "d": Passed, "e": Passed, "f": Passed})
	tests := []struct {
		name string
		got  []string
		want []string
	}{
		{"regressions", Regressions(ours, ref), []string{"a"}},
		{"reverse", Regressions(ref, ours), []string{"c"}},
		{"both", Both(ours, ref), []string{"b"}},
		{"not run", NotRunOn(ours, ref), []string{"e"}},
	}
	for _, tc := range tests {
		if !slices.Equal(tc.got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	var out bytes.Buffer
	if n := Print(&out, []*Run{ours, ref}); n != 1 {
		t.Errorf("Print: %d regressions, want 1", n)
	}
	if !strings.Contains(out.String(), "failed on cri-containerd, passed on reference: 1\n  - a\n") {
		t.Errorf("table lacks the regression list:\n%s", out.String())
	}
	out.Reset()
	if n := Print(&out, []*Run{ours}); n != 2 {
		t.Errorf("Print one run: %d, want its 2 failures", n)
	}
}
