package backend

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// TestRegressionRollbackLeakedByContainerdKill: a rollback step that finds
// containerd unreachable (killed during a RunPodSandbox: the short chaos
// campaign of 2026-12-06 15:53 left the pod's containerd container, sandbox
// record, snapshot and shim) is retried until containerd answers; any other
// answer ends it at once.
func TestRegressionRollbackLeakedByContainerdKill(t *testing.T) {
	refused := status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial unix containerd.sock: connect: connection refused"`)
	for _, tc := range []struct {
		name      string
		errs      []error // the answers, in order; nil after them
		timeout   time.Duration
		wantCalls int
		wantErr   error
	}{
		{name: "done at once", wantCalls: 1},
		{name: "gone", errs: []error{errdefs.ErrNotFound}, wantCalls: 1, wantErr: errdefs.ErrNotFound},
		{name: "containerd back after two refusals", errs: []error{refused, fmt.Errorf("wrapped: %w", errdefs.ErrUnavailable)}, wantCalls: 3},
		{name: "refused, then gone", errs: []error{refused, errdefs.ErrNotFound}, wantCalls: 2, wantErr: errdefs.ErrNotFound},
		{name: "containerd never back", errs: []error{refused, refused, refused, refused, refused, refused}, timeout: 1200 * time.Millisecond, wantErr: refused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.timeout == 0 {
				tc.timeout = 10 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			calls := 0
			err := RetryWhileUnavailable(ctx, func(context.Context) error {
				calls++
				if calls <= len(tc.errs) {
					return tc.errs[calls-1]
				}
				return nil
			})
			if !errors.Is(err, tc.wantErr) && err != tc.wantErr {
				t.Errorf("err %v, want %v", err, tc.wantErr)
			}
			if tc.wantCalls != 0 && calls != tc.wantCalls {
				t.Errorf("%d calls, want %d", calls, tc.wantCalls)
			}
		})
	}
}

// refusingContainer is a containerd container whose Delete is refused
// while containerd is down (the first refusals calls), then works.
type refusingContainer struct {
	containerd.Container
	refusals int
	deletes  int
}

func (c *refusingContainer) ID() string { return "c1" }

func (c *refusingContainer) Delete(context.Context, ...containerd.DeleteOpts) error {
	c.deletes++
	if c.deletes <= c.refusals {
		return status.Error(codes.Unavailable, "connection refused")
	}
	return nil
}

// TestRollbackContainerDeletesOnceContainerdIsBack: the rollback of a
// create cut by a containerd kill deletes the container (and its snapshot)
// once containerd answers again; a single attempt left them behind.
func TestRollbackContainerDeletesOnceContainerdIsBack(t *testing.T) {
	ctr := &refusingContainer{refusals: 2}
	RollbackContainer(context.Background(), ctr, klog.Background(), nil)
	if ctr.deletes != 3 {
		t.Errorf("%d deletes, want 3 (two refused, then done)", ctr.deletes)
	}
}
