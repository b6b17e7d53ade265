package main

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestReportTableAndVerdict(t *testing.T) {
	r := NewReport()
	r.Mode, r.Workers, r.Duration = "long", 4, 95*time.Second
	for i := 0; i < 20; i++ {
		r.Strike(StrikeDaemonKill, true)
	}
	r.Strike(StrikeCtrdKill, true)
	r.Pods, r.Containers = 40, 61
	r.Leaks = map[string]int{"IPAM allocations": 0, "shim processes": 0}
	if !r.Passed(false) {
		t.Fatal("clean report did not pass")
	}
	table := r.Table()
	for _, want := range []string{
		"chaos campaign (long): 4 workers, 1m35s",
		"daemon kill -9             |      20 |        20",
		"total                      |      21 |        21",
		"objects: pods acknowledged         | 40",
		"leaked: IPAM allocations           | 0",
		"leaked: total                      | 0",
		"doctor orphans                     | not run",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}

	for _, tc := range []struct {
		name   string
		mutate func(*Report)
	}{
		{"leak", func(r *Report) { r.Leaks["shim processes"] = 1 }},
		{"lost exit", func(r *Report) { r.Violations = append(r.Violations, Violation{Kind: WrongExitCode}) }},
		{"lost pod", func(r *Report) { r.Violations = append(r.Violations, Violation{Kind: LostPod}) }},
		{"unrecovered strike", func(r *Report) { r.Strike(StrikeCtrdKill, false) }},
		{"doctor orphans", func(r *Report) { r.DoctorOrphans = 2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := *r
			c.Leaks = map[string]int{}
			for k, v := range r.Leaks {
				c.Leaks[k] = v
			}
			c.Strikes = map[string]*StrikeStat{}
			for k, v := range r.Strikes {
				s := *v
				c.Strikes[k] = &s
			}
			c.Violations = nil
			tc.mutate(&c)
			if c.Passed(false) {
				t.Fatalf("report passed:\n%s", c.Table())
			}
		})
	}
	if r.LostExits() != 0 || r.LostPods() != 0 || r.TotalLeaks() != 0 {
		t.Fatal("counters of a clean report are not 0")
	}
}

func TestOutageOnlyEnforcedWhenAsked(t *testing.T) {
	r := NewReport()
	r.Outage = &OutageResult{Writers: 4, RatePerWriter: 1 << 20, Outage: 30 * time.Second, Blocked: 2, LinesLost: 100, Recovered: true}
	if !r.Passed(false) {
		t.Fatal("outage failures must not fail the campaign unless enforced")
	}
	if r.Passed(true) {
		t.Fatal("enforced outage failures passed")
	}
	if !strings.Contains(r.Table(), "outage: blocked writers            | 2") {
		t.Fatalf("table lacks the outage rows:\n%s", r.Table())
	}
}

func TestSchedule(t *testing.T) {
	o := Options{DaemonKills: 20, ContainerdRestarts: 5, CNIFaults: 5, LogFull: 2, SlowPulls: 1}
	s := Schedule(o, rand.New(rand.NewPCG(1, 2)))
	count := map[string]int{}
	for _, k := range s {
		count[k]++
	}
	if len(s) != 33 || count[StrikeDaemonKill] != 20 || count[StrikeCtrdKill] != 5 || count[StrikeLogFull] != 2 || count[StrikeSlowPull] != 1 {
		t.Fatalf("schedule %v", count)
	}
	for _, k := range cniKinds {
		if count[k] != 1 {
			t.Fatalf("CNI kind %q: %d, want 1 (%v)", k, count[k], count)
		}
	}
}
