package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runCmd(os.Args[2:])
	case "report":
		err = reportCmd(os.Args[2:])
	case "floor":
		err = floorCmd(os.Args[2:])
	case "floor-report":
		err = floorReportCmd(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: scale run --name N --endpoint unix:///sock [--pid P] [--metrics-url U] --out result.json | scale report [--svg chart.svg] result.json... | scale floor --endpoint unix:///sock --containerd SOCK [--namespace NS] [--out floor.json]")
	os.Exit(2)
}

func runCmd(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	cfg := Config{}
	var out string
	fs.StringVar(&cfg.Name, "name", "runtime", "name of the runtime in the report")
	fs.StringVar(&cfg.Endpoint, "endpoint", "", "CRI endpoint (unix:///path)")
	fs.IntVar(&cfg.Pods, "pods", 100, "pods")
	fs.IntVar(&cfg.Containers, "containers", 5, "running containers per pod")
	fs.IntVar(&cfg.Clients, "clients", 4, "concurrent clients")
	fs.StringVar(&cfg.Image, "image", "registry.k8s.io/e2e-test-images/busybox:1.29-2", "container image (needs sleep)")
	fs.IntVar(&cfg.StatsRounds, "stats-rounds", 20, "calls of each stats RPC with everything running (list/status RPCs: 10x)")
	fs.IntVar(&cfg.PID, "pid", 0, "the daemon's pid (RSS, threads, CPU seconds)")
	fs.StringVar(&cfg.MetricsURL, "metrics-url", "", "the daemon's Prometheus endpoint (goroutines)")
	fs.StringVar(&cfg.LogDir, "log-dir", "", "pod log directories root (default: a temporary directory)")
	var accounts accountFlag
	fs.Var(&accounts, "account", "NAME=PID: split out the CPU of this process and of what it starts during the run (cgroup v1 cpuacct; repeatable)")
	fs.DurationVar(&cfg.CallTimeout, "call-timeout", 4*time.Minute, "deadline of each call")
	seed := fs.Int64("seed", time.Now().UnixNano(), "seed (pod UIDs, status targets)")
	fs.StringVar(&out, "out", "", "write the result as JSON here")
	_ = fs.Parse(args)
	if cfg.Endpoint == "" || cfg.Pods < 1 || cfg.Clients < 1 || cfg.Containers < 0 {
		return fmt.Errorf("--endpoint, --pods >= 1, --clients >= 1 needed")
	}
	cfg.Seed = uint64(*seed)
	cfg.Accounts = accounts
	if cfg.LogDir == "" {
		d, err := os.MkdirTemp("", "scale-logs-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		cfg.LogDir = d
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, runErr := Run(ctx, cfg)
	if res != nil {
		WriteTable(os.Stdout, []*Result{res})
		if out != "" {
			b, err := json.MarshalIndent(res, "", " ")
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, b, 0o644); err != nil {
				return err
			}
		}
	}
	return runErr
}

func reportCmd(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	svg := fs.String("svg", "", "write the latency chart here")
	_ = fs.Parse(args)
	var results []*Result
	for _, p := range fs.Args() {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		r := &Result{}
		if err := json.Unmarshal(b, r); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		results = append(results, r)
	}
	if len(results) == 0 {
		return fmt.Errorf("no results")
	}
	WriteTable(os.Stdout, results)
	if *svg != "" {
		f, err := os.Create(*svg)
		if err != nil {
			return err
		}
		WriteSVG(f, results)
		return f.Close()
	}
	return nil
}
