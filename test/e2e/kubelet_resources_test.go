package e2e

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// TestKubeletUpdateContainerResourcesCPUManager: kubelet changes the
// resources of a running container through UpdateContainerResources.
//
// In-place pod resize cannot be driven by a standalone kubelet: a static
// pod's spec is its manifest, and a changed manifest is a new pod (new UID,
// containers recreated); resize needs the API server's resize subresource
// (the node e2e suite's "Pod InPlace Resize Container" specs). The other
// kubelet path that calls UpdateContainerResources on running containers
// needs no API server: the static CPU manager. When a Guaranteed pod takes a
// CPU exclusively, kubelet shrinks the shared cpuset of every other running
// container with UpdateContainerResources (and grows it back when the pod
// goes). Our daemon must apply it to the running container (its cgroup
// cpuset.cpus) and report it in ContainerStatus, without restarting it.
func TestKubeletUpdateContainerResourcesCPUManager(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs: one reserved, one to pin")
	}
	all := strings.TrimSpace(readFile(t, "/sys/fs/cgroup/cpuset/cpuset.cpus"))
	d, k := kubeletDaemon(t, framework.KubeletOptions{Config: map[string]any{
		"cpuManagerPolicy":          "static",
		"reservedSystemCPUs":        "0",
		"cpuManagerReconcilePeriod": "2s",
	}})
	rc := d.RuntimeClient()

	k.AddStaticPod(busyboxPod("shared", map[string]string{"app": sleepScript}))
	shared := k.WaitStaticPodRunning(t, "default", "shared", 3*time.Minute, "app").Containers["app"]
	cpusetFile := framework.CgroupV1File("cpuset", framework.ContainerCgroupsPath(t, rc, shared.GetId()), "cpuset.cpus")
	waitCpuset := func(want, why string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			got := strings.TrimSpace(readFile(t, cpusetFile))
			st := framework.ContainerStatusOrFail(t, rc, shared.GetId())
			reported := st.GetResources().GetLinux().GetCpusetCpus()
			if got == want && (reported == want || want == all && reported == "") {
				return
			}
			if time.Now().After(deadline) {
				k.DumpLog(60)
				t.Fatalf("%s: shared container cpuset.cpus %q, ContainerStatus cpuset %q; want %q", why, got, reported, want)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	// Before any exclusive allocation the shared pool is every CPU.
	waitCpuset(all, "no exclusive CPU allocated")

	pinned := busyboxPod("pinned", map[string]string{"app": sleepScript})
	pinned.Spec.Containers[0].Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("64Mi")},
	}
	k.AddStaticPod(pinned)
	pc := k.WaitStaticPodRunning(t, "default", "pinned", 3*time.Minute, "app").Containers["app"]
	excl := strings.TrimSpace(readFile(t, framework.CgroupV1File("cpuset", framework.ContainerCgroupsPath(t, rc, pc.GetId()), "cpuset.cpus")))
	if excl == "0" || strings.ContainsAny(excl, ",-") {
		t.Fatalf("Guaranteed container cpuset %q: want one CPU other than the reserved 0", excl)
	}
	t.Logf("Guaranteed container pinned to CPU %s", excl)

	// The shared pool loses that CPU: only the reserved CPU 0 is left.
	waitCpuset("0", "Guaranteed pod running")
	k.RemoveStaticPod("pinned")
	k.WaitStaticPodGone(t, "default", "pinned", 3*time.Minute)
	waitCpuset(all, "Guaranteed pod removed")

	// Both changes went through UpdateContainerResources, on the same
	// container, which never restarted.
	now, ok := k.FindStaticPod(t, "default", "shared")
	if !ok || now.Containers["app"].GetId() != shared.GetId() || now.Containers["app"].GetMetadata().GetAttempt() != 0 {
		t.Errorf("shared container replaced: %s, was %s", now, shared.GetId())
	}
	n := strings.Count(readFile(t, d.LogPath()), `"CRI request" method="UpdateContainerResources" request="container_id:\"`+shared.GetId())
	if n < 2 {
		t.Errorf("daemon log: %d UpdateContainerResources calls for the shared container, want at least 2", n)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
