package backend

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
