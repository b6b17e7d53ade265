package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
)

// quantile of sorted values (nearest rank); NaN when there are none.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// rpcOrder is the order of RPCs in tables and charts: lifecycle, then polls.
var rpcOrder = []string{
	"RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer",
	"StopPodSandbox", "RemovePodSandbox",
	"ListContainerStats", "ListPodSandboxStats", "ListContainers", "ListPodSandbox", "ContainerStatus", "PodSandboxStatus",
}

func rpcs(results []*Result) []string {
	seen := map[string]bool{}
	for _, r := range results {
		for k := range r.Latencies {
			seen[k] = true
		}
	}
	var out []string
	for _, k := range rpcOrder {
		if seen[k] {
			out = append(out, k)
			delete(seen, k)
		}
	}
	rest := make([]string, 0, len(seen))
	for k := range seen {
		rest = append(rest, k)
	}
	sort.Strings(rest)
	return append(out, rest...)
}

func ms(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v < 1:
		return fmt.Sprintf("%.3f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// WriteTable prints the comparison of results (one column group per runtime).
func WriteTable(w io.Writer, results []*Result) {
	if len(results) == 0 {
		return
	}
	r0 := results[0]
	fmt.Fprintf(w, "scale: %d pods x %d containers, %d concurrent clients\n\n", r0.Pods, r0.Containers, r0.Clients)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"RPC (ms)"}
	for _, r := range results {
		head = append(head, r.Name+" p50", "p90", "p99", "n")
	}
	if len(results) == 2 {
		head = append(head, "p50 ratio")
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, rpc := range rpcs(results) {
		row := []string{rpc}
		for _, r := range results {
			l := r.Latencies[rpc]
			n := fmt.Sprint(len(l))
			if e := r.Errors[rpc]; e > 0 {
				n += fmt.Sprintf(" (%d err)", e)
			}
			row = append(row, ms(quantile(l, .5)), ms(quantile(l, .9)), ms(quantile(l, .99)), n)
		}
		if len(results) == 2 {
			a, b := quantile(results[0].Latencies[rpc], .5), quantile(results[1].Latencies[rpc], .5)
			ratio := "-"
			if !math.IsNaN(a) && !math.IsNaN(b) && b > 0 {
				ratio = fmt.Sprintf("%.2fx", a/b)
			}
			row = append(row, ratio)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "runtime\tup s\tpods/s up\tdown s\tpods/s down\tCPU s up\tCPU s down\tCPU s / 1000 pods\tRSS MiB idle\trunning\tafter\tgoroutines idle\trunning\tafter\t")
	for _, r := range results {
		proc := map[string]ProcSample{}
		for _, s := range r.Process {
			proc[s.Phase] = s
		}
		cpu := r.CPUSeconds["up"] + r.CPUSeconds["down"]
		per1000 := "-"
		if len(r.Process) > 0 && r.Pods > 0 {
			per1000 = fmt.Sprintf("%.0f", cpu/float64(r.Pods)*1000)
		}
		val := func(phase string, f func(ProcSample) string) string {
			if s, ok := proc[phase]; ok {
				return f(s)
			}
			return "-"
		}
		rss := func(s ProcSample) string { return fmt.Sprintf("%.0f", s.RSSMiB) }
		gor := func(s ProcSample) string {
			if s.Goroutines == 0 {
				return "-"
			}
			return fmt.Sprint(s.Goroutines)
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.2f\t%.1f\t%.2f\t%.1f\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Name,
			r.UpSeconds, rate(r.Pods, r.UpSeconds), r.DownSeconds, rate(r.Pods, r.DownSeconds),
			r.CPUSeconds["up"], r.CPUSeconds["down"], per1000,
			val("idle", rss), val("running", rss), val("after", rss),
			val("idle", gor), val("running", gor), val("after", gor))
	}
	tw.Flush()
	writeWriters(w, results)
	writeCPUSplit(w, results)
}

// writeWriters reports the container log writer processes with everything
// running, when a runtime had any: memory beside the daemon's RSS.
func writeWriters(w io.Writer, results []*Result) {
	var lines []string
	for _, r := range results {
		idle, running := ProcSample{}, ProcSample{}
		for _, s := range r.Process {
			switch s.Phase {
			case "idle":
				idle = s
			case "running":
				running = s
			}
		}
		if n := running.Writers - idle.Writers; n > 0 {
			pss := running.WritersPSSMiB - idle.WritersPSSMiB
			lines = append(lines, fmt.Sprintf("  %s: %d log writer processes (shim-side, one per running container), %.0f MiB PSS in all (%.2f MiB each), beside the daemon's RSS", r.Name, n, pss, pss/float64(n)))
		}
	}
	if len(lines) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, strings.Join(lines, "\n"))
	}
}

// anyCPU reports whether owner k used CPU in any of the results (a column
// of zeros, like the scale tool's children, is left out).
func anyCPU(results []*Result, k string) bool {
	for _, r := range results {
		if r.CPUSplit["up"][k]+r.CPUSplit["down"][k] >= 0.05 {
			return true
		}
	}
	return false
}

// writeCPUSplit prints, for the runs that have one, the machine's CPU
// seconds over the up and down phases by owner, and each owner's share.
func writeCPUSplit(w io.Writer, results []*Result) {
	var owners []string
	seen := map[string]bool{}
	for _, r := range results {
		for _, phase := range []string{"up", "down"} {
			var names []string
			for k := range r.CPUSplit[phase] {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, k := range names {
				if k != "all" && k != "rest" && !seen[k] && anyCPU(results, k) {
					seen[k] = true
					owners = append(owners, k)
				}
			}
		}
	}
	if len(owners) == 0 {
		return
	}
	cols := append(append([]string{"all"}, owners...), "rest")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "  CPU seconds by owner, up + down phases (cgroup cpuacct; \"children\" = the processes it started: shims, runc, CNI plugins; rest = containers, kernel):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "runtime\t"+strings.Join(cols, "\t")+"\t")
	for _, r := range results {
		if r.CPUSplit == nil {
			continue
		}
		sum := func(k string) float64 { return r.CPUSplit["up"][k] + r.CPUSplit["down"][k] }
		all := sum("all")
		row := []string{r.Name}
		for _, c := range cols {
			if c != "all" && c != "rest" {
				if _, ok := r.CPUSplit["up"][c]; !ok {
					row = append(row, "-")
					continue
				}
			}
			v := sum(c)
			if c == "all" || all <= 0 {
				row = append(row, fmt.Sprintf("%.1f", v))
			} else {
				row = append(row, fmt.Sprintf("%.1f (%.0f%%)", v, v/all*100))
			}
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
}

func rate(n int, secs float64) float64 {
	if secs <= 0 {
		return 0
	}
	return float64(n) / secs
}

// WriteSVG draws, per RPC, each runtime's latency distribution side by side
// (box: p25-p75, line: median, whiskers: p5-p95) on a log scale.
func WriteSVG(w io.Writer, results []*Result) {
	names := rpcs(results)
	const (
		left, top, rowH, width = 170, 40, 34, 900
		plotW                  = width - left - 40
	)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range results {
		for _, l := range r.Latencies {
			if len(l) > 0 {
				lo, hi = math.Min(lo, math.Max(quantile(l, .05), 0.01)), math.Max(hi, quantile(l, .95))
			}
		}
	}
	if math.IsInf(lo, 0) {
		lo, hi = 0.01, 1
	}
	lo, hi = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
	x := func(v float64) float64 {
		v = math.Min(math.Max(v, lo), hi)
		return left + (math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*plotW
	}
	colors := []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"}
	height := top + rowH*len(names) + 60
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(w, `<text x="%d" y="20" font-size="14">CRI latency (ms, log scale): box p25-p75, line p50, whiskers p5-p95</text>`+"\n", left)
	for d := lo; d <= hi*1.0001; d *= 10 {
		fmt.Fprintf(w, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/><text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n",
			x(d), top-5, x(d), top+rowH*len(names), x(d), top+rowH*len(names)+15, ms(d))
	}
	band := float64(rowH-8) / float64(max(len(results), 1))
	for i, rpc := range names {
		y0 := float64(top + rowH*i)
		fmt.Fprintf(w, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-8, y0+float64(rowH)/2+4, rpc)
		for j, r := range results {
			l := r.Latencies[rpc]
			if len(l) == 0 {
				continue
			}
			c := colors[j%len(colors)]
			y := y0 + 4 + band*float64(j)
			mid := y + band/2
			fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", x(quantile(l, .05)), mid, x(quantile(l, .95)), mid, c)
			fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="0.35" stroke="%s"/>`+"\n",
				x(quantile(l, .25)), y+1, math.Max(x(quantile(l, .75))-x(quantile(l, .25)), 1), band-2, c, c)
			fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", x(quantile(l, .5)), y+1, x(quantile(l, .5)), y+band-1, c)
		}
	}
	for j, r := range results {
		fmt.Fprintf(w, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
			left+j*200, height-22, colors[j%len(colors)], left+j*200+18, height-12, r.Name)
	}
	fmt.Fprintln(w, "</svg>")
}
