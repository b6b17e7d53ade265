package server

import (
	"context"
	"encoding/json"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/image"
)

// ImageStatus returns the image's status; Image is nil (and no error) when
// the image is absent.
func (s *Service) ImageStatus(ctx context.Context, r *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	img, err := s.images.Get(r.GetImage().GetImage())
	if err != nil {
		if errdefs.IsNotFound(err) {
			return &runtimeapi.ImageStatusResponse{}, nil
		}
		return nil, err
	}
	resp := &runtimeapi.ImageStatusResponse{Image: toCRIImage(img)}
	if r.GetVerbose() {
		resp.Info = imageVerboseInfo(img)
	}
	return resp, nil
}

// toCRIImage converts a cached image to its CRI form.
func toCRIImage(img image.Image) *runtimeapi.Image {
	out := &runtimeapi.Image{
		Id:          img.ID,
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        uint64(img.Size),
		Pinned:      img.Pinned,
	}
	uid, username := img.User()
	if uid != nil {
		out.Uid = &runtimeapi.Int64Value{Value: *uid}
	}
	out.Username = username
	return out
}

// verboseImageInfo is the "info" JSON of a verbose ImageStatus, with the
// same keys containerd's CRI uses (crictl inspecti reads them).
type verboseImageInfo struct {
	ChainID   string        `json:"chainID"`
	ImageSpec ocispec.Image `json:"imageSpec"`
}

func imageVerboseInfo(img image.Image) map[string]string {
	b, err := json.Marshal(verboseImageInfo{ChainID: img.ChainID, ImageSpec: img.Config})
	if err != nil {
		klog.ErrorS(err, "Failed to marshal verbose image info", "id", img.ID)
		return map[string]string{"info": err.Error()}
	}
	return map[string]string{"info": string(b)}
}
