package e2e

import (
	"maps"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// kubeletDaemon starts the private daemon a kubelet test drives (test
// images mapped to the stack's registry) and the kubelet on it; it skips
// when there is no kubelet binary, before starting anything.
func kubeletDaemon(t *testing.T, opts framework.KubeletOptions) (*framework.Daemon, *framework.Kubelet) {
	t.Helper()
	env := framework.RequireStack(t, "ContainerdAddress", "CertsD")
	framework.KubeletBinary(t)
	d := framework.StartDaemon(t, env, framework.DaemonOptions{RegistryConfigPath: env.CertsD})
	return d, framework.StartKubelet(t, d, opts)
}

// busyboxPod is a static pod of busybox containers, each running the
// shell script given for its name.
func busyboxPod(name string, scripts map[string]string) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyAlways,
			TerminationGracePeriodSeconds: new(int64(2)),
		},
	}
	for _, n := range slices.Sorted(maps.Keys(scripts)) {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{
			Name:            n,
			Image:           framework.BusyboxImageRef,
			ImagePullPolicy: corev1.PullIfNotPresent,
			Command:         []string{"sh", "-c", scripts[n]},
		})
	}
	return pod
}

// sleepScript runs until SIGTERM.
const sleepScript = "trap 'exit 0' TERM; while true; do sleep 1; done"

// TestKubeletRestartKeepsRunningPods: a standalone kubelet runs a static
// pod on our daemon; kubelet is killed (SIGKILL) and started again. The
// restarted kubelet must adopt the pod as it is: same sandbox, same
// containers (IDs, attempt, restart count annotation), nothing created or
// stopped, before and after it has synced the pod again.
func TestKubeletRestartKeepsRunningPods(t *testing.T) {
	d, k := kubeletDaemon(t, framework.KubeletOptions{})
	rc := d.RuntimeClient()
	const name = "restart"
	k.AddStaticPod(busyboxPod(name, map[string]string{"one": sleepScript, "two": sleepScript}))
	before := k.WaitStaticPodRunning(t, "default", name, 3*time.Minute, "one", "two")
	// Let kubelet sync the running pod a few times before the kill, so the
	// kill does not land in the middle of the start.
	k.WaitLogCount(t, 2, 2*time.Minute, `"SyncPod exit"`, k.MirrorName(name))
	t.Logf("before: %s", before)

	k.Kill()
	mid, ok := k.FindStaticPod(t, "default", name)
	if !ok {
		t.Fatal("the pod's sandbox is not ready right after kubelet was killed")
	}
	assertSamePod(t, "kubelet down", before, mid)

	k.Start()
	// Several syncs of the pod by the new kubelet (syncFrequency 10s): it has
	// compared the runtime's state with the manifest and acted on it.
	k.WaitLogCount(t, 3, 2*time.Minute, `"SyncPod exit"`, k.MirrorName(name))
	after, ok := k.FindStaticPod(t, "default", name)
	if !ok {
		t.Fatal("the pod's sandbox is not ready after kubelet restarted")
	}
	t.Logf("after: %s", after)
	assertSamePod(t, "kubelet restarted", before, after)

	// Nothing else was created: exactly one sandbox and two containers.
	if ids := framework.ListPodIDs(t, rc); len(ids) != 1 {
		t.Errorf("sandboxes after the restart: %v, want only %s", ids, before.Sandbox.GetId())
	}
	if cs := framework.ListContainersOrFail(t, rc, nil); len(cs) != 2 {
		t.Errorf("containers after the restart: %v, want 2", framework.ContainerIDs(cs))
	}
	for n, c := range after.Containers {
		st := framework.ContainerStatusOrFail(t, rc, c.GetId())
		if st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("container %s: %v after the restart", n, st.GetState())
		}
		if got, want := st.GetStartedAt(), framework.ContainerStatusOrFail(t, rc, before.Containers[n].GetId()).GetStartedAt(); got != want {
			t.Errorf("container %s: started at %d, was %d", n, got, want)
		}
	}
	if k.LogContains("Killing unwanted pod") || k.LogContains("Killing container with a grace period") {
		k.DumpLog(80)
		t.Error("the restarted kubelet killed something")
	}

	// The manifest removed, the new kubelet tears the pod down on our daemon.
	k.RemoveStaticPod(name)
	k.WaitStaticPodGone(t, "default", name, 3*time.Minute)
}

// assertSamePod checks that b is the same pod instance as a: same sandbox,
// same container IDs, attempts and restart counts.
func assertSamePod(t *testing.T, when string, a, b framework.StaticPod) {
	t.Helper()
	if a.Sandbox.GetId() != b.Sandbox.GetId() {
		t.Errorf("%s: sandbox %s replaced by %s", when, a.Sandbox.GetId(), b.Sandbox.GetId())
	}
	if len(a.Containers) != len(b.Containers) {
		t.Errorf("%s: containers %s, were %s", when, b, a)
	}
	for n, ca := range a.Containers {
		cb, ok := b.Containers[n]
		if !ok {
			t.Errorf("%s: container %s gone", when, n)
			continue
		}
		if ca.GetId() != cb.GetId() || ca.GetMetadata().GetAttempt() != cb.GetMetadata().GetAttempt() {
			t.Errorf("%s: container %s: %s attempt %d, was %s attempt %d", when, n, cb.GetId(), cb.GetMetadata().GetAttempt(), ca.GetId(), ca.GetMetadata().GetAttempt())
		}
		if cb.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("%s: container %s is %v", when, n, cb.GetState())
		}
		const rcKey = "io.kubernetes.container.restartCount"
		if ca.GetAnnotations()[rcKey] != cb.GetAnnotations()[rcKey] {
			t.Errorf("%s: container %s restart count %q, was %q", when, n, cb.GetAnnotations()[rcKey], ca.GetAnnotations()[rcKey])
		}
	}
}
