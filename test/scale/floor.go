package main

// The pod start floor (issue 9): RunPodSandbox alone, on an idle machine,
// should cost at most 1.15x what it must do: make a network namespace, run
// CNI ADD on it, and create and start a containerd task of the sandbox image
// in it. `scale floor` times both, interleaved, against one runtime and its
// containerd, and reports their medians and the ratio.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"syscall"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/netns"
	"github.com/containerd/containerd/v2/pkg/oci"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/cni"
)

// FloorConfig says what to time.
type FloorConfig struct {
	Name         string
	Endpoint     string // the runtime's CRI endpoint
	Containerd   string // its containerd's socket
	Namespace    string // the containerd namespace holding the sandbox image
	SandboxImage string
	Runc         string // runc binary of the floor's task (empty: the shim's default)
	CNIConfDir   string
	CNIBinDir    string
	NetNSDir     string
	Rounds       int
	Warmup       int
}

// FloorResult is what `scale floor` reports (milliseconds).
type FloorResult struct {
	Name  string `json:"name"`
	Round int    `json:"rounds"`
	// Floor is netns + CNI ADD + container and task create + task start,
	// one after the other; its parts are reported too.
	Floor           []float64 `json:"floorMs"`
	NetNS           []float64 `json:"netnsMs"`
	CNIAdd          []float64 `json:"cniAddMs"`
	TaskCreate      []float64 `json:"taskCreateMs"`
	TaskStart       []float64 `json:"taskStartMs"`
	RunPodSandbox   []float64 `json:"runPodSandboxMs"`
	MedianFloor     float64   `json:"medianFloorMs"`
	MedianRunPod    float64   `json:"medianRunPodSandboxMs"`
	RatioToTheFloor float64   `json:"ratio"`
}

func floorCmd(args []string) error {
	fs := flag.NewFlagSet("floor", flag.ExitOnError)
	cfg := FloorConfig{}
	var out string
	fs.StringVar(&cfg.Name, "name", "runtime", "name of the runtime in the report")
	fs.StringVar(&cfg.Endpoint, "endpoint", "", "CRI endpoint (unix:///path)")
	fs.StringVar(&cfg.Containerd, "containerd", "", "the runtime's containerd socket")
	fs.StringVar(&cfg.Namespace, "namespace", "k8s.io", "containerd namespace holding the sandbox image (the runtime's)")
	fs.StringVar(&cfg.SandboxImage, "sandbox-image", "registry.k8s.io/pause:3.10.2", "sandbox image (pulled through CRI first)")
	fs.StringVar(&cfg.Runc, "runc", "", "runc binary for the floor's task")
	fs.StringVar(&cfg.CNIConfDir, "cni-conf-dir", "/etc/cni/net.d", "CNI config dir (the runtime's)")
	fs.StringVar(&cfg.CNIBinDir, "cni-bin-dir", "/opt/cni/bin", "CNI plugin dir")
	fs.StringVar(&cfg.NetNSDir, "netns-dir", "/var/run/netns", "where the floor's network namespaces are mounted")
	fs.IntVar(&cfg.Rounds, "rounds", 20, "timed rounds (each: one floor, one RunPodSandbox)")
	fs.IntVar(&cfg.Warmup, "warmup", 2, "untimed rounds first")
	fs.StringVar(&out, "out", "", "write the result as JSON here")
	_ = fs.Parse(args)
	if cfg.Endpoint == "" || cfg.Containerd == "" || cfg.Rounds < 1 {
		return fmt.Errorf("--endpoint, --containerd and --rounds >= 1 needed")
	}
	res, err := RunFloor(context.Background(), cfg)
	if res != nil {
		WriteFloorTable(os.Stdout, []*FloorResult{res})
		if out != "" {
			b, merr := json.MarshalIndent(res, "", " ")
			if merr != nil {
				return merr
			}
			if werr := os.WriteFile(out, b, 0o644); werr != nil {
				return werr
			}
		}
	}
	return err
}

// RunFloor runs cfg.Warmup untimed and cfg.Rounds timed rounds.
func RunFloor(ctx context.Context, cfg FloorConfig) (*FloorResult, error) {
	conn, err := grpc.NewClient(cfg.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	rt, img := runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
	if _, err := img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: cfg.SandboxImage}}); err != nil {
		return nil, fmt.Errorf("pulling %s through CRI: %w", cfg.SandboxImage, err)
	}
	client, err := containerd.New(cfg.Containerd, containerd.WithDefaultNamespace(cfg.Namespace))
	if err != nil {
		return nil, err
	}
	defer client.Close()
	// The daemon's own CNI manager: the floor's ADD runs the plugins a
	// pod needs, as RunPodSandbox's does (see package cni, variants.go).
	network, err := cni.New(cfg.CNIConfDir, []string{cfg.CNIBinDir})
	if err != nil {
		return nil, err
	}
	if err := network.Status(); err != nil {
		return nil, fmt.Errorf("loading CNI config from %s: %w", cfg.CNIConfDir, err)
	}
	if err := os.MkdirAll(cfg.NetNSDir, 0o755); err != nil {
		return nil, err
	}
	res := &FloorResult{Name: cfg.Name, Round: cfg.Rounds}
	tag := time.Now().UnixNano()
	for i := range cfg.Warmup + cfg.Rounds {
		timed := i >= cfg.Warmup
		f, err := floorOnce(namespaces.WithNamespace(ctx, cfg.Namespace), client, network, cfg, fmt.Sprintf("floor-%d-%d", tag, i))
		if err != nil {
			return res, fmt.Errorf("floor round %d: %w", i, err)
		}
		rps, err := runPodOnce(ctx, rt, fmt.Sprintf("floor-%d-%d", tag, i))
		if err != nil {
			return res, fmt.Errorf("RunPodSandbox round %d: %w", i, err)
		}
		if timed {
			res.NetNS = append(res.NetNS, msOf(f[0]))
			res.CNIAdd = append(res.CNIAdd, msOf(f[1]))
			res.TaskCreate = append(res.TaskCreate, msOf(f[2]))
			res.TaskStart = append(res.TaskStart, msOf(f[3]))
			res.Floor = append(res.Floor, msOf(f[0]+f[1]+f[2]+f[3]))
			res.RunPodSandbox = append(res.RunPodSandbox, msOf(rps))
		}
	}
	res.MedianFloor, res.MedianRunPod = median(res.Floor), median(res.RunPodSandbox)
	if res.MedianFloor > 0 {
		res.RatioToTheFloor = res.MedianRunPod / res.MedianFloor
	}
	return res, nil
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return quantile(s, 0.5)
}

// floorOnce does by hand what RunPodSandbox must do, timing each step, and
// undoes it (untimed).
func floorOnce(ctx context.Context, client *containerd.Client, network *cni.Manager, cfg FloorConfig, id string) (_ [4]time.Duration, retErr error) {
	var d [4]time.Duration
	image, err := client.GetImage(ctx, cfg.SandboxImage)
	if err != nil {
		return d, err
	}
	t := time.Now()
	ns, err := netns.NewNetNS(cfg.NetNSDir)
	if err != nil {
		return d, err
	}
	d[0] = time.Since(t)
	defer func() {
		if err := ns.Remove(); err != nil && retErr == nil {
			retErr = err
		}
	}()

	t = time.Now()
	args := cni.PodArgs{Labels: map[string]string{"K8S_POD_NAMESPACE": "floor", "K8S_POD_NAME": id,
		"K8S_POD_INFRA_CONTAINER_ID": id, "K8S_POD_UID": id, "IgnoreUnknown": "1"}}
	if _, err := network.Setup(ctx, id, ns.GetPath(), args); err != nil {
		return d, fmt.Errorf("CNI ADD: %w", err)
	}
	d[1] = time.Since(t)
	defer func() {
		if err := network.Remove(context.WithoutCancel(ctx), id, ns.GetPath(), args); err != nil && retErr == nil {
			retErr = fmt.Errorf("CNI DEL: %w", err)
		}
	}()

	t = time.Now()
	var runtimeOpts any
	if cfg.Runc != "" {
		runtimeOpts = &runcoptions.Options{BinaryName: cfg.Runc}
	}
	ctr, err := client.NewContainer(ctx, id, containerd.WithImage(image),
		containerd.WithNewSnapshot(id, image), containerd.WithRuntime("io.containerd.runc.v2", runtimeOpts),
		containerd.WithNewSpec(oci.WithImageConfig(image), oci.WithHostname("floor"),
			oci.WithLinuxNamespace(runtimespec.LinuxNamespace{Type: runtimespec.NetworkNamespace, Path: ns.GetPath()})))
	if err != nil {
		return d, err
	}
	defer func() {
		if err := ctr.Delete(context.WithoutCancel(ctx), containerd.WithSnapshotCleanup); err != nil && retErr == nil {
			retErr = err
		}
	}()
	task, err := ctr.NewTask(ctx, cio.NullIO)
	if err != nil {
		return d, err
	}
	d[2] = time.Since(t)
	defer func() {
		if _, err := task.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill); err != nil && retErr == nil {
			retErr = err
		}
	}()
	t = time.Now()
	if err := task.Start(ctx); err != nil {
		return d, err
	}
	d[3] = time.Since(t)
	_ = task.Kill(ctx, syscall.SIGKILL)
	return d, nil
}

// runPodOnce times one RunPodSandbox, then stops and removes the pod.
func runPodOnce(ctx context.Context, rt runtimeapi.RuntimeServiceClient, name string) (time.Duration, error) {
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "floor", Uid: name},
		Hostname:     "floor",
		LogDirectory: os.TempDir(),
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
	t := time.Now()
	r, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	d := time.Since(t)
	if err != nil {
		return d, err
	}
	if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: r.PodSandboxId}); err != nil {
		return d, err
	}
	_, err = rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: r.PodSandboxId})
	return d, err
}

// WriteFloorTable prints the medians of each runtime's floor run.
func WriteFloorTable(w io.Writer, results []*FloorResult) {
	fmt.Fprintln(w, "pod start floor (medians, ms): netns + CNI ADD + task create + task start = floor vs RunPodSandbox")
	for _, r := range results {
		fmt.Fprintf(w, "  %-16s %6.1f + %6.1f + %6.1f + %6.1f = %6.1f   RunPodSandbox %6.1f   ratio %.2fx (%d rounds)\n",
			r.Name, median(r.NetNS), median(r.CNIAdd), median(r.TaskCreate), median(r.TaskStart), r.MedianFloor,
			r.MedianRunPod, r.RatioToTheFloor, r.Round)
	}
}

// floorReportCmd prints the table of `scale floor` JSON results.
func floorReportCmd(files []string) error {
	var results []*FloorResult
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		r := &FloorResult{}
		if err := json.Unmarshal(b, r); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		results = append(results, r)
	}
	WriteFloorTable(os.Stdout, results)
	return nil
}
