package server

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/containerexec"
)

// ExecSync runs a command in a running container and returns its output and
// exit code. A non-zero exit code is not an error.
func (s *Service) ExecSync(ctx context.Context, r *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	if len(r.GetCmd()) == 0 {
		return nil, fmt.Errorf("exec command is empty: %w", errdefs.ErrInvalidArgument)
	}
	c, err := s.runningContainer(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	var timeout time.Duration
	if r.GetTimeout() > 0 {
		timeout = time.Duration(r.GetTimeout()) * time.Second
	}
	res, err := s.execDriver().Sync(s.nsCtx(ctx), c.ID, c.Container, r.GetCmd(), timeout)
	if err != nil {
		return nil, err
	}
	if res.Truncated {
		klog.V(2).InfoS("ExecSync output truncated", "containerID", c.ID, "stdoutBytes", len(res.Stdout), "stderrBytes", len(res.Stderr))
	}
	return &runtimeapi.ExecSyncResponse{
		Stdout:   res.Stdout,
		Stderr:   res.Stderr,
		ExitCode: int32(res.ExitCode),
	}, nil
}

// Exec checks that the container runs and returns the streaming URL that
// runs the command (see streamRuntime.Exec).
func (s *Service) Exec(ctx context.Context, r *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if s.stream == nil {
		return nil, fmt.Errorf("streaming server: %w", errdefs.ErrUnavailable)
	}
	c, err := s.runningContainer(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	if len(r.GetCmd()) == 0 {
		return nil, fmt.Errorf("exec command is empty: %w", errdefs.ErrInvalidArgument)
	}
	return s.stream.GetExec(&runtimeapi.ExecRequest{
		ContainerId: c.ID,
		Cmd:         r.GetCmd(),
		Tty:         r.GetTty(),
		Stdin:       r.GetStdin(),
		Stdout:      r.GetStdout(),
		Stderr:      r.GetStderr(),
	})
}

// runningContainer finds a container (NotFound) and checks that it runs
// (FailedPrecondition).
func (s *Service) runningContainer(id string) (*container.Container, error) {
	c, err := s.containers.Get(id)
	if err != nil {
		return nil, err
	}
	if st := c.Status().State(); st != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return nil, fmt.Errorf("container %s is in state %s, not running: %w", c.ID, st, errdefs.ErrFailedPrecondition)
	}
	return c, nil
}

// execDriver runs the exec processes of ExecSync and streaming Exec.
func (s *Service) execDriver() containerexec.Driver {
	return containerexec.Driver{
		StateDir:     s.config.StateDir,
		DrainTimeout: s.config.DrainExecSyncIOTimeout.Duration,
	}
}

// execInContainer runs opts.Cmd in a running container and returns its exit
// code (see containerexec.Driver.Run).
func (s *Service) execInContainer(ctx context.Context, id string, opts containerexec.Options) (uint32, error) {
	c, err := s.runningContainer(id)
	if err != nil {
		return 0, err
	}
	return s.execDriver().Run(ctx, c.ID, c.Container, opts)
}
