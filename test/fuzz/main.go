// Command crifuzz drives a live CRI daemon with random requests of every
// RPC of the CRI v1 API (filled from the API's protobuf descriptors), half
// of them aimed at a real pod and container it keeps running. It detects
// crashes and panics (the daemon stops answering, its process dies, or its
// log shows a Go panic), hangs (an RPC that must be quick hits the
// per-request deadline, or Version stops answering), and, after removing
// everything, leaks (objects still listed, netns and other mounts and
// per-object directories under the daemon's state and root dirs, containerd
// containers, snapshots and leases in its namespace, IP allocations and
// iptables rules of its pods). It prints a summary table and exits 1 when
// anything was found.
//
// Run it only against a private daemon (its own socket, root, state dirs
// and containerd namespace): it removes everything the daemon lists. Host
// side effects of accepted requests are confined (see confine in shape.go).
//
//	crifuzz -endpoint unix:///tmp/d/cri.sock -n 5000 -state-dir /tmp/d/state -root-dir /tmp/d/root \
//	    -containerd-address /run/containerd/containerd.sock -containerd-namespace fuzz \
//	    -ipam-dir /var/lib/cni/networks -daemon-log /tmp/d/daemon.log -pid 1234
//
// The test in this directory (TestLiveFuzz) starts such a daemon itself.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	var cfg Config
	var skip, only string
	flag.StringVar(&cfg.Endpoint, "endpoint", "", "CRI endpoint of a PRIVATE daemon (unix:///path)")
	flag.IntVar(&cfg.N, "n", 2000, "requests to send")
	flag.IntVar(&cfg.Workers, "workers", 4, "concurrent workers, each with its own real pod and container and a seed derived from -seed")
	flag.DurationVar(&cfg.MaxDuration, "max-duration", 0, "stop sending after this long even if fewer than -n requests went out (0: no limit)")
	flag.Int64Var(&cfg.Seed, "seed", time.Now().UnixNano(), "random seed")
	flag.StringVar(&cfg.Image, "image", "registry.k8s.io/e2e-test-images/busybox:1.29-2", "image of the real container (needs sh and sleep)")
	flag.DurationVar(&cfg.CallTimeout, "call-timeout", 30*time.Second, "deadline of each request; quick RPCs that hit it are hangs")
	flag.StringVar(&cfg.WorkDir, "work-dir", "", "directory for confined host paths (default: a new temporary directory)")
	flag.IntVar(&cfg.HostPortMin, "host-port-min", 47100, "lowest host port a request may map")
	flag.IntVar(&cfg.HostPortMax, "host-port-max", 47199, "highest host port a request may map")
	flag.StringVar(&cfg.StateDir, "state-dir", "", "the daemon's --state-dir (leak check)")
	flag.StringVar(&cfg.RootDir, "root-dir", "", "the daemon's --root-dir (leak check)")
	flag.StringVar(&cfg.ContainerdAddress, "containerd-address", "", "containerd socket (leak check)")
	flag.StringVar(&cfg.ContainerdNamespace, "containerd-namespace", "", "the daemon's containerd namespace (leak check)")
	flag.StringVar(&cfg.IPAMDir, "ipam-dir", "", "host-local dataDir of the daemon's CNI network (leak check)")
	flag.StringVar(&cfg.DaemonLog, "daemon-log", "", "the daemon's log (panic check)")
	flag.IntVar(&cfg.PID, "pid", 0, "the daemon's process ID (crash check)")
	flag.StringVar(&skip, "skip", "", "comma-separated RPC names never to send")
	flag.StringVar(&only, "only", "", "comma-separated RPC names: send only these")
	flag.StringVar(&cfg.KeepDir, "keep-dir", "", "where a failed run keeps goroutine dumps of hangs and a copy of -daemon-log")
	flag.StringVar(&cfg.PprofSocket, "pprof-socket", "", "unix socket of the daemon's --pprof-addr (goroutine dumps at hangs)")
	flag.Parse()
	if cfg.Endpoint == "" {
		fmt.Fprintln(os.Stderr, "crifuzz: -endpoint is required")
		os.Exit(2)
	}
	if skip != "" {
		cfg.SkipRPCs = strings.Split(skip, ",")
	}
	if only != "" {
		cfg.OnlyRPCs = strings.Split(only, ",")
	}
	if cfg.WorkDir == "" {
		d, err := os.MkdirTemp("", "crifuzz-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "crifuzz:", err)
			os.Exit(2)
		}
		defer os.RemoveAll(d)
		cfg.WorkDir = d
	}
	cfg.Progress = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(os.Stderr, "crifuzz: %d requests against %s, %d workers, seed %d\n", cfg.N, cfg.Endpoint, cfg.Workers, cfg.Seed)
	sum, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crifuzz:", err)
		os.Exit(2)
	}
	fmt.Print(sum.Table())
	if sum.Failed() {
		os.Exit(1)
	}
}
