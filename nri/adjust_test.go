package nri

import (
	"errors"
	"slices"
	"testing"

	"github.com/containerd/nri/pkg/api"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

func baseSpec() *rspec.Spec {
	return &rspec.Spec{
		Process: &rspec.Process{Args: []string{"sh"}, Env: []string{"PATH=/bin", "KEEP=1", "DROP=1"}},
		Mounts: []rspec.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/data", Type: "bind", Source: "/old"},
		},
		Annotations: map[string]string{"old": "x", "gone": "y"},
		Linux:       &rspec.Linux{},
	}
}

func TestAdjust(t *testing.T) {
	adj := &api.ContainerAdjustment{}
	adj.AddEnv("NEW", "2")
	adj.AddEnv("KEEP", "changed")
	adj.RemoveEnv("DROP")
	adj.AddAnnotation("added", "a")
	adj.RemoveAnnotation("gone")
	adj.AddMount(&api.Mount{Destination: "/data", Type: "bind", Source: "/new", Options: []string{"rbind", "ro"}})
	adj.AddMount(&api.Mount{Destination: "/extra", Type: "tmpfs", Source: "tmpfs"})
	adj.AddHooks(&api.Hooks{CreateRuntime: []*api.Hook{{Path: "/bin/hook", Args: []string{"hook"}}}})
	adj.AddDevice(&api.LinuxDevice{Path: "/dev/nri-null", Type: "c", Major: 1, Minor: 3})
	adj.AddRlimit("RLIMIT_NOFILE", 1024, 512)
	adj.SetLinuxMemoryLimit(64 << 20)
	adj.SetLinuxCPUShares(256)
	adj.SetLinuxCPUSetCPUs("0")
	adj.SetLinuxOomScoreAdj(api.Int(500).Get())

	spec := baseSpec()
	if err := Adjust(spec, adj, nil); err != nil {
		t.Fatal(err)
	}
	wantEnv := []string{"PATH=/bin", "KEEP=changed", "NEW=2"}
	if !slices.Equal(spec.Process.Env, wantEnv) {
		t.Errorf("env = %q, want %q", spec.Process.Env, wantEnv)
	}
	if spec.Annotations["added"] != "a" || spec.Annotations["old"] != "x" {
		t.Errorf("annotations = %v", spec.Annotations)
	}
	if _, ok := spec.Annotations["gone"]; ok {
		t.Errorf("removed annotation kept: %v", spec.Annotations)
	}
	var data, extra *rspec.Mount
	for i, m := range spec.Mounts {
		switch m.Destination {
		case "/data":
			if data != nil {
				t.Errorf("two /data mounts: %v", spec.Mounts)
			}
			data = &spec.Mounts[i]
		case "/extra":
			extra = &spec.Mounts[i]
		}
	}
	if data == nil || data.Source != "/new" || extra == nil {
		t.Errorf("mounts = %v", spec.Mounts)
	}
	if spec.Hooks == nil || len(spec.Hooks.CreateRuntime) != 1 || spec.Hooks.CreateRuntime[0].Path != "/bin/hook" {
		t.Errorf("hooks = %+v", spec.Hooks)
	}
	if len(spec.Linux.Devices) != 1 || spec.Linux.Devices[0].Path != "/dev/nri-null" {
		t.Errorf("devices = %v", spec.Linux.Devices)
	}
	if len(spec.Linux.Resources.Devices) != 1 || !spec.Linux.Resources.Devices[0].Allow {
		t.Errorf("device cgroup = %v", spec.Linux.Resources.Devices)
	}
	if len(spec.Process.Rlimits) != 1 || spec.Process.Rlimits[0].Hard != 1024 {
		t.Errorf("rlimits = %v", spec.Process.Rlimits)
	}
	r := spec.Linux.Resources
	if *r.Memory.Limit != 64<<20 || *r.CPU.Shares != 256 || r.CPU.Cpus != "0" {
		t.Errorf("resources = %+v %+v", r.Memory, r.CPU)
	}
	if spec.Process.OOMScoreAdj == nil || *spec.Process.OOMScoreAdj != 500 {
		t.Errorf("oom_score_adj = %v", spec.Process.OOMScoreAdj)
	}
}

func TestAdjustNilAndCDI(t *testing.T) {
	spec := baseSpec()
	if err := Adjust(spec, nil, nil); err != nil {
		t.Fatal(err)
	}
	adj := &api.ContainerAdjustment{}
	adj.AddCDIDevice(&api.CDIDevice{Name: "vendor.com/dev=one"})
	if err := Adjust(spec, adj, nil); err == nil {
		t.Fatal("CDI devices applied with CDI disabled")
	}
	var got []string
	err := Adjust(spec, adj, func(s *rspec.Spec, devs []string) error {
		if s != spec {
			return errors.New("another spec")
		}
		got = devs
		return nil
	})
	if err != nil || !slices.Equal(got, []string{"vendor.com/dev=one"}) {
		t.Fatalf("CDI injection: %v %v", got, err)
	}
}

func TestConvert(t *testing.T) {
	md := sandbox.Metadata{
		ID: "pod1",
		Config: &runtimeapi.PodSandboxConfig{
			Metadata:    &runtimeapi.PodSandboxMetadata{Name: "name", Uid: "uid", Namespace: "ns"},
			Labels:      map[string]string{"l": "1"},
			Annotations: map[string]string{"a": "1"},
			Linux:       &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "/kubepods"},
		},
		RuntimeHandler: "runc",
		NetNSPath:      "/var/run/netns/x",
		IP:             "10.0.0.2",
		AdditionalIPs:  []string{"fd00::2"},
		Resources:      &runtimeapi.LinuxContainerResources{CpusetCpus: "0-1"},
	}
	p := Pod(md, 42, nil)
	if p.GetId() != "pod1" || p.GetName() != "name" || p.GetUid() != "uid" || p.GetNamespace() != "ns" ||
		p.GetLabels()["l"] != "1" || p.GetAnnotations()["a"] != "1" || p.GetRuntimeHandler() != "runc" ||
		p.GetPid() != 42 || !slices.Equal(p.GetIps(), []string{"10.0.0.2", "fd00::2"}) ||
		p.GetLinux().GetCgroupParent() != "/kubepods" || p.GetLinux().GetPodResources().GetCpu().GetCpus() != "0-1" ||
		len(p.GetLinux().GetNamespaces()) != 1 {
		t.Fatalf("pod = %v", p)
	}

	cmd := &runtimeapi.ContainerMetadata{Name: "ctr"}
	cmd2 := &runtimeapi.ContainerConfig{Metadata: cmd, Labels: map[string]string{"k": "v"},
		Annotations: map[string]string{"ca": "1"}, Command: []string{"sleep"}, Args: []string{"1"},
		Envs: []*runtimeapi.KeyValue{{Key: "A", Value: []byte("b")}}}
	cmeta := container.Metadata{ID: "c1", SandboxID: "pod1", Config: cmd2, UID: 1000, GID: 1000, SupplementalGroups: []int64{5}, ImageRef: "sha256:x", ImageName: "busybox"}
	st := container.Status{CreatedAt: 1, StartedAt: 2, Pid: 7}
	c := Container(cmeta, st, nil)
	if c.GetId() != "c1" || c.GetPodSandboxId() != "pod1" || c.GetName() != "ctr" ||
		c.GetState() != api.ContainerState_CONTAINER_RUNNING || c.GetPid() != 7 ||
		!slices.Equal(c.GetArgs(), []string{"sleep", "1"}) || !slices.Equal(c.GetEnv(), []string{"A=b"}) ||
		c.GetUser().GetUid() != 1000 || !slices.Equal(c.GetUser().GetAdditionalGids(), []uint32{5}) ||
		c.GetImage().GetName() != "busybox" || c.GetAnnotations()["ca"] != "1" {
		t.Fatalf("container = %v", c)
	}
	spec := baseSpec()
	oom := 100
	spec.Process.OOMScoreAdj = &oom
	spec.Linux.CgroupsPath = "/kubepods/c1"
	c = Container(cmeta, container.Status{CreatedAt: 1}, spec)
	if c.GetState() != api.ContainerState_CONTAINER_CREATED || !slices.Equal(c.GetArgs(), []string{"sh"}) ||
		len(c.GetMounts()) != 2 || c.GetLinux().GetCgroupsPath() != "/kubepods/c1" ||
		c.GetLinux().GetOomScoreAdj().GetValue() != 100 || c.GetAnnotations()["old"] != "x" || c.GetAnnotations()["ca"] != "1" {
		t.Fatalf("container from spec = %v", c)
	}
	if s := State(container.Status{CreatedAt: 1, StartedAt: 2, FinishedAt: 3}); s != api.ContainerState_CONTAINER_STOPPED {
		t.Fatalf("exited state = %v", s)
	}
}

func TestResourcesRoundTrip(t *testing.T) {
	in := &runtimeapi.LinuxContainerResources{
		CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 1 << 30,
		CpusetCpus: "0", CpusetMems: "0", Unified: map[string]string{"memory.high": "1"},
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}},
	}
	n := Resources(in)
	// NRI changes the cpus and memory; the rest keeps the requested value.
	n.Cpu.Cpus = "1"
	n.Memory.Limit = api.Int64(int64(2 << 30))
	out := CRIResources(n, &runtimeapi.LinuxContainerResources{OomScoreAdj: 7})
	if out.CpuPeriod != 100000 || out.CpuQuota != 50000 || out.CpuShares != 512 || out.MemoryLimitInBytes != 2<<30 ||
		out.CpusetCpus != "1" || out.Unified["memory.high"] != "1" || len(out.HugepageLimits) != 1 || out.OomScoreAdj != 7 {
		t.Fatalf("CRIResources = %v", out)
	}
	if Resources(nil) != nil {
		t.Fatal("Resources(nil) != nil")
	}
	base := &runtimeapi.LinuxContainerResources{CpuShares: 2}
	if got := CRIResources(nil, base); got.CpuShares != 2 || got == base {
		t.Fatalf("CRIResources(nil, base) = %v", got)
	}
}
