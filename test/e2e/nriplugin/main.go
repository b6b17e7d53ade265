// Command nriplugin is the NRI plugin of the e2e tests: it appends every
// event it gets to a file (one line each) and adjusts the containers
// labelled nri-e2e/adjust=true: an environment variable, a read-only bind
// mount and a memory limit.
//
// Run it as an external plugin (flags, -socket is the daemon's NRI socket)
// or let the daemon start it from its plugin directory (as NN-name): then
// its settings come from the plugin's configuration file, one key=value a
// line (events, mount-src, memory-limit).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

// AdjustLabel marks the containers the plugin adjusts.
const AdjustLabel = "nri-e2e/adjust"

type plugin struct {
	mu          sync.Mutex
	name        string
	events      string // file the events are appended to
	mountSrc    string // host directory bind-mounted read-only at /nri-e2e
	memoryLimit int64  // bytes; 0: none
}

func (p *plugin) log(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.events == "" {
		return
	}
	f, err := os.OpenFile(p.events, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, format+"\n", args...)
}

func (p *plugin) Configure(_ context.Context, config, runtime, version string) (api.EventMask, error) {
	for _, line := range strings.Split(config, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		switch k {
		case "events":
			p.events = v
		case "mount-src":
			p.mountSrc = v
		case "memory-limit":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("memory-limit: %w", err)
			}
			p.memoryLimit = n
		}
	}
	p.log("Configure %s %s", runtime, version)
	return 0, nil // every event
}

func (p *plugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	var ids []string
	for _, pod := range pods {
		ids = append(ids, "pod:"+pod.GetId())
	}
	for _, c := range ctrs {
		ids = append(ids, c.GetId()+":"+c.GetState().String())
	}
	sort.Strings(ids)
	p.log("Synchronize %s", strings.Join(ids, " "))
	return nil, nil
}

func (p *plugin) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.log("RunPodSandbox %s %s/%s", pod.GetId(), pod.GetNamespace(), pod.GetName())
	return nil
}

func (p *plugin) StopPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.log("StopPodSandbox %s", pod.GetId())
	return nil
}

func (p *plugin) RemovePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.log("RemovePodSandbox %s", pod.GetId())
	return nil
}

func (p *plugin) UpdatePodSandbox(_ context.Context, pod *api.PodSandbox, _, res *api.LinuxResources) error {
	p.log("UpdatePodSandbox %s cpus=%s", pod.GetId(), res.GetCpu().GetCpus())
	return nil
}

func (p *plugin) CreateContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.log("CreateContainer %s %s", c.GetId(), c.GetName())
	if c.GetLabels()[AdjustLabel] != "true" {
		return nil, nil, nil
	}
	adj := &api.ContainerAdjustment{}
	adj.AddEnv("NRI_E2E_PLUGIN", p.name)
	if p.mountSrc != "" {
		adj.AddMount(&api.Mount{Destination: "/nri-e2e", Source: p.mountSrc, Type: "bind", Options: []string{"rbind", "ro"}})
	}
	if p.memoryLimit != 0 {
		adj.SetLinuxMemoryLimit(p.memoryLimit)
	}
	adj.AddAnnotation("nri-e2e/adjusted-by", p.name)
	return adj, nil, nil
}

func (p *plugin) PostCreateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.log("PostCreateContainer %s", c.GetId())
	return nil
}

func (p *plugin) StartContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.log("StartContainer %s", c.GetId())
	return nil
}

func (p *plugin) PostStartContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.log("PostStartContainer %s", c.GetId())
	return nil
}

func (p *plugin) UpdateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container, res *api.LinuxResources) ([]*api.ContainerUpdate, error) {
	p.log("UpdateContainer %s", c.GetId())
	if c.GetLabels()[AdjustLabel] != "true" || p.memoryLimit == 0 {
		return nil, nil
	}
	// Keep the plugin's memory limit whatever the update asks for.
	u := &api.ContainerUpdate{ContainerId: c.GetId()}
	u.SetLinuxMemoryLimit(p.memoryLimit)
	return []*api.ContainerUpdate{u}, nil
}

func (p *plugin) PostUpdateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.log("PostUpdateContainer %s", c.GetId())
	return nil
}

func (p *plugin) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	p.log("StopContainer %s", c.GetId())
	return nil, nil
}

func (p *plugin) RemoveContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.log("RemoveContainer %s", c.GetId())
	return nil
}

func main() {
	p := &plugin{}
	var socket, name, idx string
	flag.StringVar(&socket, "socket", "", "NRI socket (external plugin; empty: started by the runtime or its default)")
	flag.StringVar(&name, "name", "", "plugin name (external plugin)")
	flag.StringVar(&idx, "idx", "", "plugin index (external plugin)")
	flag.StringVar(&p.events, "events", "", "file the events are appended to")
	flag.StringVar(&p.mountSrc, "mount-src", "", "host directory bind-mounted read-only at /nri-e2e")
	flag.Int64Var(&p.memoryLimit, "memory-limit", 0, "memory limit (bytes) of adjusted containers")
	flag.Parse()

	var opts []stub.Option
	if socket != "" {
		opts = append(opts, stub.WithSocketPath(socket))
	}
	if name != "" {
		opts = append(opts, stub.WithPluginName(name))
	}
	if idx != "" {
		opts = append(opts, stub.WithPluginIdx(idx))
	}
	s, err := stub.New(p, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nriplugin:", err)
		os.Exit(1)
	}
	if p.name = name; p.name == "" {
		p.name = os.Getenv("NRI_PLUGIN_NAME") // set by the runtime that starts it
	}
	if err := s.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "nriplugin:", err)
		os.Exit(1)
	}
}
