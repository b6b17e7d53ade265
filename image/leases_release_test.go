package image

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// TestRegressionPullLeaseLeakedByContainerdKill: a temporary lease whose
// release fails because containerd is down (killed during the pull) is
// released once containerd is back, not left for its 24 h expiry.
func TestRegressionPullLeaseLeakedByContainerdKill(t *testing.T) {
	unavailable := errors.New("rpc error: code = Unavailable desc = connection refused")
	for _, tc := range []struct {
		name      string
		failures  int   // attempts that fail before the release works
		final     error // what the first attempt after the failures returns
		timeout   time.Duration
		wantCalls int
		wantErr   bool
	}{
		{name: "released at once", wantCalls: 1},
		{name: "containerd back after three attempts", failures: 3, wantCalls: 4, timeout: 10 * time.Second},
		{name: "lease already gone", final: errdefs.ErrNotFound, wantCalls: 1},
		{name: "containerd never back", failures: 1 << 30, timeout: 1200 * time.Millisecond, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			release := func(context.Context) error {
				calls++
				if calls <= tc.failures {
					return unavailable
				}
				return tc.final
			}
			if tc.timeout == 0 {
				tc.timeout = time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			err := retryRelease(ctx, release)
			if (err != nil) != tc.wantErr {
				t.Fatalf("retryRelease: %v, want error %v", err, tc.wantErr)
			}
			if tc.wantCalls != 0 && calls != tc.wantCalls {
				t.Errorf("release called %d times, want %d", calls, tc.wantCalls)
			}
			if tc.wantErr && calls < 2 {
				t.Errorf("release called %d times before giving up, want retries", calls)
			}
		})
	}
}
