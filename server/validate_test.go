package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// kubeletPodConfig is a pod config as kubelet sends it (cgroupfs driver).
func kubeletPodConfig() *runtimeapi.PodSandboxConfig {
	uid := "6f1b3c2e-4d5a-4b7c-9e8f-0a1b2c3d4e5f"
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web-7d4b9c8f6-x2x9z", Namespace: "kube-system", Uid: uid, Attempt: 1},
		Hostname:     "web-7d4b9c8f6-x2x9z",
		LogDirectory: "/var/log/pods/kube-system_web-7d4b9c8f6-x2x9z_" + uid,
		DnsConfig: &runtimeapi.DNSConfig{
			Servers:  []string{"10.96.0.10", "fd00::a"},
			Searches: []string{"kube-system.svc.cluster.local", "svc.cluster.local", "cluster.local"},
			Options:  []string{"ndots:5"},
		},
		PortMappings: []*runtimeapi.PortMapping{
			{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 80, HostPort: 8080},
			{Protocol: runtimeapi.Protocol_UDP, ContainerPort: 53, HostPort: 8080},
			{Protocol: runtimeapi.Protocol_SCTP, ContainerPort: 9999},
			{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 443, HostPort: 8443, HostIp: "127.0.0.1"},
			{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 444, HostPort: 8443, HostIp: "::1"},
			{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 81}, // several ports without host port
		},
		Labels:      map[string]string{"io.kubernetes.pod.name": "web", "app": "web"},
		Annotations: map[string]string{"kubernetes.io/config.source": "api", "kubernetes.io/ingress-bandwidth": "10M"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: "/kubepods/burstable/pod" + uid,
			Sysctls: map[string]string{
				"kernel.shm_rmid_forced":              "1",
				"fs.mqueue.msg_max":                   "100",
				"net.ipv4.ip_unprivileged_port_start": "0",
				"net.ipv4.ping_group_range":           "0 2147483647",
				"net/ipv4/conf/eth0.100/forwarding":   "1",
				"net.ipv6.conf.Eth0.disable_ipv6":     "1",
			},
			Overhead:  &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 10000, MemoryLimitInBytes: 1 << 20},
			Resources: &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: -1, CpuShares: 2},
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions:   &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD},
				RunAsUser:          &runtimeapi.Int64Value{Value: 65534},
				RunAsGroup:         &runtimeapi.Int64Value{Value: 65534},
				SupplementalGroups: []int64{1000, 2000},
				Seccomp:            &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
				Apparmor:           &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "k8s-apparmor-example"},
			},
		},
	}
}

// kubeletContainerConfig is a container config as kubelet sends it.
func kubeletContainerConfig() *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata:   &runtimeapi.ContainerMetadata{Name: "container-with-SupplementalGroupsPolicyMerge-6f1b3c2e-4d5a-4b7c-9e8f-0a1b2c3d4e5f", Attempt: 2},
		Image:      &runtimeapi.ImageSpec{Image: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", UserSpecifiedImage: "nginx:1.27"},
		Command:    []string{"/bin/sh", "-c"},
		Args:       []string{"echo hello; sleep 3600"},
		WorkingDir: "/srv",
		Envs:       []*runtimeapi.KeyValue{{Key: "KUBERNETES_SERVICE_HOST", Value: []byte("10.96.0.1")}, {Key: "EMPTY"}, {Key: "my.dotted-name"}},
		Mounts: []*runtimeapi.Mount{
			{ContainerPath: "/var/run/secrets/kubernetes.io/serviceaccount", HostPath: "/var/lib/kubelet/pods/x/volumes/kubernetes.io~projected/kube-api-access", Readonly: true, RecursiveReadOnly: true},
			{ContainerPath: "/etc/hosts", HostPath: "/var/lib/kubelet/pods/x/etc-hosts"},
			{ContainerPath: "/data", HostPath: "/mnt/data", Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER, MountOptions: []string{"noexec", "nosuid"}},
			{ContainerPath: "/model", Image: &runtimeapi.ImageSpec{Image: "sha256:abc"}, Readonly: true, ImageSubPath: "weights"},
		},
		Devices:     []*runtimeapi.Device{{ContainerPath: "/dev/fuse", HostPath: "/dev/fuse", Permissions: "rwm"}, {ContainerPath: "/dev/null2", HostPath: "/dev/null"}},
		Labels:      map[string]string{"io.kubernetes.container.name": "web"},
		Annotations: map[string]string{"io.kubernetes.container.hash": "abc"},
		LogPath:     "web/2.log",
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{
				CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 128 << 20,
				OomScoreAdj: -997, CpusetCpus: "0-1,3", CpusetMems: "0",
				HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB"}, {PageSize: "1GB", Limit: 1 << 30}},
				Unified:        map[string]string{"memory.oom.group": "1", "memory.swap.max": "0"},
			},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				Capabilities: &runtimeapi.Capability{
					AddCapabilities:  []string{"NET_ADMIN", "CAP_SYS_TIME", "sys_ptrace"},
					DropCapabilities: []string{"ALL"},
				},
				NamespaceOptions:   &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
				RunAsUsername:      "www-data",
				RunAsGroup:         &runtimeapi.Int64Value{Value: 33},
				SupplementalGroups: []int64{4000},
				NoNewPrivs:         true,
				MaskedPaths:        []string{"/proc/acpi", "/proc/kcore"},
				ReadonlyPaths:      []string{"/proc/bus", "/proc/sys"},
				Seccomp:            &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/var/lib/kubelet/seccomp/audit.json"},
			},
		},
	}
}

func createReq(mod func(c *runtimeapi.ContainerConfig)) *runtimeapi.CreateContainerRequest {
	c := kubeletContainerConfig()
	if mod != nil {
		mod(c)
	}
	return &runtimeapi.CreateContainerRequest{PodSandboxId: "abc", Config: c, SandboxConfig: kubeletPodConfig()}
}

func runReq(mod func(c *runtimeapi.PodSandboxConfig)) *runtimeapi.RunPodSandboxRequest {
	c := kubeletPodConfig()
	if mod != nil {
		mod(c)
	}
	return &runtimeapi.RunPodSandboxRequest{Config: c}
}

func resReq(mod func(r *runtimeapi.LinuxContainerResources)) *runtimeapi.UpdateContainerResourcesRequest {
	r := &runtimeapi.LinuxContainerResources{}
	mod(r)
	return &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "abc", Linux: r}
}

func TestValidateRequestAcceptsKubeletRequests(t *testing.T) {
	cases := map[string]any{
		"RunPodSandbox": runReq(nil),
		"RunPodSandbox minimal": &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "n", Uid: "u"},
		}},
		"RunPodSandbox host network": runReq(func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE}
			c.Linux.Sysctls = nil
			c.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 8080, HostPort: 8080}}
		}),
		"RunPodSandbox systemd cgroup parent": runReq(func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.CgroupParent = "kubepods-burstable-pod6f1b3c2e_4d5a.slice"
		}),
		"RunPodSandbox empty log directory": runReq(func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = "" }),
		"RunPodSandbox critest names": runReq(func(c *runtimeapi.PodSandboxConfig) {
			c.Metadata = &runtimeapi.PodSandboxMetadata{Name: "NamespaceOption-PodSandbox-5f3a", Uid: "cri-test-uid-5f3a", Namespace: "cri-test-namespace5f3a"}
		}),
		"RunPodSandbox legacy seccomp path": runReq(func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.Seccomp = nil
			c.Linux.SecurityContext.SeccompProfilePath = "localhost//var/lib/kubelet/seccomp/x.json" //nolint:staticcheck // still sent
		}),
		"CreateContainer": createReq(nil),
		"CreateContainer minimal": &runtimeapi.CreateContainerRequest{PodSandboxId: "abc", Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: "busybox"},
		}},
		"CreateContainer run_as_user": createReq(func(c *runtimeapi.ContainerConfig) {
			sc := c.Linux.SecurityContext
			sc.RunAsUsername, sc.RunAsUser, sc.RunAsGroup = "", &runtimeapi.Int64Value{Value: 0}, &runtimeapi.Int64Value{Value: 0}
		}),
		"CreateContainer add ALL ambient": createReq(func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"ALL"}, AddAmbientCapabilities: []string{"CAP_NET_BIND_SERVICE"}}
		}),
		"CreateContainer log path without directory": createReq(func(c *runtimeapi.ContainerConfig) { c.LogPath = "web.log" }),
		"CreateContainer pid TARGET": createReq(func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "def"}
		}),
		"CreateContainer no limits": createReq(func(c *runtimeapi.ContainerConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuQuota: -1, MemoryLimitInBytes: 0, MemorySwapLimitInBytes: -1, OomScoreAdj: 1000}
		}),
		"CreateContainer minimum memory limit":          createReq(func(c *runtimeapi.ContainerConfig) { c.Linux.Resources.MemoryLimitInBytes = 6 << 20 }),
		"UpdateContainerResources minimum memory limit": resReq(func(r *runtimeapi.LinuxContainerResources) { r.MemoryLimitInBytes = 6 << 20 }),
		"UpdatePodSandboxResources small overhead":      &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: "abc", Overhead: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 20}},
		"UpdateContainerResources": resReq(func(r *runtimeapi.LinuxContainerResources) {
			r.CpuQuota, r.CpuPeriod, r.MemoryLimitInBytes = 20000, 100000, 64<<20
		}),
		"UpdatePodSandboxResources":     &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: "abc", Resources: &runtimeapi.LinuxContainerResources{CpuShares: 1024}},
		"StopContainer":                 &runtimeapi.StopContainerRequest{ContainerId: "abc", Timeout: 30},
		"StopContainer no grace":        &runtimeapi.StopContainerRequest{ContainerId: "abc"},
		"ExecSync":                      &runtimeapi.ExecSyncRequest{ContainerId: "abc", Cmd: []string{"true"}, Timeout: 1},
		"Exec tty":                      &runtimeapi.ExecRequest{ContainerId: "abc", Cmd: []string{"sh"}, Tty: true, Stdin: true, Stdout: true},
		"Attach":                        &runtimeapi.AttachRequest{ContainerId: "abc", Stdout: true, Stderr: true},
		"PortForward":                   &runtimeapi.PortForwardRequest{PodSandboxId: "abc", Port: []int32{80, 65535}},
		"PortForward no ports":          &runtimeapi.PortForwardRequest{PodSandboxId: "abc"},
		"PullImage with sandbox config": &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}, SandboxConfig: kubeletPodConfig()},
		"ListContainers filter":         &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}}},
		"Version":                       &runtimeapi.VersionRequest{Version: "v1"},
		"Status":                        &runtimeapi.StatusRequest{Verbose: true},
	}
	for name, req := range cases {
		t.Run(name, func(t *testing.T) {
			if err := validateRequestFields(req); err != nil {
				t.Fatalf("rejected: %v", err)
			}
		})
	}
}

type badCase struct {
	name  string
	req   any
	field string // the message must name it
}

// badRequests are requests that must be rejected with InvalidArgument. The
// first ones are those issue 7 names.
func badRequests() []badCase {
	return []badCase{
		{"relative log_directory", runReq(func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = "var/log/pods/x" }), "config.log_directory"},
		{"absolute log_path", createReq(func(c *runtimeapi.ContainerConfig) { c.LogPath = "/etc/cron.d/x" }), "config.log_path"},
		{"log_path climbing out", createReq(func(c *runtimeapi.ContainerConfig) { c.LogPath = "../../../etc/cron.d/x" }), "config.log_path"},
		{"log_path climbing out in the middle", createReq(func(c *runtimeapi.ContainerConfig) { c.LogPath = "web/../../x.log" }), "config.log_path"},
		{"cgroup_parent with ..", runReq(func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = "/kubepods/../../system.slice" }), "config.linux.cgroup_parent"},
		{"relative mount container path", createReq(func(c *runtimeapi.ContainerConfig) { c.Mounts[1].ContainerPath = "etc/hosts" }), "config.mounts[1].container_path"},
		{"negative memory limit", createReq(func(c *runtimeapi.ContainerConfig) { c.Linux.Resources.MemoryLimitInBytes = -1 }), "config.linux.resources.memory_limit_in_bytes"},
		{"unknown capability", createReq(func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.Capabilities.AddCapabilities = []string{"CAP_NET_ADMIN", "CAP_MAKE_COFFEE"}
		}), "config.linux.security_context.capabilities.add_capabilities[1]"},
		{"run_as_user with run_as_username", createReq(func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.RunAsUser = &runtimeapi.Int64Value{Value: 1000}
		}), "run_as_username"},
		{"70 KB container name", createReq(func(c *runtimeapi.ContainerConfig) { c.Metadata.Name = strings.Repeat("a", 70<<10) }), "config.metadata.name"},
		{"host port above 65535", runReq(func(c *runtimeapi.PodSandboxConfig) { c.PortMappings[0].HostPort = 70000 }), "config.port_mappings[0].host_port"},
		{"negative host port", runReq(func(c *runtimeapi.PodSandboxConfig) { c.PortMappings[0].HostPort = -1 }), "config.port_mappings[0].host_port"},
		{"invalid sysctl name", runReq(func(c *runtimeapi.PodSandboxConfig) { c.Linux.Sysctls["net.ipv4..ip_forward"] = "1" }), "config.linux.sysctls"},
		{"negative CPU quota", createReq(func(c *runtimeapi.ContainerConfig) { c.Linux.Resources.CpuQuota = -5 }), "config.linux.resources.cpu_quota"},

		// Port mappings.
		{"container port 0", runReq(func(c *runtimeapi.PodSandboxConfig) { c.PortMappings[0].ContainerPort = 0 }), "config.port_mappings[0].container_port"},
		{"container port above 65535", runReq(func(c *runtimeapi.PodSandboxConfig) { c.PortMappings[2].ContainerPort = 65536 }), "config.port_mappings[2].container_port"},
		{"unknown protocol", runReq(func(c *runtimeapi.PodSandboxConfig) { c.PortMappings[1].Protocol = 7 }), "config.port_mappings[1].protocol"},
		{"duplicate host port", runReq(func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = append(c.PortMappings, &runtimeapi.PortMapping{ContainerPort: 90, HostPort: 8080})
		}), "config.port_mappings[6]"},
		{"duplicate host port same address spelled differently", runReq(func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = append(c.PortMappings, &runtimeapi.PortMapping{ContainerPort: 90, HostPort: 8443, HostIp: "0:0::1"})
		}), "config.port_mappings[6]"},
		{"bad host ip", runReq(func(c *runtimeapi.PodSandboxConfig) { c.PortMappings[0].HostIp = "localhost" }), "config.port_mappings[0].host_ip"},
		{"nil port mapping", runReq(func(c *runtimeapi.PodSandboxConfig) { c.PortMappings[0] = nil }), "config.port_mappings[0]"},

		// Metadata.
		{"no config", &runtimeapi.RunPodSandboxRequest{}, "config"},
		{"no metadata", runReq(func(c *runtimeapi.PodSandboxConfig) { c.Metadata = nil }), "config.metadata"},
		{"no pod name", runReq(func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = "" }), "config.metadata.name"},
		{"pod name with slash", runReq(func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = "a/b" }), "config.metadata.name"},
		{"namespace with NUL", runReq(func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Namespace = "a\x00b" }), "config.metadata.namespace"},
		{"uid with CNI separator", runReq(func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Uid = "x;K8S_POD_NAME=evil" }), "config.metadata.uid"},
		{"long namespace", runReq(func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Namespace = strings.Repeat("n", 254) }), "config.metadata.namespace"},
		{"no container name", createReq(func(c *runtimeapi.ContainerConfig) { c.Metadata.Name = "" }), "config.metadata.name"},
		{"container name with newline", createReq(func(c *runtimeapi.ContainerConfig) { c.Metadata.Name = "a\nb" }), "config.metadata.name"},
		{"no container config", &runtimeapi.CreateContainerRequest{PodSandboxId: "abc"}, "config"},
		{"no image", createReq(func(c *runtimeapi.ContainerConfig) { c.Image = nil }), "config.image.image"},
		{"long hostname", runReq(func(c *runtimeapi.PodSandboxConfig) { c.Hostname = strings.Repeat("h", 65) }), "config.hostname"},
		{"hostname with newline", runReq(func(c *runtimeapi.PodSandboxConfig) { c.Hostname = "a\nb" }), "config.hostname"},

		// Sysctls.
		{"sysctl with newline in value", runReq(func(c *runtimeapi.PodSandboxConfig) { c.Linux.Sysctls["kernel.shm_rmid_forced"] = "1\nkernel.x=1" }), "config.linux.sysctls"},
		{"sysctl with space", runReq(func(c *runtimeapi.PodSandboxConfig) { c.Linux.Sysctls["net.ipv4.ip forward"] = "1" }), "config.linux.sysctls"},
		{"sysctl path traversal", runReq(func(c *runtimeapi.PodSandboxConfig) { c.Linux.Sysctls["net/../../kernel/core_pattern"] = "1" }), "config.linux.sysctls"},
		{"sysctl not namespaced", runReq(func(c *runtimeapi.PodSandboxConfig) { c.Linux.Sysctls["kernel.core_pattern"] = "|/evil" }), "config.linux.sysctls"},
		{"net sysctl with host network", runReq(func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
		}), "config.linux.sysctls"},
		{"ipc sysctl with host ipc", runReq(func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.Ipc = runtimeapi.NamespaceMode_NODE
		}), "config.linux.sysctls"},

		// Other pod fields.
		{"DNS server not an IP", runReq(func(c *runtimeapi.PodSandboxConfig) { c.DnsConfig.Servers[0] = "8.8.8.8\nnameserver 1.2.3.4" }), "config.dns_config.servers[0]"},
		{"DNS search with space", runReq(func(c *runtimeapi.PodSandboxConfig) { c.DnsConfig.Searches[0] = "a b" }), "config.dns_config.searches[0]"},
		{"bad bandwidth annotation", runReq(func(c *runtimeapi.PodSandboxConfig) { c.Annotations["kubernetes.io/egress-bandwidth"] = "lots" }), "config.annotations"},
		{"cgroup parent with NUL", runReq(func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = "/kubepods\x00" }), "config.linux.cgroup_parent"},
		{"pod run_as_group without user", runReq(func(c *runtimeapi.PodSandboxConfig) { c.Linux.SecurityContext.RunAsUser = nil }), "config.linux.security_context.run_as_group"},
		{"pod negative run_as_user", runReq(func(c *runtimeapi.PodSandboxConfig) { c.Linux.SecurityContext.RunAsUser.Value = -1 }), "config.linux.security_context.run_as_user"},
		{"pod negative supplemental group", runReq(func(c *runtimeapi.PodSandboxConfig) { c.Linux.SecurityContext.SupplementalGroups = []int64{-3} }), "config.linux.security_context.supplemental_groups[0]"},
		{"pod pid TARGET", runReq(func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_TARGET
		}), "config.linux.security_context.namespace_options.pid"},
		{"unknown namespace mode", runReq(func(c *runtimeapi.PodSandboxConfig) { c.Linux.SecurityContext.NamespaceOptions.Network = 9 }), "namespace_options.network"},
		{"seccomp localhost_ref without Localhost", runReq(func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.Seccomp.LocalhostRef = "/x.json"
		}), "config.linux.security_context.seccomp.localhost_ref"},
		{"pod overhead negative memory", runReq(func(c *runtimeapi.PodSandboxConfig) { c.Linux.Overhead.MemoryLimitInBytes = -1 }), "config.linux.overhead.memory_limit_in_bytes"},
		{"sandbox config of CreateContainer", &runtimeapi.CreateContainerRequest{PodSandboxId: "abc", Config: kubeletContainerConfig(),
			SandboxConfig: &runtimeapi.PodSandboxConfig{LogDirectory: "relative"}}, "sandbox_config.log_directory"},
		{"sandbox config of PullImage", &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"},
			SandboxConfig: &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "../x"}}}, "sandbox_config.linux.cgroup_parent"},

		{"relative seccomp localhost profile", runReq(func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "../../dev/zero"}
		}), "config.linux.security_context.seccomp.localhost_ref"},
		{"empty seccomp localhost profile", runReq(func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost}
		}), "config.linux.security_context.seccomp.localhost_ref"},
		{"relative legacy seccomp path", runReq(func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.Seccomp = nil
			c.Linux.SecurityContext.SeccompProfilePath = "localhost/profile.json" //nolint:staticcheck // still sent
		}), "config.linux.security_context.seccomp_profile_path"},
		{"unknown legacy seccomp path", createReq(func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.Seccomp = nil
			c.Linux.SecurityContext.SeccompProfilePath = "/x.json" //nolint:staticcheck // still sent
		}), "config.linux.security_context.seccomp_profile_path"},

		// Container fields.
		{"relative working dir", createReq(func(c *runtimeapi.ContainerConfig) { c.WorkingDir = "srv" }), "config.working_dir"},
		{"NUL in args", createReq(func(c *runtimeapi.ContainerConfig) { c.Args = []string{"a\x00b"} }), "config.args[0]"},
		{"env key with =", createReq(func(c *runtimeapi.ContainerConfig) { c.Envs[0].Key = "A=B" }), "config.envs[0].key"},
		{"empty env key", createReq(func(c *runtimeapi.ContainerConfig) { c.Envs[1].Key = "" }), "config.envs[1].key"},
		{"NUL in env value", createReq(func(c *runtimeapi.ContainerConfig) { c.Envs[0].Value = []byte("a\x00") }), "config.envs[0].value"},
		{"relative mount host path", createReq(func(c *runtimeapi.ContainerConfig) { c.Mounts[2].HostPath = "data" }), "config.mounts[2].host_path"},
		{"empty mount host path", createReq(func(c *runtimeapi.ContainerConfig) { c.Mounts[2].HostPath = "" }), "config.mounts[2].host_path"},
		{"image mount with host path", createReq(func(c *runtimeapi.ContainerConfig) { c.Mounts[3].HostPath = "/x" }), "config.mounts[3].host_path"},
		{"writable image mount", createReq(func(c *runtimeapi.ContainerConfig) { c.Mounts[3].Readonly = false }), "config.mounts[3].readonly"},
		{"image sub path without image", createReq(func(c *runtimeapi.ContainerConfig) { c.Mounts[2].ImageSubPath = "x" }), "config.mounts[2].image_sub_path"},
		{"rro without ro", createReq(func(c *runtimeapi.ContainerConfig) { c.Mounts[0].Readonly = false }), "config.mounts[0].recursive_read_only"},
		{"rro with propagation", createReq(func(c *runtimeapi.ContainerConfig) {
			c.Mounts[0].Propagation = runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL
		}), "config.mounts[0].recursive_read_only"},
		{"unknown propagation", createReq(func(c *runtimeapi.ContainerConfig) { c.Mounts[2].Propagation = 5 }), "config.mounts[2].propagation"},
		{"mount option with comma", createReq(func(c *runtimeapi.ContainerConfig) { c.Mounts[2].MountOptions = []string{"ro,exec"} }), "config.mounts[2].mount_options[0]"},
		{"relative device path", createReq(func(c *runtimeapi.ContainerConfig) { c.Devices[0].ContainerPath = "dev/fuse" }), "config.devices[0].container_path"},
		{"bad device permissions", createReq(func(c *runtimeapi.ContainerConfig) { c.Devices[0].Permissions = "rwx" }), "config.devices[0].permissions"},
		{"unknown dropped capability", createReq(func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.Capabilities.DropCapabilities = []string{"CAP_"}
		}), "drop_capabilities[0]"},
		{"container run_as_group without user", createReq(func(c *runtimeapi.ContainerConfig) { c.Linux.SecurityContext.RunAsUsername = "" }), "run_as_group"},
		{"run_as_username with colon", createReq(func(c *runtimeapi.ContainerConfig) { c.Linux.SecurityContext.RunAsUsername = "root:0" }), "run_as_username"},
		{"run_as_user out of range", createReq(func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.RunAsUsername, c.Linux.SecurityContext.RunAsUser = "", &runtimeapi.Int64Value{Value: 1 << 40}
		}), "run_as_user"},
		{"relative masked path", createReq(func(c *runtimeapi.ContainerConfig) { c.Linux.SecurityContext.MaskedPaths = []string{"proc/kcore"} }), "masked_paths[0]"},
		{"pid TARGET without target", createReq(func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_TARGET
		}), "namespace_options.target_id"},
		{"userns CONTAINER", createReq(func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}
		}), "userns_options.mode"},
		{"unknown supplemental groups policy", createReq(func(c *runtimeapi.ContainerConfig) { c.Linux.SecurityContext.SupplementalGroupsPolicy = 3 }), "supplemental_groups_policy"},
		{"unknown stop signal", createReq(func(c *runtimeapi.ContainerConfig) { c.StopSignal = 1000 }), "config.stop_signal"},

		// Resources.
		{"cpu period too small", resReq(func(r *runtimeapi.LinuxContainerResources) { r.CpuPeriod = 10 }), "linux.cpu_period"},
		{"cpu quota below 1ms", resReq(func(r *runtimeapi.LinuxContainerResources) { r.CpuQuota = 999 }), "linux.cpu_quota"},
		{"cpu shares 1", resReq(func(r *runtimeapi.LinuxContainerResources) { r.CpuShares = 1 }), "linux.cpu_shares"},
		{"cpu shares too big", resReq(func(r *runtimeapi.LinuxContainerResources) { r.CpuShares = 1 << 20 }), "linux.cpu_shares"},
		{"swap below -1", resReq(func(r *runtimeapi.LinuxContainerResources) { r.MemorySwapLimitInBytes = -2 }), "linux.memory_swap_limit_in_bytes"},
		{"swap below memory", resReq(func(r *runtimeapi.LinuxContainerResources) {
			r.MemoryLimitInBytes, r.MemorySwapLimitInBytes = 2<<20, 1<<20
		}), "linux.memory_swap_limit_in_bytes"},
		{"oom score adj out of range", resReq(func(r *runtimeapi.LinuxContainerResources) { r.OomScoreAdj = -1001 }), "linux.oom_score_adj"},
		{"bad cpuset", resReq(func(r *runtimeapi.LinuxContainerResources) { r.CpusetCpus = "3-1" }), "linux.cpuset_cpus"},
		{"bad cpuset mems", resReq(func(r *runtimeapi.LinuxContainerResources) { r.CpusetMems = "all" }), "linux.cpuset_mems"},
		{"bad hugepage size", resReq(func(r *runtimeapi.LinuxContainerResources) {
			r.HugepageLimits = []*runtimeapi.HugepageLimit{{PageSize: "../2MB"}}
		}), "linux.hugepage_limits[0].page_size"},
		{"unified key with slash", resReq(func(r *runtimeapi.LinuxContainerResources) { r.Unified = map[string]string{"../memory.max": "1"} }), "linux.unified"},
		{"unified cgroup.procs", resReq(func(r *runtimeapi.LinuxContainerResources) { r.Unified = map[string]string{"cgroup.procs": "1"} }), "linux.unified"},
		{"unified cgroup.kill", resReq(func(r *runtimeapi.LinuxContainerResources) { r.Unified = map[string]string{"cgroup.kill": "1"} }), "linux.unified"},
		{"pod resources", &runtimeapi.UpdatePodSandboxResourcesRequest{Resources: &runtimeapi.LinuxContainerResources{CpuQuota: -2}}, "resources.cpu_quota"},

		// Other RPCs.
		{"negative stop timeout", &runtimeapi.StopContainerRequest{ContainerId: "abc", Timeout: -1}, "timeout"},
		{"overflowing exec timeout", &runtimeapi.ExecSyncRequest{ContainerId: "abc", Cmd: []string{"true"}, Timeout: 1 << 62}, "timeout"},
		{"ExecSync without cmd", &runtimeapi.ExecSyncRequest{ContainerId: "abc"}, "cmd"},
		{"Exec NUL in cmd", &runtimeapi.ExecRequest{ContainerId: "abc", Cmd: []string{"a\x00"}, Stdout: true}, "cmd[0]"},
		{"Exec without streams", &runtimeapi.ExecRequest{ContainerId: "abc", Cmd: []string{"sh"}}, "stdout"},
		{"Attach tty with stderr", &runtimeapi.AttachRequest{ContainerId: "abc", Tty: true, Stdout: true, Stderr: true}, "stderr"},
		{"PortForward port 0", &runtimeapi.PortForwardRequest{PodSandboxId: "abc", Port: []int32{80, 0}}, "port[1]"},
		{"ListContainers unknown state", &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: 42}}}, "filter.state.state"},
	}
}

func TestValidateRequestRejects(t *testing.T) {
	for _, tc := range badRequests() {
		t.Run(tc.name, func(t *testing.T) {
			err := validateRequestFields(tc.req)
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error = %v, want InvalidArgument", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %q does not name the field %q", err, tc.field)
			}
			if len(err.Error()) > 1024 {
				t.Fatalf("error is %d bytes long", len(err.Error()))
			}
		})
	}
}

// callUnary calls a request through the unary interceptor as gRPC does; it
// reports whether the handler ran.
func callUnary(t *testing.T, s *Service, req any) (bool, error) {
	t.Helper()
	ran := false
	name := string(proto.MessageName(req.(proto.Message)).Name())
	info := &grpc.UnaryServerInfo{Server: s, FullMethod: "/runtime.v1.RuntimeService/" + strings.TrimSuffix(name, "Request")}
	_, err := s.metrics.UnaryInterceptor(context.Background(), req, info, func(ctx context.Context, req any) (any, error) {
		ran = true
		return nil, nil
	})
	return ran, err
}

// TestRegressionBadRequestsReachHandlers: the requests issue 7 names used
// to reach their handlers (and be accepted, or fail deep in runc or CNI
// with Unknown). Through the interceptor they now get InvalidArgument and
// the handler never runs.
func TestRegressionBadRequestsReachHandlers(t *testing.T) {
	e := newTestEnv(t)
	for _, tc := range badRequests() {
		t.Run(tc.name, func(t *testing.T) {
			ran, err := callUnary(t, e.s, tc.req)
			if ran {
				t.Fatal("the handler ran")
			}
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("code = %v (%v), want InvalidArgument", status.Code(err), err)
			}
			if !strings.Contains(status.Convert(err).Message(), tc.field) {
				t.Fatalf("message %q does not name %q", status.Convert(err).Message(), tc.field)
			}
		})
	}
}

// checkRejectedUpFront calls each request through the unary interceptor and
// checks that it gets InvalidArgument naming the field, without the handler
// running.
func checkRejectedUpFront(t *testing.T, cases []badCase) {
	t.Helper()
	e := newTestEnv(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ran, err := callUnary(t, e.s, tc.req)
			if ran {
				t.Fatal("the handler ran")
			}
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("code = %v (%v), want InvalidArgument", status.Code(err), err)
			}
			if !strings.Contains(status.Convert(err).Message(), tc.field) {
				t.Fatalf("message %q does not name %q", status.Convert(err).Message(), tc.field)
			}
		})
	}
}

// TestRegressionExecSyncEmptyCommandIsInvalidArgument: the live fuzzer's
// ExecSync (and Exec) with an empty command name reached runc, which failed
// with `exec: "": executable file not found in $PATH`, returned as Unknown.
func TestRegressionExecSyncEmptyCommandIsInvalidArgument(t *testing.T) {
	checkRejectedUpFront(t, []badCase{
		{"ExecSync empty command", &runtimeapi.ExecSyncRequest{ContainerId: "abc", Cmd: []string{""}}, "cmd[0]"},
		{"ExecSync empty command with args", &runtimeapi.ExecSyncRequest{ContainerId: "abc", Cmd: []string{"", "-c", "true"}, Timeout: 1}, "cmd[0]"},
		{"ExecSync missing command", &runtimeapi.ExecSyncRequest{ContainerId: "abc"}, "cmd"},
		{"Exec empty command", &runtimeapi.ExecRequest{ContainerId: "abc", Cmd: []string{""}, Stdout: true}, "cmd[0]"},
	})
}

// TestRegressionMemoryLimitBelowRuncMinimumIsInvalidArgument: the live
// fuzzer's containers with a memory limit of a few bytes or KiB were created,
// then failed to start deep in runc ("unable to set memory limit to 4096
// (current usage: ...)") with Unknown; an update to such a limit failed the
// same way.
func TestRegressionMemoryLimitBelowRuncMinimumIsInvalidArgument(t *testing.T) {
	var cases []badCase
	for _, limit := range []int64{1, 4096, 1 << 20, 4 << 20, 6<<20 - 1} {
		cases = append(cases,
			badCase{fmt.Sprintf("CreateContainer %d", limit), createReq(func(c *runtimeapi.ContainerConfig) { c.Linux.Resources.MemoryLimitInBytes = limit }), "config.linux.resources.memory_limit_in_bytes"},
			badCase{fmt.Sprintf("UpdateContainerResources %d", limit), resReq(func(r *runtimeapi.LinuxContainerResources) { r.MemoryLimitInBytes = limit }), "linux.memory_limit_in_bytes"},
		)
	}
	checkRejectedUpFront(t, cases)
}

func TestInterceptorRunsValidRequests(t *testing.T) {
	e := newTestEnv(t)
	for _, req := range []any{runReq(nil), &runtimeapi.VersionRequest{}, &runtimeapi.ExecSyncRequest{ContainerId: "x", Cmd: []string{"ls"}}} {
		ran, err := callUnary(t, e.s, req)
		if err != nil || !ran {
			t.Fatalf("%T: ran=%v err=%v", req, ran, err)
		}
	}
}

// TestRegressionContainerPortZeroLeavesNothing: RunPodSandbox with container
// port 0 used to create a netns, pod files and a containerd container, then
// fail in portmap; now nothing is made at all.
func TestRegressionContainerPortZeroLeavesNothing(t *testing.T) {
	e := newTestEnv(t)
	cfg := podConfig("web")
	cfg.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 0, HostPort: 8080}}
	req := &runtimeapi.RunPodSandboxRequest{Config: cfg}
	info := &grpc.UnaryServerInfo{Server: e.s, FullMethod: "/runtime.v1.RuntimeService/RunPodSandbox"}
	_, err := e.s.metrics.UnaryInterceptor(context.Background(), req, info, func(ctx context.Context, req any) (any, error) {
		return e.s.RunPodSandbox(ctx, req.(*runtimeapi.RunPodSandboxRequest))
	})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("code = %v (%v), want InvalidArgument", status.Code(err), err)
	}
	if f := e.files(t); len(f) != 0 {
		t.Fatalf("files left: %v", f)
	}
	if ids := e.ctrd.LiveIDs(); len(ids) != 0 {
		t.Fatalf("containerd containers left: %v", ids)
	}
	if setups, _ := e.net.Calls(); len(setups) != 0 {
		t.Fatalf("CNI ADD called: %v", setups)
	}
	if l, _ := e.s.ListPodSandbox(context.Background(), &runtimeapi.ListPodSandboxRequest{}); len(l.GetItems()) != 0 {
		t.Fatalf("sandboxes listed: %v", l.GetItems())
	}
}

func TestValidatePIDTargetInSamePod(t *testing.T) {
	e := newTestEnv(t)
	podA := e.runPod(t, podConfig("a"))
	podB := e.runPod(t, podConfig("b"))
	target := e.createContainer(t, podA, ctrConfig("target"))
	req := func(pod, target string) *runtimeapi.CreateContainerRequest {
		cfg := ctrConfig("debug")
		cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: target},
		}
		return &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg}
	}
	if err := e.s.validateRequest(context.Background(), req(podA, target)); err != nil {
		t.Fatalf("same pod: %v", err)
	}
	if err := e.s.validateRequest(context.Background(), req(podB, target)); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "target_id") {
		t.Fatalf("other pod: %v, want InvalidArgument naming target_id", err)
	}
	if err := e.s.validateRequest(context.Background(), req(podA, "nosuchcontainer")); !errdefs.IsNotFound(err) {
		t.Fatalf("missing target: %v, want NotFound", err)
	}
}

// TestRegressionSeccompProfileNotARegularFile: a Localhost seccomp profile
// is read whole while the spec is built; /dev/zero made that read endless.
func TestRegressionSeccompProfileNotARegularFile(t *testing.T) {
	e := newTestEnv(t)
	for _, ref := range []string{"/dev/zero", t.TempDir()} {
		req := runReq(func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: ref}
		})
		ran, err := callUnary(t, e.s, req)
		if ran || status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "regular file") {
			t.Fatalf("%s: ran=%v err=%v, want InvalidArgument before the handler", ref, ran, err)
		}
		creq := createReq(func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.Seccomp = nil
			c.Linux.SecurityContext.SeccompProfilePath = "localhost/" + ref //nolint:staticcheck // still sent
		})
		if ran, err := callUnary(t, e.s, creq); ran || status.Code(err) != codes.InvalidArgument {
			t.Fatalf("legacy %s: ran=%v err=%v, want InvalidArgument before the handler", ref, ran, err)
		}
	}
}

// fakeServerStream hands out one request message.
type fakeServerStream struct {
	grpc.ServerStream
	req proto.Message
}

func (f *fakeServerStream) Context() context.Context    { return context.Background() }
func (f *fakeServerStream) SetHeader(metadata.MD) error { return nil }
func (f *fakeServerStream) SendMsg(any) error           { return nil }
func (f *fakeServerStream) RecvMsg(m any) error {
	if f.req == nil {
		return io.EOF
	}
	proto.Merge(m.(proto.Message), f.req)
	f.req = nil
	return nil
}

func TestStreamInterceptorValidates(t *testing.T) {
	e := newTestEnv(t)
	for _, tc := range []struct {
		req  *runtimeapi.StreamContainersRequest
		want codes.Code
	}{
		{&runtimeapi.StreamContainersRequest{Filter: &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: 9}}}, codes.InvalidArgument},
		{&runtimeapi.StreamContainersRequest{}, codes.OK},
	} {
		ss := &fakeServerStream{req: tc.req}
		info := &grpc.StreamServerInfo{FullMethod: "/runtime.v1.RuntimeService/StreamContainers", IsServerStream: true}
		err := e.s.metrics.StreamInterceptor(e.s, ss, info, func(_ any, stream grpc.ServerStream) error {
			return stream.RecvMsg(new(runtimeapi.StreamContainersRequest))
		})
		if status.Code(err) != tc.want {
			t.Fatalf("%v: code %v (%v), want %v", tc.req, status.Code(err), err, tc.want)
		}
	}
}

func TestShortCutsLongValues(t *testing.T) {
	s := short(strings.Repeat("é", 100))
	if len(s) > 100 || !strings.Contains(s, "(200 bytes)") {
		t.Fatalf("short = %s", s)
	}
	if got := short("abc"); got != `"abc"` {
		t.Fatalf("short = %s", got)
	}
	if err := validateRequestFields(nil); err != nil {
		t.Fatal(err)
	}
	var target error = errdefs.ErrInvalidArgument
	if !errors.Is(invalidField("f", "x"), target) {
		t.Fatal("invalidField does not wrap ErrInvalidArgument")
	}
}
