package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestToGRPC(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want codes.Code
	}{
		{"not found", fmt.Errorf("image %q: %w", "x", errdefs.ErrNotFound), codes.NotFound},
		{"invalid", fmt.Errorf("bad ref: %w", errdefs.ErrInvalidArgument), codes.InvalidArgument},
		{"exists", fmt.Errorf("name reserved: %w", errdefs.ErrAlreadyExists), codes.AlreadyExists},
		{"precondition", fmt.Errorf("running: %w", errdefs.ErrFailedPrecondition), codes.FailedPrecondition},
		{"unauthenticated", fmt.Errorf("pull: %w", errdefs.ErrUnauthenticated), codes.Unauthenticated},
		{"denied", fmt.Errorf("pull: %w", errdefs.ErrPermissionDenied), codes.PermissionDenied},
		{"unavailable", fmt.Errorf("containerd: %w", errdefs.ErrUnavailable), codes.Unavailable},
		{"deadline", fmt.Errorf("exec: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"status passthrough", status.Error(codes.OutOfRange, "x"), codes.OutOfRange},
		{"plain", errors.New("boom"), codes.Unknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := status.Code(toGRPC(tc.err))
			if got != tc.want {
				t.Fatalf("toGRPC(%v) code = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
	if toGRPC(nil) != nil {
		t.Fatal("toGRPC(nil) != nil")
	}
}

func TestMajorVersion(t *testing.T) {
	for v, want := range map[string]int{"v2.4.2": 2, "2.4.2+unknown": 2, "1.7.27-1": 1, "v1.6.38": 1, "": 0, "devel": 0, "10.0": 10} {
		if got := majorVersion(v); got != want {
			t.Errorf("majorVersion(%q) = %d, want %d", v, got, want)
		}
	}
}
