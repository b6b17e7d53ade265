package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// TestValidateRejectsBadRequests sends the bad requests issue 7 names (and
// a few more) to a private daemon: each must come back InvalidArgument with
// a message naming the field, and leave nothing behind: no sandbox or
// container listed, no netns or per-object directory in the daemon's dirs,
// no containerd container in its namespace.
func TestValidateRejectsBadRequests(t *testing.T) {
	s := startSandboxDaemon(t, nil)
	rc := s.rc()
	framework.PullImageOrFail(t, s.d, framework.BusyboxImageRef)

	// A real pod and container for the container-level requests.
	podCfg := framework.PodConfig("validate", framework.WithLogDirectory(t.TempDir()))
	pod := runPod(t, rc, podCfg, "")
	ctrCfg := framework.NewContainerConfig("good", framework.BusyboxImageRef, "sleep", "3600")
	ctr := framework.CreateContainerOrFail(t, rc, pod, podCfg, ctrCfg)

	newPod := func(mod func(c *runtimeapi.PodSandboxConfig)) *runtimeapi.PodSandboxConfig {
		c := framework.PodConfig("bad", framework.WithLogDirectory(t.TempDir()))
		mod(c)
		return c
	}
	newCtr := func(mod func(c *runtimeapi.ContainerConfig)) *runtimeapi.ContainerConfig {
		c := framework.NewContainerConfig("bad", framework.BusyboxImageRef, "sleep", "3600")
		mod(c)
		return c
	}
	hostDir := t.TempDir()

	pods := []struct {
		name, field string
		cfg         *runtimeapi.PodSandboxConfig
	}{
		{"relative log_directory", "log_directory", newPod(func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = "var/log/pods/x" })},
		{"cgroup_parent with ..", "cgroup_parent", newPod(func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = "/kubepods/../../evil" })},
		{"host port 70000", "host_port", newPod(func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 80, HostPort: 70000}}
		})},
		{"container port 0", "container_port", newPod(func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 0, HostPort: 18099}}
		})},
		{"duplicate host port", "port_mappings[1]", newPod(func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 80, HostPort: 18099}, {ContainerPort: 81, HostPort: 18099}}
		})},
		{"invalid sysctl name", "sysctls", newPod(func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"net.ipv4..ip_forward": "1"}
		})},
		{"non-namespaced sysctl", "sysctls", newPod(func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"kernel.core_pattern": "|/bin/false"}
		})},
		{"negative pod CPU quota", "cpu_quota", newPod(func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuQuota: -5}
		})},
		{"pod name with CNI separator", "metadata.name", newPod(func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = "a;b=c" })},
		{"long hostname", "hostname", newPod(func(c *runtimeapi.PodSandboxConfig) { c.Hostname = strings.Repeat("h", 65) })},
	}
	for _, tc := range pods {
		_, err := rc.RunPodSandbox(sbCtx(t), &runtimeapi.RunPodSandboxRequest{Config: tc.cfg})
		wantInvalid(t, "RunPodSandbox "+tc.name, err, tc.field)
	}

	ctrs := []struct {
		name, field string
		cfg         *runtimeapi.ContainerConfig
	}{
		{"absolute log_path", "log_path", newCtr(func(c *runtimeapi.ContainerConfig) { c.LogPath = "/tmp/evil.log" })},
		{"log_path with ..", "log_path", newCtr(func(c *runtimeapi.ContainerConfig) { c.LogPath = "../../evil.log" })},
		{"relative mount container path", "container_path", newCtr(func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "mnt", HostPath: hostDir}}
		})},
		{"relative mount host path", "host_path", newCtr(func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/mnt", HostPath: "created-in-daemon-cwd"}}
		})},
		{"negative memory limit", "memory_limit_in_bytes", newCtr(func(c *runtimeapi.ContainerConfig) { c.Linux.Resources.MemoryLimitInBytes = -1 })},
		{"negative CPU quota", "cpu_quota", newCtr(func(c *runtimeapi.ContainerConfig) { c.Linux.Resources.CpuQuota = -5 })},
		{"memory limit runc cannot apply", "memory_limit_in_bytes", newCtr(func(c *runtimeapi.ContainerConfig) { c.Linux.Resources.MemoryLimitInBytes = 4096 })},
		{"unknown capability", "add_capabilities", newCtr(func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"CAP_MAKE_COFFEE"}}
		})},
		{"run_as_user with run_as_username", "run_as_username", newCtr(func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.RunAsUser = &runtimeapi.Int64Value{Value: 1000}
			c.Linux.SecurityContext.RunAsUsername = "www-data"
		})},
		{"70 KB name", "metadata.name", newCtr(func(c *runtimeapi.ContainerConfig) { c.Metadata.Name = strings.Repeat("n", 70<<10) })},
		{"relative working dir", "working_dir", newCtr(func(c *runtimeapi.ContainerConfig) { c.WorkingDir = "tmp" })},
	}
	for _, tc := range ctrs {
		_, err := rc.CreateContainer(sbCtx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: tc.cfg, SandboxConfig: podCfg})
		wantInvalid(t, "CreateContainer "+tc.name, err, tc.field)
	}
	_, err := rc.UpdateContainerResources(sbCtx(t), &runtimeapi.UpdateContainerResourcesRequest{
		ContainerId: ctr, Linux: &runtimeapi.LinuxContainerResources{CpuQuota: -5, CpuPeriod: 100000},
	})
	wantInvalid(t, "UpdateContainerResources negative CPU quota", err, "cpu_quota")
	_, err = rc.UpdateContainerResources(sbCtx(t), &runtimeapi.UpdateContainerResourcesRequest{
		ContainerId: ctr, Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 4096},
	})
	wantInvalid(t, "UpdateContainerResources memory limit runc cannot apply", err, "memory_limit_in_bytes")
	_, err = rc.ExecSync(sbCtx(t), &runtimeapi.ExecSyncRequest{ContainerId: ctr, Cmd: []string{""}})
	wantInvalid(t, "ExecSync empty command", err, "cmd[0]")
	_, err = rc.StopContainer(sbCtx(t), &runtimeapi.StopContainerRequest{ContainerId: ctr, Timeout: -1})
	wantInvalid(t, "StopContainer negative timeout", err, "timeout")

	// Nothing but the good pod and container exists.
	if ids := framework.ListPodIDs(t, rc); !slices.Equal(ids, []string{pod}) {
		t.Errorf("pods listed: %v, want only %s", ids, pod)
	}
	cl, err := rc.ListContainers(sbCtx(t), &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cl.GetContainers()) != 1 || cl.GetContainers()[0].GetId() != ctr {
		t.Errorf("containers listed: %v, want only %s", cl.GetContainers(), ctr)
	}
	if got := framework.ContainerdContainers(t, s.env.ContainerdAddress, s.d.Opts.Namespace); !sameSet(got, []string{pod, ctr}) {
		t.Errorf("containerd containers: %v, want %s and %s", got, pod, ctr)
	}
	for _, dir := range []string{
		filepath.Join(s.d.StateDir(), "netns"), filepath.Join(s.d.StateDir(), "sandboxes"), filepath.Join(s.d.RootDir(), "sandboxes"),
	} {
		if got := framework.DirEntries(t, dir); len(got) > 1 || (len(got) == 1 && got[0] != pod) {
			t.Errorf("%s holds %v, want only %s", dir, got, pod)
		}
	}
	if got := framework.DirEntries(t, filepath.Join(s.d.RootDir(), "containers")); len(got) > 1 || (len(got) == 1 && got[0] != ctr) {
		t.Errorf("containers dir holds %v, want only %s", got, ctr)
	}
	if got := framework.NetNSMounts(t, s.d.StateDir()); len(got) != 1 {
		t.Errorf("netns mounts: %v, want the good pod's only", got)
	}
	if _, err := os.Stat("/created-in-daemon-cwd"); err == nil {
		t.Errorf("a relative mount host path was created under /")
	}

	// Cleanup leaves nothing either.
	stopPod(t, rc, pod)
	removePod(t, rc, pod)
	s.assertNoLeaks(t, pod)
}

func wantInvalid(t *testing.T, what string, err error, field string) {
	t.Helper()
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("%s: code %s (%v), want InvalidArgument", what, status.Code(err), err)
		return
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, field) || len(msg) > 1024 {
		t.Errorf("%s: message %q does not name %q (or is too long)", what, msg, field)
		return
	}
	t.Logf("%s: InvalidArgument: %s", what, status.Convert(err).Message())
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
