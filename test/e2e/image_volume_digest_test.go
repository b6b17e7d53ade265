package e2e

import (
	"context"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// TestImageVolumeDigestReported: an image mounted as a volume by tag is
// reported in ContainerStatus with the image it resolved to
// (ImageSpec.image_ref, the image ID PullImage returned), and its files are
// readable in the container.
func TestImageVolumeDigestReported(t *testing.T) {
	e := newCtrEnv(t)
	rc, ic := e.rc(), e.d.ImageClient()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := ic.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: framework.BusyboxImageRef}})
	if err != nil || st.GetImage() == nil {
		t.Fatalf("ImageStatus(%s) = %v, %v", framework.BusyboxImageRef, st, err)
	}
	imageID := st.GetImage().GetId()

	podID, podCfg := e.runPod("imgvol")
	cfg := framework.NewContainerConfig("reader", framework.BusyboxImageRef, "sleep", "3600")
	cfg.Mounts = append(cfg.Mounts, &runtimeapi.Mount{
		ContainerPath: "/imgvol", Readonly: true,
		Image: &runtimeapi.ImageSpec{Image: framework.BusyboxImageRef, UserSpecifiedImage: framework.BusyboxImageRef},
	})
	id := e.run(podID, podCfg, cfg)
	resp, err := rc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, m := range resp.GetStatus().GetMounts() {
		if m.GetContainerPath() != "/imgvol" {
			continue
		}
		found = true
		if m.GetImage().GetImageRef() != imageID || m.GetImage().GetImage() != framework.BusyboxImageRef {
			t.Errorf("image mount status: image %q image_ref %q, want image_ref %q", m.GetImage().GetImage(), m.GetImage().GetImageRef(), imageID)
		}
	}
	if !found {
		t.Errorf("no /imgvol mount in ContainerStatus: %v", resp.GetStatus().GetMounts())
	}
	if _, _, code := framework.ExecSyncOrFail(t, rc, id, 10*time.Second, "test", "-x", "/imgvol/bin/busybox"); code != 0 {
		t.Errorf("image volume content not readable in the container (exit %d)", code)
	}
}
