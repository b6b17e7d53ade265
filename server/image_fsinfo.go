package server

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/image"
)

// ImageFsInfo reports the usage of the snapshotter filesystem(s). Container
// writable layers live in the same snapshotter, so ContainerFilesystems
// reports the same filesystem (kubelet then treats it as one, not split).
func (s *Service) ImageFsInfo(ctx context.Context, r *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	usages, err := s.images.FsInfo(s.nsCtx(ctx))
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ImageFsInfoResponse{}
	for i, u := range usages {
		resp.ImageFilesystems = append(resp.ImageFilesystems, toFilesystemUsage(u))
		if i == 0 {
			resp.ContainerFilesystems = append(resp.ContainerFilesystems, toFilesystemUsage(u))
		}
	}
	return resp, nil
}

func toFilesystemUsage(u image.FsUsage) *runtimeapi.FilesystemUsage {
	return &runtimeapi.FilesystemUsage{
		Timestamp:  u.Timestamp,
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: u.Mountpoint},
		UsedBytes:  &runtimeapi.UInt64Value{Value: u.UsedBytes},
		InodesUsed: &runtimeapi.UInt64Value{Value: u.InodesUsed},
	}
}
