package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The subset of ginkgo v2's types.Report (JSON report) this tool reads.
type suiteReport struct {
	SpecReports []specReport `json:"SpecReports"`
}

type specReport struct {
	ContainerHierarchyTexts []string `json:"ContainerHierarchyTexts"`
	LeafNodeType            string   `json:"LeafNodeType"`
	LeafNodeText            string   `json:"LeafNodeText"`
	State                   string   `json:"State"`
	RunTime                 int64    `json:"RunTime"`
	Failure                 *struct {
		Message string `json:"Message"`
	} `json:"Failure"`
}

// Outcome of one spec in one run.
type Outcome int

const (
	// NotSelected: filtered out by -focus/-skip (ginkgo reports it as skipped, without a message).
	NotSelected Outcome = iota
	Passed
	Failed // failed, panicked, timed out, interrupted, aborted
	Skipped
)

// Run is one runtime's results.
type Run struct {
	Name  string
	Specs map[string]Outcome
	// ExitCode and Seconds come from DIR/exit (-1 when missing).
	ExitCode, Seconds int
}

// Counts of a run's selected specs.
type Counts struct{ Selected, Passed, Failed, Skipped int }

// LoadRun reads DIR/report.json (and DIR/exit when present).
func LoadRun(name, dir string) (*Run, error) {
	data, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", name, err)
	}
	r, err := ParseReport(name, data)
	if err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(filepath.Join(dir, "exit")); err == nil {
		if _, err := fmt.Sscan(string(b), &r.ExitCode, &r.Seconds); err != nil {
			return nil, fmt.Errorf("run %s: parse %s/exit: %w", name, dir, err)
		}
	}
	return r, nil
}

// ParseReport turns a ginkgo JSON report into a Run. Only "It" leaves count;
// suite setup nodes (BeforeSuite, ReportAfterSuite...) do not.
func ParseReport(name string, data []byte) (*Run, error) {
	var suites []suiteReport
	if err := json.Unmarshal(data, &suites); err != nil {
		return nil, fmt.Errorf("run %s: parse ginkgo report: %w", name, err)
	}
	r := &Run{Name: name, Specs: map[string]Outcome{}, ExitCode: -1, Seconds: -1}
	for _, s := range suites {
		for _, sp := range s.SpecReports {
			if sp.LeafNodeType != "It" {
				continue
			}
			full := strings.Join(append(slices.Clone(sp.ContainerHierarchyTexts), sp.LeafNodeText), " ")
			r.Specs[full] = outcomeOf(sp)
		}
	}
	return r, nil
}

func outcomeOf(sp specReport) Outcome {
	switch sp.State {
	case "passed":
		return Passed
	case "skipped":
		// Skipped at run time (e2eskipper.Skip) carries a reason;
		// filtered out by -focus/-skip does not, and never ran.
		if sp.Failure != nil && sp.Failure.Message != "" {
			return Skipped
		}
		return NotSelected
	case "pending":
		return NotSelected
	default:
		return Failed
	}
}

// Counts of the selected specs.
func (r *Run) Counts() Counts {
	var c Counts
	for _, o := range r.Specs {
		switch o {
		case Passed:
			c.Passed++
		case Failed:
			c.Failed++
		case Skipped:
			c.Skipped++
		default:
			continue
		}
		c.Selected++
	}
	return c
}

// Duration of the run as "1h02m03s", or "-".
func (r *Run) Duration() string {
	if r.Seconds < 0 {
		return "-"
	}
	return (time.Duration(r.Seconds) * time.Second).String()
}

func (r *Run) with(o Outcome) []string {
	var out []string
	for n, got := range r.Specs {
		if got == o {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// Failed specs of the run, sorted.
func (r *Run) Failed() []string { return r.with(Failed) }

// Regressions are the specs that fail on a but pass on b, sorted.
func Regressions(a, b *Run) []string {
	var out []string
	for _, n := range a.Failed() {
		if b.Specs[n] == Passed {
			out = append(out, n)
		}
	}
	return out
}

// Both are the specs that fail on a and on b, sorted.
func Both(a, b *Run) []string {
	var out []string
	for _, n := range a.Failed() {
		if b.Specs[n] == Failed {
			out = append(out, n)
		}
	}
	return out
}

// NotRunOn are the specs that pass on b but were not selected on a (a run
// cut short, or a different selection), sorted.
func NotRunOn(a, b *Run) []string {
	var out []string
	for _, n := range b.with(Passed) {
		if a.Specs[n] == NotSelected {
			out = append(out, n)
		}
	}
	return out
}
