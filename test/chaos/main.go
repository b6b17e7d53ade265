// Command chaos is cri-containerd's fault campaign (`make chaos`; a short
// form runs in `make test`). It starts and owns a private containerd, a
// private cri-containerd, a CNI network with a fault-injecting wrapper
// plugin, a registry proxy that can be made slow and a small tmpfs for pod
// logs; N workers churn pods, containers, execs, logs, stops and removes the
// way kubelet does while injectors strike at random moments (kill -9 of the
// daemon, kill -9 of containerd, CNI failures and hangs on ADD/DEL, a full
// log filesystem, a slow registry). After every strike the invariants are
// checked against containerd, the kernel and the file system; after the
// final cleanup nothing of ours may be left. With --outage it also measures
// a 30 s daemon outage while containers write 1 MiB/s each.
//
// It must run as root and kills only the processes it started.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Options configure a campaign.
type Options struct {
	Short              bool
	Workers            int
	Duration           time.Duration // spread the strikes over this (0: a strike every 6-12 s)
	DaemonKills        int
	ContainerdRestarts int
	CNIFaults          int
	LogFull            int
	SlowPulls          int
	Outage             bool
	OutageEnforce      bool
	OutageOnly         bool
	OutageWriters      int
	OutageSeconds      int
	Keep               bool

	DaemonBin     string
	CNIFaultBin   string
	ContainerdBin string
	CNIRealDir    string
	Registry      string
	OutDir        string
	Subnet        string
	Bridge        string
	LogFSMiB      int
	Doctor        bool
	LogMode       string // the daemon's --container-log-mode ("": its default)

	SandboxImage string
	BusyboxImage string
	PullImages   []string
}

func parseOptions(args []string) (Options, error) {
	var o Options
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.BoolVar(&o.Short, "short", false, "CI form: 2 workers, 3 daemon kills, 1 containerd restart, a few other faults (about 3 minutes)")
	fs.IntVar(&o.Workers, "workers", -1, "concurrent churn workers (default 4, --short 2)")
	fs.DurationVar(&o.Duration, "duration", 0, "spread the strikes over this long (default: one every 6-12 s)")
	fs.IntVar(&o.DaemonKills, "daemon-kills", -1, "kill -9 of cri-containerd (default 20, --short 3)")
	fs.IntVar(&o.ContainerdRestarts, "containerd-restarts", -1, "kill -9 + restart of containerd (default 5, --short 1)")
	fs.IntVar(&o.CNIFaults, "cni-faults", -1, "CNI plugin faults, cycling ADD fail, DEL fail, ADD hang, ADD fail-after-setup, DEL hang (default 5, --short 3)")
	fs.IntVar(&o.LogFull, "log-full", -1, "full log filesystem episodes (default 2, --short 1)")
	fs.IntVar(&o.SlowPulls, "slow-pulls", -1, "slow registry episodes (default 2, --short 1)")
	fs.BoolVar(&o.Outage, "outage", false, "also run the 30 s outage scenario (reported; see --outage-enforce)")
	fs.BoolVar(&o.OutageOnly, "outage-only", false, "run only the outage scenario (no churn)")
	fs.BoolVar(&o.OutageEnforce, "outage-enforce", false, "fail the campaign when the outage scenario blocks a writer or loses a line")
	fs.IntVar(&o.OutageWriters, "outage-writers", 4, "containers writing 1 MiB/s during the outage")
	fs.IntVar(&o.OutageSeconds, "outage-seconds", 30, "daemon outage length")
	fs.BoolVar(&o.Keep, "keep", false, "keep the private directories (not the processes) after the run")
	fs.StringVar(&o.DaemonBin, "daemon-bin", "_output/chaos/cri-containerd", "cri-containerd binary")
	fs.StringVar(&o.CNIFaultBin, "cnifault-bin", "_output/chaos/cnifault", "cnifault wrapper plugin binary")
	fs.StringVar(&o.ContainerdBin, "containerd-bin", "containerd", "containerd binary")
	fs.StringVar(&o.CNIRealDir, "cni-bin-dir", "/opt/cni/bin", "directory of the real CNI plugins")
	fs.StringVar(&o.Registry, "registry", envOr("REGISTRY", "127.0.0.1:5000"), "registry holding the test images (plain http)")
	fs.StringVar(&o.OutDir, "out", "_output/chaos", "logs and report directory")
	fs.StringVar(&o.Subnet, "subnet", "10.233.0.0/16", "pod subnet of the private CNI network")
	fs.StringVar(&o.Bridge, "bridge", "crichaos0", "bridge of the private CNI network")
	fs.IntVar(&o.LogFSMiB, "log-fs-mib", 64, "size of the pod log tmpfs")
	fs.StringVar(&o.LogMode, "container-log-mode", "", "the daemon's --container-log-mode (daemon or shim; empty: the daemon's default)")
	fs.BoolVar(&o.Doctor, "doctor", true, "also run `cri-containerd doctor` as a leak checker when the binary has it")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	def := func(v *int, long, short int) {
		if *v < 0 {
			*v = long
			if o.Short {
				*v = short
			}
		}
	}
	def(&o.Workers, 4, 2)
	def(&o.DaemonKills, 20, 3)
	def(&o.ContainerdRestarts, 5, 1)
	def(&o.CNIFaults, 5, 3)
	def(&o.LogFull, 2, 1)
	def(&o.SlowPulls, 2, 1)
	o.SandboxImage = "registry.k8s.io/pause:3.10.2"
	o.BusyboxImage = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
	o.PullImages = []string{
		"gcr.io/k8s-staging-cri-tools/test-image-1:latest",
		"gcr.io/k8s-staging-cri-tools/test-image-2:latest",
		"gcr.io/k8s-staging-cri-tools/test-image-3:latest",
	}
	for _, p := range []*string{&o.DaemonBin, &o.CNIFaultBin, &o.OutDir} {
		if abs, err := filepath.Abs(*p); err == nil {
			*p = abs
		}
	}
	return o, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func main() {
	o, err := parseOptions(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "chaos: needs root")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, o)
	if rep != nil {
		table := rep.Table()
		fmt.Print("\n" + table)
		_ = os.WriteFile(filepath.Join(o.OutDir, "report.txt"), []byte(table), 0o644)
	}
	if err != nil {
		logf("FAILED: %v", err)
		os.Exit(1)
	}
	if !rep.Passed(o.OutageEnforce) {
		logf("FAILED: invariants broken or leaks found (see the table; logs in %s)", o.OutDir)
		os.Exit(1)
	}
	logf("PASSED")
}

func run(ctx context.Context, o Options) (*Report, error) {
	rep := NewReport()
	rep.Workers = o.Workers
	rep.Mode = "long"
	if o.Short {
		rep.Mode = "short"
	}
	if o.OutageOnly {
		rep.Mode = "outage only"
	}
	if o.LogMode != "" {
		rep.Mode += ", container_log_mode=" + o.LogMode
	}
	t0 := time.Now()
	defer func() { rep.Duration = time.Since(t0) }()

	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(o.OutDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return nil, fmt.Errorf("another chaos campaign is running (%s): %w", lock.Name(), err)
	}
	env := NewEnv(o)
	defer env.Teardown(o.Keep)
	logf("setting up the private containerd, daemon, CNI network %s (%s on %s), log tmpfs of %d MiB", networkName, o.Subnet, o.Bridge, o.LogFSMiB)
	if err := env.Setup(ctx); err != nil {
		return rep, fmt.Errorf("setup: %w", err)
	}
	d := NewDriver(env, o)
	for _, ref := range append([]string{o.SandboxImage, o.BusyboxImage}, o.PullImages...) {
		if err := d.Pull(ctx, ref); err != nil {
			return rep, fmt.Errorf("pulling %s: %w", ref, err)
		}
	}

	var runErr error
	if !o.OutageOnly {
		runErr = churn(ctx, o, d, env, rep)
	}
	if runErr == nil && (o.Outage || o.OutageOnly) && ctx.Err() == nil {
		res, err := RunOutage(ctx, d, env, o)
		rep.Outage = res
		if err != nil {
			runErr = err
		}
	}
	finalCleanup(ctx, d, env, rep)
	rep.Pods, rep.Containers = int(d.pods.Load()), int(d.ctrs.Load())
	rep.Execs, rep.Pulls, rep.Exits = int(d.execs.Load()), int(d.pulls.Load()), int(d.exits.Load())
	rep.RPCErrors, rep.LinesLost = int(d.rpcErrors.Load()), int(d.linesLost.Load())
	rep.LinesLostDown, rep.ExitsLostByContainerd = int(d.linesLostDown.Load()), int(d.exitsLostByContainerd.Load())
	rep.Violations = d.Violations()
	if runErr == nil {
		runErr = ctx.Err()
	}
	return rep, runErr
}

func churn(ctx context.Context, o Options, d *Driver, env *Env, rep *Report) error {
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		go func() { defer wg.Done(); d.Worker(cctx, w) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); d.ImageWorker(cctx) }()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	strikes := Schedule(o, rng)
	logf("churn: %d workers, %d strikes: %v", o.Workers, len(strikes), strikes)
	in := &Injector{d: d, env: env, rep: rep}
	var err error
	time.Sleep(8 * time.Second) // warm up: pods in every phase
	for i, k := range strikes {
		wait := time.Duration(4000+rng.IntN(6000)) * time.Millisecond
		if o.Duration > 0 {
			wait = time.Duration(rng.Int64N(int64(2*o.Duration/time.Duration(len(strikes)+1)) + 1))
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		if ctx.Err() != nil {
			break
		}
		logf("[%d/%d]", i+1, len(strikes))
		if err = in.Strike(ctx, k); err != nil {
			break
		}
	}
	logf("churn: stopping the workers (they finish their current pod)")
	cancel()
	wg.Wait()
	if err == nil {
		_ = writeFault(env.FaultCtl, "", "", 0, 0)
		env.Proxy.SetSlow(0, 0)
		v := d.CheckNow(ctx, nil, 20*time.Second)
		logf("final check with the workers stopped: %d violation(s)", len(v))
	}
	return err
}

// finalCleanup removes everything through the daemon the way kubelet's
// garbage collector would (including what a failed call left and the client
// never learned about), then scans for leaks.
func finalCleanup(ctx context.Context, d *Driver, env *Env, rep *Report) {
	if env.RT == nil || env.Daemon == nil || env.Daemon.Exited() {
		rep.Notes = append(rep.Notes, "daemon not running at the final cleanup: leak scan without it")
	} else {
		cctx := context.WithoutCancel(ctx)
		unacked := 0
		if cl, err := env.RT.ListContainers(cctx, &runtimeapi.ListContainersRequest{}); err == nil {
			for _, c := range cl.Containers {
				if !d.model.Known(c.Id) {
					unacked++
				}
				d.stopCtr(cctx, c.Id)
				d.removeCtr(cctx, c.Id)
			}
		} else {
			rep.Notes = append(rep.Notes, "final cleanup: ListContainers: "+err.Error())
		}
		if pl, err := env.RT.ListPodSandbox(cctx, &runtimeapi.ListPodSandboxRequest{}); err == nil {
			for _, p := range pl.Items {
				if !d.model.Known(p.Id) {
					unacked++
				}
				d.stopRemovePod(cctx, p.Id)
			}
		} else {
			rep.Notes = append(rep.Notes, "final cleanup: ListPodSandbox: "+err.Error())
		}
		if unacked > 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("final cleanup removed %d pod(s)/container(s) created by calls that failed (garbage collection, as kubelet does)", unacked))
		}
		if il, err := env.IMG.ListImages(cctx, &runtimeapi.ListImagesRequest{}); err == nil {
			for _, im := range il.Images {
				_ = d.idem(cctx, "RemoveImage", true, func(c context.Context) error {
					_, err := env.IMG.RemoveImage(c, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: im.Id}})
					return err
				})
			}
		}
	}
	// Removal and containerd's garbage collection finish asynchronously.
	var leaks Leaks
	deadline := time.Now().Add(60 * time.Second)
	for {
		leaks = ScanLeaks(NSContext(context.WithoutCancel(ctx)), env.LeakScope(), env.Ctrd, true)
		total := 0
		for _, n := range leaks.Counts {
			total += n
		}
		if total == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	rep.Leaks = leaks.Counts
	for _, l := range leaks.Details {
		logf("LEAK %s", l)
	}
	if env.Opts.Doctor {
		runDoctor(ctx, env, rep)
	}
}
