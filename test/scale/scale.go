// Command scale measures a CRI runtime at scale, the way a node full of
// pods uses it (issue 9): P pods with C running containers each are created
// by N concurrent clients; with all of them running, the stats and list RPCs
// kubelet polls are timed; then everything is torn down by the same clients.
// It reports per-RPC latency distributions, pods per second up and down, and
// the daemon's RSS, threads/goroutines and CPU seconds (when its pid is
// given). `scale report` turns the JSON results of several runtimes (same
// run, same machine) into a table and an SVG chart.
//
//	scale run --name cri-containerd --endpoint unix:///run/x.sock --pid 123 --out a.json
//	scale report --svg chart.svg a.json b.json
package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Config of one run.
type Config struct {
	Name        string
	Endpoint    string
	Pods        int
	Containers  int // per pod
	Clients     int
	Image       string
	StatsRounds int // calls of each polled RPC, spread over the clients
	PID         int // the daemon's pid (0: no process figures)
	MetricsURL  string
	LogDir      string
	CallTimeout time.Duration
	Seed        uint64
	Accounts    []accountSpec // processes whose CPU (and their children's) is split out
}

// Result of one run.
type Result struct {
	Name        string               `json:"name"`
	Pods        int                  `json:"pods"`
	Containers  int                  `json:"containersPerPod"`
	Clients     int                  `json:"clients"`
	UpSeconds   float64              `json:"upSeconds"`
	DownSeconds float64              `json:"downSeconds"`
	Latencies   map[string][]float64 `json:"latenciesMs"` // per RPC, sorted
	Errors      map[string]int       `json:"errors"`
	Process     []ProcSample         `json:"process,omitempty"`
	CPUSeconds  map[string]float64   `json:"cpuSeconds,omitempty"` // per phase
	CPUSplit    map[string]CPUSplit  `json:"cpuSplit,omitempty"`   // per phase: CPU seconds by owner
}

// recorder collects latencies and errors per RPC.
type recorder struct {
	mu       sync.Mutex
	lat      map[string][]float64
	errs     map[string]int
	firstErr map[string]string
}

func newRecorder() *recorder {
	return &recorder{lat: map[string][]float64{}, errs: map[string]int{}, firstErr: map[string]string{}}
}

// time runs f as one call of rpc and records its latency or error.
func (r *recorder) time(rpc string, f func() error) error {
	start := time.Now()
	err := f()
	d := time.Since(start)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errs[rpc]++
		if _, ok := r.firstErr[rpc]; !ok {
			r.firstErr[rpc] = err.Error()
		}
		return err
	}
	r.lat[rpc] = append(r.lat[rpc], float64(d.Microseconds())/1000)
	return nil
}

type pod struct {
	id   string
	cfg  *runtimeapi.PodSandboxConfig
	ctrs []string
}

// runner drives one runtime.
type runner struct {
	cfg Config
	rc  runtimeapi.RuntimeServiceClient
	ic  runtimeapi.ImageServiceClient
	rec *recorder
}

func (r *runner) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.cfg.CallTimeout)
}

// timed makes one call of rpc, bounded by the call timeout, and records it.
func (r *runner) timed(ctx context.Context, rpc string, f func(context.Context) error) error {
	return r.rec.time(rpc, func() error {
		c, cancel := r.call(ctx)
		defer cancel()
		return f(c)
	})
}

func (r *runner) podConfig(i int) *runtimeapi.PodSandboxConfig {
	name := fmt.Sprintf("scale-%s-%d", r.cfg.Name, i)
	uid := fmt.Sprintf("%s-%d-%d", r.cfg.Name, i, r.cfg.Seed)
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "scale", Uid: uid},
		Hostname:     name,
		LogDirectory: filepath.Join(r.cfg.LogDir, uid),
		Labels:       map[string]string{"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": "scale", "io.kubernetes.pod.uid": uid},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
}

// up creates and starts one pod with its containers, as kubelet does.
func (r *runner) up(ctx context.Context, i int) (*pod, error) {
	p := &pod{cfg: r.podConfig(i)}
	if err := os.MkdirAll(p.cfg.LogDirectory, 0o755); err != nil {
		return nil, err
	}
	err := r.timed(ctx, "RunPodSandbox", func(c context.Context) error {
		resp, err := r.rc.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: p.cfg})
		p.id = resp.GetPodSandboxId()
		return err
	})
	if err != nil {
		return nil, err
	}
	for j := range r.cfg.Containers {
		name := fmt.Sprintf("c%d", j)
		cc := &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name},
			Image:    &runtimeapi.ImageSpec{Image: r.cfg.Image},
			Command:  []string{"sleep", "3600"},
			LogPath:  name + ".log",
			Labels:   map[string]string{"io.kubernetes.container.name": name},
			// kubelet gives each container its own PID namespace unless
			// the pod shares one (shareProcessNamespace).
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			}},
		}
		var id string
		if err := r.timed(ctx, "CreateContainer", func(c context.Context) error {
			resp, err := r.rc.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cc, SandboxConfig: p.cfg})
			id = resp.GetContainerId()
			return err
		}); err != nil {
			return p, err
		}
		p.ctrs = append(p.ctrs, id)
		if err := r.timed(ctx, "StartContainer", func(c context.Context) error {
			_, err := r.rc.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: id})
			return err
		}); err != nil {
			return p, err
		}
	}
	return p, nil
}

// down tears one pod down as kubelet does: its containers are stopped
// concurrently (kubelet's pod kill runs one goroutine per container), then
// the sandbox is stopped; the containers and the sandbox are removed after
// that (kubelet's garbage collection).
func (r *runner) down(ctx context.Context, p *pod) {
	var wg sync.WaitGroup
	for _, id := range p.ctrs {
		wg.Go(func() {
			_ = r.timed(ctx, "StopContainer", func(c context.Context) error {
				_, err := r.rc.StopContainer(c, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 0})
				return err
			})
		})
	}
	wg.Wait()
	if p.id != "" {
		_ = r.timed(ctx, "StopPodSandbox", func(c context.Context) error {
			_, err := r.rc.StopPodSandbox(c, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id})
			return err
		})
	}
	for _, id := range p.ctrs {
		_ = r.timed(ctx, "RemoveContainer", func(c context.Context) error {
			_, err := r.rc.RemoveContainer(c, &runtimeapi.RemoveContainerRequest{ContainerId: id})
			return err
		})
	}
	if p.id != "" {
		_ = r.timed(ctx, "RemovePodSandbox", func(c context.Context) error {
			_, err := r.rc.RemovePodSandbox(c, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id})
			return err
		})
	}
}

// poll times the RPCs kubelet polls, with every object running.
func (r *runner) poll(ctx context.Context, pods []*pod, rng *rand.Rand) {
	var ctrs []string
	for _, p := range pods {
		ctrs = append(ctrs, p.ctrs...)
	}
	calls := map[string]func(c context.Context, rng *rand.Rand) error{
		"ListContainerStats": func(c context.Context, _ *rand.Rand) error {
			_, err := r.rc.ListContainerStats(c, &runtimeapi.ListContainerStatsRequest{})
			return err
		},
		"ListPodSandboxStats": func(c context.Context, _ *rand.Rand) error {
			_, err := r.rc.ListPodSandboxStats(c, &runtimeapi.ListPodSandboxStatsRequest{})
			return err
		},
		"ListContainers": func(c context.Context, _ *rand.Rand) error {
			_, err := r.rc.ListContainers(c, &runtimeapi.ListContainersRequest{})
			return err
		},
		"ListPodSandbox": func(c context.Context, _ *rand.Rand) error {
			_, err := r.rc.ListPodSandbox(c, &runtimeapi.ListPodSandboxRequest{})
			return err
		},
		"ContainerStatus": func(c context.Context, rng *rand.Rand) error {
			if len(ctrs) == 0 {
				return nil
			}
			_, err := r.rc.ContainerStatus(c, &runtimeapi.ContainerStatusRequest{ContainerId: ctrs[rng.IntN(len(ctrs))]})
			return err
		},
		"PodSandboxStatus": func(c context.Context, rng *rand.Rand) error {
			if len(pods) == 0 {
				return nil
			}
			_, err := r.rc.PodSandboxStatus(c, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pods[rng.IntN(len(pods))].id})
			return err
		},
	}
	names := make([]string, 0, len(calls))
	for n := range calls {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		f := calls[name]
		rounds := r.cfg.StatsRounds
		if name == "ContainerStatus" || name == "PodSandboxStatus" || name == "ListContainers" || name == "ListPodSandbox" {
			rounds *= 10 // cheap calls: more samples
		}
		work := make(chan struct{}, rounds)
		for range rounds {
			work <- struct{}{}
		}
		close(work)
		var wg sync.WaitGroup
		for w := range r.cfg.Clients {
			wrng := rand.New(rand.NewPCG(r.cfg.Seed, uint64(w)))
			wg.Go(func() {
				for range work {
					_ = r.rec.time(name, func() error {
						c, cancel := r.call(ctx)
						defer cancel()
						return f(c, wrng)
					})
				}
			})
		}
		wg.Wait()
	}
	_ = rng
}

// Run measures one runtime.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	conn, err := grpc.NewClient(cfg.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	r := &runner{cfg: cfg, rc: runtimeapi.NewRuntimeServiceClient(conn), ic: runtimeapi.NewImageServiceClient(conn), rec: newRecorder()}
	res := &Result{Name: cfg.Name, Pods: cfg.Pods, Containers: cfg.Containers, Clients: cfg.Clients, CPUSeconds: map[string]float64{}}
	proc := newProcWatch(cfg.PID, cfg.MetricsURL)
	sample := func(phase string) {
		if s, ok := proc.sample(phase); ok {
			res.Process = append(res.Process, s)
		}
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	_, err = r.ic.PullImage(pctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: cfg.Image}})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("pulling %s: %w", cfg.Image, err)
	}
	sample("idle")
	accounts := cfg.Accounts
	if len(accounts) > 0 {
		accounts = append(slices.Clone(accounts), accountSpec{name: "client", pid: os.Getpid()}) // this tool
	}
	acct, err := newCPUAccount(cpuacctRoot, "/proc", accounts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := acct.close(); err != nil {
			fmt.Fprintln(os.Stderr, "scale: CPU accounting:", err)
		}
	}()
	split := func(phase string, r0 cpuReading) cpuReading {
		r1 := acct.read()
		if s := acct.split(r0, r1); s != nil {
			if res.CPUSplit == nil {
				res.CPUSplit = map[string]CPUSplit{}
			}
			res.CPUSplit[phase] = s
		}
		return r1
	}

	// Up: N clients take pods from a queue.
	pods := make([]*pod, cfg.Pods)
	var upErr error
	var mu sync.Mutex
	start := time.Now()
	cpu0 := proc.cpu()
	acct0 := acct.read()
	queue := make(chan int, cfg.Pods)
	for i := range cfg.Pods {
		queue <- i
	}
	close(queue)
	var wg sync.WaitGroup
	for range cfg.Clients {
		wg.Go(func() {
			for i := range queue {
				p, err := r.up(ctx, i)
				mu.Lock()
				pods[i] = p
				if err != nil && upErr == nil {
					upErr = fmt.Errorf("pod %d: %w", i, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.UpSeconds = time.Since(start).Seconds()
	cpu1 := proc.cpu()
	res.CPUSeconds["up"] = cpu1 - cpu0
	acct1 := split("up", acct0)
	sample("running")

	live := slices.DeleteFunc(slices.Clone(pods), func(p *pod) bool { return p == nil })
	if upErr == nil {
		r.poll(ctx, live, rand.New(rand.NewPCG(cfg.Seed, 99)))
		res.CPUSeconds["poll"] = proc.cpu() - cpu1
		acct1 = split("poll", acct1)
		sample("polled")
	}

	// Down, whatever happened: nothing may be left behind.
	start = time.Now()
	cpu2 := proc.cpu()
	dq := make(chan *pod, len(live))
	for _, p := range live {
		dq <- p
	}
	close(dq)
	for range cfg.Clients {
		wg.Go(func() {
			for p := range dq {
				r.down(context.WithoutCancel(ctx), p)
			}
		})
	}
	wg.Wait()
	res.DownSeconds = time.Since(start).Seconds()
	res.CPUSeconds["down"] = proc.cpu() - cpu2
	split("down", acct1)
	sample("after")

	r.rec.mu.Lock()
	res.Latencies, res.Errors = r.rec.lat, r.rec.errs
	for _, l := range res.Latencies {
		sort.Float64s(l)
	}
	var errs []string
	for rpc, e := range r.rec.firstErr {
		errs = append(errs, fmt.Sprintf("%s: %s", rpc, e))
	}
	r.rec.mu.Unlock()
	if upErr != nil {
		return res, fmt.Errorf("bringing pods up: %w (first errors: %s)", upErr, strings.Join(errs, "; "))
	}
	return res, nil
}
