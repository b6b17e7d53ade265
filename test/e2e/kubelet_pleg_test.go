package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// TestKubeletEventedPLEG: with the EventedPLEG feature gate kubelet holds a
// GetContainerEvents stream open on our daemon and relists a pod as soon as
// the stream reports one of its containers stopped. A container (restart
// policy Always) that exits once must be restarted by kubelet, and kubelet's
// log must show that the relist was requested by our event for exactly that
// container; the stream must never have failed.
func TestKubeletEventedPLEG(t *testing.T) {
	d, k := kubeletDaemon(t, framework.KubeletOptions{FeatureGates: map[string]bool{"EventedPLEG": true}})
	const name = "pleg"
	pod := busyboxPod(name, map[string]string{
		// Exits 1 on its first run only: the marker survives in the emptyDir.
		"once": "if [ -e /data/ran ]; then " + sleepScript + "; fi; touch /data/ran; echo first run; sleep 2; exit 1",
	})
	pod.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	k.AddStaticPod(pod)

	first := k.WaitStaticPod(t, "default", name, 3*time.Minute, "container created", func(sp framework.StaticPod) bool {
		_, ok := sp.Containers["once"]
		return ok
	})
	firstID := first.Containers["once"].GetId()
	if a := first.Containers["once"].GetMetadata().GetAttempt(); a != 0 {
		t.Fatalf("first container seen has attempt %d", a)
	}
	restarted := k.WaitStaticPod(t, "default", name, 2*time.Minute, "container restarted and running", func(sp framework.StaticPod) bool {
		c := sp.Containers["once"]
		return c.GetMetadata().GetAttempt() >= 1 && c.GetState() == runtimeapi.ContainerState_CONTAINER_RUNNING
	})
	t.Logf("first %s, then %s", first, restarted)
	if restarted.Sandbox.GetId() != first.Sandbox.GetId() {
		t.Errorf("sandbox replaced: %s, was %s", restarted.Sandbox.GetId(), first.Sandbox.GetId())
	}
	st := framework.ContainerStatusOrFail(t, d.RuntimeClient(), firstID)
	if st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 1 {
		t.Errorf("first container: %v exit %d, want EXITED exit 1", st.GetState(), st.GetExitCode())
	}

	// The relist came from our stream's CONTAINER_STOPPED_EVENT for it.
	k.WaitLogCount(t, 1, time.Minute, "Evented PLEG: requested pod relist after container termination", firstID)
	for _, bad := range []string{
		"Evented PLEG: failed to get container events",
		"Evented PLEG: disabling",
		"Evented PLEG: received ContainerEventResponse with nil PodSandboxStatus",
	} {
		if k.LogContains(bad) {
			k.DumpLog(80)
			t.Errorf("kubelet logged %q", bad)
		}
	}
	// Our daemon served the stream (one, still open).
	b, err := os.ReadFile(d.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	opened := strings.Count(string(b), `"CRI stream opened" method="GetContainerEvents"`)
	closed := strings.Count(string(b), `"CRI stream closed" method="GetContainerEvents"`)
	if opened != 1 || closed != 0 {
		t.Errorf("daemon log: %d GetContainerEvents streams opened, %d closed; want 1 open", opened, closed)
	}

	k.RemoveStaticPod(name)
	k.WaitStaticPodGone(t, "default", name, 3*time.Minute)
}
