package server

import (
	"context"
	"errors"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// toGRPC is the one place where internal errors become gRPC status errors.
// Domain code wraps errdefs sentinels (errdefs.ErrNotFound, ...) with %w;
// anything already carrying a gRPC status is passed through.
func toGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errdefs.IsNotFound(err), errdefs.IsInvalidArgument(err), errdefs.IsAlreadyExists(err),
		errdefs.IsFailedPrecondition(err), errdefs.IsUnavailable(err), errdefs.IsNotImplemented(err),
		errdefs.IsUnauthorized(err), errdefs.IsPermissionDenied(err), errdefs.IsResourceExhausted(err),
		errdefs.IsDeadlineExceeded(err), errdefs.IsAborted(err), errdefs.IsOutOfRange(err),
		errdefs.IsCanceled(err), errdefs.IsConflict(err):
		return errgrpc.ToGRPC(err)
	}
	return status.Error(codes.Unknown, err.Error())
}
