package spec

import (
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Spec generation runs once per CreateContainer and RunPodSandbox. These
// benchmarks measure it (options built from the CRI request, then the
// whole OCI spec generated from them, as containerd.WithNewSpec does) for
// a container shaped like kubelet's: labels and annotations, env, a few
// volume mounts, resources and a security context.

func kubeletShapedContainer(b *testing.B) ContainerParams {
	p := baseContainer(b)
	p.Config.Labels = map[string]string{
		"io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.namespace": "default",
		"io.kubernetes.pod.uid": "0f9d3c2a", "io.kubernetes.container.name": "app",
	}
	p.Config.Annotations = map[string]string{
		"io.kubernetes.container.hash": "4b1c5a3e", "io.kubernetes.container.restartCount": "0",
		"io.kubernetes.container.terminationMessagePath":   "/dev/termination-log",
		"io.kubernetes.container.terminationMessagePolicy": "File",
	}
	for _, kv := range [][2]string{{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}, {"POD_NAME", "web-0"}, {"POD_IP", "10.0.0.7"}} {
		p.Config.Envs = append(p.Config.Envs, &runtimeapi.KeyValue{Key: kv[0], Value: []byte(kv[1])})
	}
	p.Config.Mounts = []*runtimeapi.Mount{
		{ContainerPath: "/etc/hosts", HostPath: "/tmp"},
		{ContainerPath: "/dev/termination-log", HostPath: "/tmp"},
		{ContainerPath: "/var/run/secrets/kubernetes.io/serviceaccount", HostPath: "/tmp", Readonly: true},
	}
	resources(&p).MemoryLimitInBytes = 128 << 20
	resources(&p).CpuShares = 102
	resources(&p).CpuQuota = 50000
	resources(&p).CpuPeriod = 100000
	csc(&p).Capabilities = &runtimeapi.Capability{DropCapabilities: []string{"NET_RAW"}}
	csc(&p).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
	csc(&p).RunAsUser = &runtimeapi.Int64Value{Value: 1000}
	return p
}

func BenchmarkContainerSpec(b *testing.B) {
	p := kubeletShapedContainer(b)
	g := newTestGenerator(b, fakeHost())
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		opts, err := g.ContainerSpecOpts(p)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := generate(b, "ctr-1", opts); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSandboxSpec(b *testing.B) {
	p := baseSandbox(b)
	g := newTestGenerator(b, fakeHost())
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		opts, err := g.SandboxSpecOpts(p)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := generate(b, "sb-1", opts); err != nil {
			b.Fatal(err)
		}
	}
}
