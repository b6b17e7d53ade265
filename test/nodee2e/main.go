// Command nodee2e prints the table of `make node-e2e` (hack/node-e2e.sh):
// passed / failed / skipped [NodeConformance] specs per runtime, read from
// the ginkgo JSON report of each run, and every spec that fails on the first
// runtime (cri-containerd) but passes on the second (the reference).
//
//	go run ./test/nodee2e [-fail-on-regression] NAME=DIR [NAME=DIR]
//
// DIR holds report.json (ginkgo -json-report) and, optionally, exit
// ("<ginkgo exit code> <seconds>", written by hack/node-e2e.sh). With
// -fail-on-regression the exit code is 1 when a spec fails on the first
// runtime that passes on the second (or, with one runtime, when any fails).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	failOnRegression := flag.Bool("fail-on-regression", false, "exit 1 when a spec fails on the first runtime but passes on the second (with one runtime: when any spec fails)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: nodee2e [-fail-on-regression] NAME=DIR [NAME=DIR]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() < 1 || flag.NArg() > 2 {
		flag.Usage()
		os.Exit(2)
	}
	var runs []*Run
	for _, a := range flag.Args() {
		name, dir, ok := strings.Cut(a, "=")
		if !ok || name == "" || dir == "" {
			flag.Usage()
			os.Exit(2)
		}
		r, err := LoadRun(name, dir)
		if err != nil {
			fmt.Fprintf(os.Stderr, "nodee2e: %v\n", err)
			os.Exit(1)
		}
		runs = append(runs, r)
	}
	bad := Print(os.Stdout, runs)
	for _, r := range runs {
		if r.Counts().Selected == 0 {
			fmt.Fprintf(os.Stderr, "nodee2e: no spec ran on %s (focus/skip select nothing?)\n", r.Name)
			bad++
		}
	}
	if *failOnRegression && bad > 0 {
		os.Exit(1)
	}
}

// Print writes the table and returns the number of regressions: specs that
// fail on runs[0] but pass on runs[1], or with a single run, its failures.
func Print(w io.Writer, runs []*Run) int {
	fmt.Fprintf(w, "%-16s %8s %7s %7s %8s %9s\n", "runtime", "selected", "passed", "failed", "skipped", "time")
	for _, r := range runs {
		c := r.Counts()
		fmt.Fprintf(w, "%-16s %8d %7d %7d %8d %9s\n", r.Name, c.Selected, c.Passed, c.Failed, c.Skipped, r.Duration())
	}
	list := func(title string, names []string) {
		fmt.Fprintf(w, "\n%s: %d\n", title, len(names))
		for _, n := range names {
			fmt.Fprintf(w, "  - %s\n", n)
		}
	}
	if len(runs) == 1 {
		f := runs[0].Failed()
		list("failed on "+runs[0].Name, f)
		return len(f)
	}
	a, b := runs[0], runs[1]
	reg := Regressions(a, b)
	list(fmt.Sprintf("failed on %s, passed on %s", a.Name, b.Name), reg)
	list(fmt.Sprintf("failed on %s, passed on %s", b.Name, a.Name), Regressions(b, a))
	list("failed on both", Both(a, b))
	if n := NotRunOn(a, b); len(n) > 0 {
		list(fmt.Sprintf("passed on %s, not run on %s", b.Name, a.Name), n)
	}
	return len(reg)
}
