package server

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/cni"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// pauseStopTimeout bounds how long StopPodSandbox waits for the pause process to die after SIGKILL.
const pauseStopTimeout = 30 * time.Second

// StopPodSandbox stops every container of the pod, the pause task, tears the
// network down (CNI DEL always attempted, with the ADD arguments, also when
// the netns is already gone) and removes the netns. It is idempotent; a
// teardown error is returned and the teardown is retried on the next call.
func (s *Service) StopPodSandbox(ctx context.Context, r *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	ctx = s.nsCtx(ctx)
	sb, err := s.sandboxes.Get(r.GetPodSandboxId())
	if err != nil {
		if errdefs.IsNotFound(err) {
			// Idempotent: nothing left to reclaim.
			return &runtimeapi.StopPodSandboxResponse{}, nil
		}
		return nil, err
	}
	defer s.nri.blockSync().Unblock()
	if err := s.stopSandbox(ctx, sb); err != nil {
		return nil, err
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

func (s *Service) stopSandbox(ctx context.Context, sb *sandbox.Sandbox) error {
	sb.StopMu.Lock()
	defer sb.StopMu.Unlock()
	if err := s.stopSandboxContainers(ctx, sb.ID); err != nil {
		return fmt.Errorf("stopping containers of sandbox %s: %w", sb.ID, err)
	}
	s.nri.stopPod(ctx, sb)
	if err := s.stopPause(ctx, sb); err != nil {
		return err
	}
	if err := s.teardownNetwork(ctx, sb); err != nil {
		return err
	}
	if err := s.unmountImageVolumes(sb.ID); err != nil {
		return err
	}
	paths := sandbox.PathsFor(s.config.RootDir, s.config.StateDir, sb.ID)
	if err := s.deps.Host.UnmountShm(paths.ShmPath()); err != nil {
		return err
	}
	return nil
}

// stopPause kills the pause task and waits for the exit to be recorded.
func (s *Service) stopPause(ctx context.Context, sb *sandbox.Sandbox) error {
	state, _ := sb.State()
	task, err := sb.Container.Task(ctx, nil)
	if err != nil {
		if !errdefs.IsNotFound(err) {
			return fmt.Errorf("loading pause task of %s: %w", sb.ID, err)
		}
		sb.SetNotReady(0, time.Now())
		return nil
	}
	if state == sandbox.StateReady {
		if err := task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("killing pause task of %s: %w", sb.ID, err)
		}
		select {
		case <-sb.Stopped():
		case <-time.After(pauseStopTimeout):
			return fmt.Errorf("pause process of sandbox %s did not exit within %s: %w", sb.ID, pauseStopTimeout, context.DeadlineExceeded)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// The exit handler deletes the task; make sure it is gone even if the event was missed.
	if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("deleting pause task of %s: %w", sb.ID, err)
	}
	sb.SetNotReady(0, time.Now())
	return nil
}

// teardownNetwork runs CNI DEL and removes the netns, once.
func (s *Service) teardownNetwork(ctx context.Context, sb *sandbox.Sandbox) error {
	md := sb.GetMetadata()
	if md.NetworkTornDown || md.NetNSPath == "" {
		return nil
	}
	args, err := cni.NewPodArgs(md.ID, md.Config, s.podCIDRs())
	if err != nil {
		// Bad annotations could not have passed ADD; tear down without capabilities.
		klog.ErrorS(err, "Building CNI arguments for teardown", "podSandboxID", md.ID)
		args = cni.PodArgs{}
	}
	path := md.NetNSPath
	if closed, cerr := s.deps.Host.LoadNetNS(path).Closed(); cerr == nil && closed {
		// The namespace is gone (e.g. after a reboot); DEL still releases the IP.
		path = ""
	}
	// DEL is retried with fewer capability arguments when a plugin refuses
	// the pod's own (see cni.TeardownPod); when every attempt fails, the
	// sandbox stays NOTREADY with its netns and the next stop tries again.
	start := time.Now()
	err = cni.TeardownPod(ctx, s.deps.Network, md.ID, path, args, networkAdded(md))
	s.observeCNI("teardown", start, err)
	if err != nil {
		return fmt.Errorf("tearing down network of sandbox %s (will retry on next stop): %w", md.ID, err)
	}
	if err := s.deps.Host.LoadNetNS(md.NetNSPath).Remove(); err != nil {
		return fmt.Errorf("removing network namespace %s: %w", md.NetNSPath, err)
	}
	_ = os.RemoveAll(sandbox.PathsFor(s.config.RootDir, s.config.StateDir, md.ID).NetNSDir)
	md = sb.UpdateMetadata(func(m *sandbox.Metadata) { m.NetworkTornDown = true })
	if err := sb.Container.Update(ctx, backend.UpdateExtension(sandbox.MetadataExtension, &md)); err != nil && !errdefs.IsNotFound(err) {
		klog.ErrorS(err, "Persisting network teardown", "podSandboxID", md.ID)
	}
	return nil
}

// networkAdded tells whether a CNI ADD of the sandbox is known to have
// succeeded (its result was recorded).
func networkAdded(md sandbox.Metadata) bool {
	return md.IP != "" || len(md.CNIResult) > 0
}
