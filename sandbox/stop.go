package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/cni"
)

// PauseStopTimeout bounds how long Stop waits for the pause process to die
// after SIGKILL.
const PauseStopTimeout = 30 * time.Second

// Stop stops the sandbox itself: the pause task, the network (CNI DEL
// always attempted, with the ADD arguments, also when the netns is already
// gone, then the netns removed), the pod's image volumes and its /dev/shm.
// The pod's containers must have been stopped by the caller. It is
// idempotent; a teardown error is returned and the teardown is retried on
// the next call.
func (c *Controller) Stop(ctx context.Context, sb *Sandbox) error {
	if err := sb.LockStop(ctx); err != nil {
		return err
	}
	defer sb.UnlockStop()
	// The network is torn down while the pause process dies: CNI DEL does
	// not need it gone (the netns stays mounted until the teardown removes
	// it), and a pause that will not die no longer keeps the pod's address.
	netErr := make(chan error, 1)
	go func() { netErr <- c.teardownNetwork(ctx, sb) }()
	pauseErr := c.stopPause(ctx, sb)
	if err := <-netErr; pauseErr == nil && err != nil {
		return err
	}
	if pauseErr != nil {
		return pauseErr
	}
	if err := c.o.ImageVolumes.Unmount(sb.ID); err != nil {
		return err
	}
	paths := PathsFor(c.o.Config.RootDir, c.o.Config.StateDir, sb.ID)
	if err := c.o.Deps.Host.UnmountShm(paths.ShmPath()); err != nil {
		return err
	}
	return nil
}

// stopPause kills the pause task and waits for the exit to be recorded.
func (c *Controller) stopPause(ctx context.Context, sb *Sandbox) error {
	state, _ := sb.State()
	// gone marks the sandbox as having no pause task any more.
	gone := func() error {
		sb.noTask.Store(true)
		sb.SetNotReady(0, c.now())
		return nil
	}
	if sb.NoTask() {
		return gone()
	}
	if state == StateReady {
		// The task is addressed by the pause container's ID on containerd's
		// task service (no Tasks/Get to load it first). It is waited on
		// directly, not only through the exit event: an event that comes
		// late (the event monitor busy, re-subscribing) or not at all must
		// not hold the stop until its deadline.
		wctx, cancelWait := context.WithCancel(ctx)
		defer cancelWait()
		exitCh := backend.WaitTask(wctx, c.o.Deps.Containerd, sb.ID)
		// To the pause alone, as the built-in CRI does: it is the init of
		// the pod's PID namespace (the kernel kills whatever else runs in
		// it), or, sharing the host's, alone in its cgroup. A kill of every
		// process (runc kill --all) would freeze, list and thaw its cgroup.
		// Through the pause's pidfd when it has one (package pidfd): no
		// runc kill.
		if !sb.init.Signal(syscall.SIGKILL) {
			if err := backend.KillTask(ctx, c.o.Deps.Containerd, sb.ID, syscall.SIGKILL, false); err != nil {
				if !errdefs.IsNotFound(err) {
					return fmt.Errorf("killing pause task of %s: %w", sb.ID, err)
				}
				// No task: it was never started or is already deleted.
				return gone()
			}
		}
		timeout := time.NewTimer(PauseStopTimeout)
		defer timeout.Stop()
	wait:
		for {
			select {
			case <-sb.Stopped():
				break wait
			case st := <-exitCh:
				if st.Error() != nil {
					exitCh = nil // the wait broke: the event still tells
					continue
				}
				c.recordExit(sb, st.ExitCode(), st.ExitTime())
				break wait
			case <-timeout.C:
				return fmt.Errorf("pause process of sandbox %s did not exit within %s: %w", sb.ID, PauseStopTimeout, context.DeadlineExceeded)
			case <-ctx.Done():
				return fmt.Errorf("waiting for the pause process of sandbox %s to exit: %w", sb.ID, ctx.Err())
			}
		}
	}
	// The exit handler deletes the task; make sure it is gone even if the
	// event was missed (after the handler's deletion, if it runs now).
	if err := c.deletePause(ctx, sb, func(ctx context.Context) error { return c.deletePauseTask(ctx, sb) }); err != nil {
		return err
	}
	return gone()
}

// deletePauseTask deletes the pause task (through deletePause, so never
// while the exit handler deletes it). A call that fails with the shim's
// connection closing under it (ttrpc: closed) is no failure once the task
// is gone: the task is looked up again a few times, briefly, before the
// error counts.
//
// The pause container runs nothing but the pause process, which is dead
// here (or was killed with the rest of its container): the task is deleted
// with one call (backend.DeleteExitedTask; the client's kill-and-wait only
// when containerd says a process still runs).
func (c *Controller) deletePauseTask(ctx context.Context, sb *Sandbox) error {
	err := backend.DeleteExitedTask(ctx, c.o.Deps.Containerd, sb.Container, true)
	if err == nil {
		return nil
	}
	for i := 0; i < 10; i++ {
		if _, terr := sb.Container.Task(ctx, nil); errdefs.IsNotFound(terr) {
			return nil
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			i = 10
		}
	}
	return fmt.Errorf("deleting pause task of %s: %w", sb.ID, err)
}

// teardownNetwork runs CNI DEL and removes the netns, once.
func (c *Controller) teardownNetwork(ctx context.Context, sb *Sandbox) error {
	md := sb.GetMetadata()
	if md.NetworkTornDown || md.NetNSPath == "" {
		return nil
	}
	args, err := cni.NewPodArgs(md.ID, md.Config, c.podCIDRs())
	if err != nil {
		// Bad annotations could not have passed ADD; tear down without capabilities.
		klog.ErrorS(err, "Building CNI arguments for teardown", "podSandboxID", md.ID)
		args = cni.PodArgs{}
	}
	args.LoopbackPlugin = cni.LoopbackInResult(md.CNIResult)
	path := md.NetNSPath
	if closed, cerr := c.o.Deps.Host.LoadNetNS(path).Closed(); cerr == nil && closed {
		// The namespace is gone (e.g. after a reboot); DEL still releases the IP.
		path = ""
	}
	// DEL is retried with fewer capability arguments when a plugin refuses
	// the pod's own (see cni.TeardownPod); when every attempt fails, the
	// sandbox stays NOTREADY with its netns and the next stop tries again.
	start := time.Now()
	err = cni.TeardownPod(ctx, c.o.Deps.Network, md.ID, path, args, NetworkAdded(md))
	c.observeCNI("teardown", start, err)
	if err != nil {
		return fmt.Errorf("tearing down network of sandbox %s (will retry on next stop): %w", md.ID, err)
	}
	if err := c.o.Deps.Host.LoadNetNS(md.NetNSPath).Remove(); err != nil {
		return fmt.Errorf("removing network namespace %s: %w", md.NetNSPath, err)
	}
	netnsDir := PathsFor(c.o.Config.RootDir, c.o.Config.StateDir, md.ID).NetNSDir
	// A user-namespace pod's userns pin outlives its pause task only if the
	// daemon died between making the netns and the pause task.
	if err := c.o.Deps.Host.UnpinUserns(filepath.Join(netnsDir, backend.UsernsPinName)); err != nil {
		klog.ErrorS(err, "Unpinning user namespace", "podSandboxID", md.ID)
	}
	_ = os.RemoveAll(netnsDir)
	md = sb.UpdateMetadata(func(m *Metadata) { m.NetworkTornDown = true })
	if err := backend.SetExtension(ctx, c.o.Deps.Containerd, md.ID, MetadataExtension, &md); err != nil && !errdefs.IsNotFound(err) {
		klog.ErrorS(err, "Persisting network teardown", "podSandboxID", md.ID)
	}
	return nil
}

// NetworkAdded tells whether a CNI ADD of the sandbox is known to have
// succeeded (its result was recorded).
func NetworkAdded(md Metadata) bool {
	return md.IP != "" || len(md.CNIResult) > 0
}
