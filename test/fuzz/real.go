package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The real pod and container the requests are pointed at half the time.
// Random requests stop and remove them; ensureReal makes them again.

func (f *fuzzer) podTemplate(name string) *runtimeapi.PodSandboxConfig {
	uid := fmt.Sprintf("uid-%s-%d", name, f.g.r.Int63())
	_ = os.MkdirAll(filepath.Join(f.cfg.WorkDir, "logs", uid), 0o755)
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "crifuzz", Uid: uid},
		Hostname:     name,
		LogDirectory: filepath.Join(f.cfg.WorkDir, "logs", uid),
		DnsConfig:    &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"cluster.local"}, Options: []string{"ndots:5"}},
		PortMappings: []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 80, HostPort: int32(f.cfg.HostPortMin)}},
		Labels:       map[string]string{"io.kubernetes.pod.name": name},
		Annotations:  map[string]string{"crifuzz": "1"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			Sysctls: map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"},
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			},
		},
	}
}

// ctrTemplate is a container config; like kubelet, it makes the container's
// log directory first.
func (f *fuzzer) ctrTemplate(name string, pod *runtimeapi.PodSandboxConfig) *runtimeapi.ContainerConfig {
	if d := pod.GetLogDirectory(); d != "" {
		_ = os.MkdirAll(filepath.Join(d, name), 0o755)
	}
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: f.cfg.Image, UserSpecifiedImage: f.cfg.Image},
		// Stops at once on SIGTERM (PID 1 ignores it without a handler).
		Command: []string{"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"},
		LogPath: name + "/0.log",
		Envs:    []*runtimeapi.KeyValue{{Key: "FUZZ", Value: []byte("1")}},
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, MemoryLimitInBytes: 64 << 20},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
				Capabilities:     &runtimeapi.Capability{DropCapabilities: []string{"NET_RAW"}},
			},
		},
	}
}

// template is a valid request of the RPC aimed at the real objects (nil
// when the RPC has none).
func (f *fuzzer) template(rpc string) proto.Message {
	r := f.real
	switch rpc {
	case "RunPodSandbox":
		return &runtimeapi.RunPodSandboxRequest{Config: f.podTemplate(fmt.Sprintf("fuzz-%d", f.g.r.Intn(1000)))}
	case "CreateContainer":
		return &runtimeapi.CreateContainerRequest{PodSandboxId: r.podID, Config: f.ctrTemplate(fmt.Sprintf("c-%d", f.g.r.Intn(1000)), r.podCfg), SandboxConfig: r.podCfg}
	case "ExecSync":
		return &runtimeapi.ExecSyncRequest{ContainerId: r.ctrID, Cmd: []string{"echo", "hi"}, Timeout: 5}
	case "Exec":
		return &runtimeapi.ExecRequest{ContainerId: r.ctrID, Cmd: []string{"sh"}, Stdin: true, Stdout: true, Tty: true}
	case "Attach":
		return &runtimeapi.AttachRequest{ContainerId: r.ctrID, Stdout: true, Stderr: true}
	case "PortForward":
		return &runtimeapi.PortForwardRequest{PodSandboxId: r.podID, Port: []int32{80}}
	case "UpdateContainerResources":
		return &runtimeapi.UpdateContainerResourcesRequest{ContainerId: r.ctrID, Linux: &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 20000, MemoryLimitInBytes: 128 << 20}}
	case "StopContainer":
		return &runtimeapi.StopContainerRequest{ContainerId: r.ctrID, Timeout: 2}
	case "ContainerStatus", "ContainerStats", "StartContainer", "RemoveContainer", "ReopenContainerLog":
		return nil // random IDs plus injection cover these
	case "PullImage", "ImageStatus", "RemoveImage":
		spec := &runtimeapi.ImageSpec{Image: f.cfg.Image}
		switch rpc {
		case "PullImage":
			return &runtimeapi.PullImageRequest{Image: spec, SandboxConfig: r.podCfg}
		case "ImageStatus":
			return &runtimeapi.ImageStatusRequest{Image: spec, Verbose: true}
		}
		return &runtimeapi.RemoveImageRequest{Image: spec}
	case "PodSandboxStatus":
		return &runtimeapi.PodSandboxStatusRequest{PodSandboxId: r.podID, Verbose: true}
	}
	return nil
}

func (f *fuzzer) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 2*time.Minute)
}

// ensureReal checks that the real pod is ready and the real container
// running, and makes them again when not.
func (f *fuzzer) ensureReal(ctx context.Context) error {
	cctx, cancel := f.callCtx(ctx)
	defer cancel()
	podOK, ctrOK := false, false
	if f.real.podID != "" {
		st, err := f.rc.PodSandboxStatus(cctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: f.real.podID})
		podOK = err == nil && st.GetStatus().GetState() == runtimeapi.PodSandboxState_SANDBOX_READY
	}
	if podOK && f.real.ctrID != "" {
		st, err := f.rc.ContainerStatus(cctx, &runtimeapi.ContainerStatusRequest{ContainerId: f.real.ctrID})
		ctrOK = err == nil && st.GetStatus().GetState() == runtimeapi.ContainerState_CONTAINER_RUNNING
	}
	if podOK && ctrOK {
		return nil
	}
	if f.real.podID != "" {
		f.sum.Recreated++
	}
	if f.real.ctrID != "" {
		_, _ = f.rc.StopContainer(cctx, &runtimeapi.StopContainerRequest{ContainerId: f.real.ctrID})
		_, _ = f.rc.RemoveContainer(cctx, &runtimeapi.RemoveContainerRequest{ContainerId: f.real.ctrID})
		f.real.ctrID = ""
	}
	if !podOK {
		if f.real.podID != "" {
			_, _ = f.rc.StopPodSandbox(cctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: f.real.podID})
			_, _ = f.rc.RemovePodSandbox(cctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: f.real.podID})
		}
		cfg := f.podTemplate(fmt.Sprintf("real-w%d-%d", f.worker, f.sum.Recreated))
		resp, err := f.rc.RunPodSandbox(cctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		if err != nil {
			f.real.podID = ""
			return fmt.Errorf("RunPodSandbox: %w", err)
		}
		f.real.podID, f.real.podCfg = resp.GetPodSandboxId(), cfg
		f.pods[f.real.podID] = true
	}
	if st, err := f.ic.ImageStatus(cctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: f.cfg.Image}}); err != nil || st.GetImage() == nil {
		if _, err := f.ic.PullImage(cctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: f.cfg.Image}}); err != nil {
			return fmt.Errorf("PullImage(%s): %w", f.cfg.Image, err)
		}
	}
	resp, err := f.rc.CreateContainer(cctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: f.real.podID, Config: f.ctrTemplate(fmt.Sprintf("real-w%d-%d", f.worker, f.sum.Recreated), f.real.podCfg), SandboxConfig: f.real.podCfg,
	})
	if err != nil {
		return fmt.Errorf("CreateContainer: %w", err)
	}
	f.real.ctrID = resp.GetContainerId()
	f.ctrs[f.real.ctrID] = true
	if _, err := f.rc.StartContainer(cctx, &runtimeapi.StartContainerRequest{ContainerId: f.real.ctrID}); err != nil {
		return fmt.Errorf("StartContainer: %w", err)
	}
	return nil
}
