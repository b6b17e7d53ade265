package server

import (
	"context"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/image"
)

// streamImagesChunk is how many images one StreamImages message carries.
const streamImagesChunk = 100

// ListImages lists the images, optionally filtered by ImageFilter.Image.
func (s *Service) ListImages(ctx context.Context, r *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	imgs, err := s.filteredImages(r.GetFilter())
	if err != nil {
		return nil, err
	}
	out := make([]*runtimeapi.Image, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, toCRIImage(img))
	}
	return &runtimeapi.ListImagesResponse{Images: out}, nil
}

// StreamImages is ListImages in chunks.
func (s *Service) StreamImages(r *runtimeapi.StreamImagesRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamImagesResponse]) error {
	imgs, err := s.filteredImages(r.GetFilter())
	if err != nil {
		return err
	}
	for start := 0; start < len(imgs) || start == 0; start += streamImagesChunk {
		end := min(start+streamImagesChunk, len(imgs))
		chunk := make([]*runtimeapi.Image, 0, end-start)
		for _, img := range imgs[start:end] {
			chunk = append(chunk, toCRIImage(img))
		}
		if err := stream.Send(&runtimeapi.StreamImagesResponse{Images: chunk}); err != nil {
			return err
		}
		if end >= len(imgs) {
			break
		}
	}
	return nil
}

// filteredImages applies the CRI image filter (see image.ListFiltered).
func (s *Service) filteredImages(f *runtimeapi.ImageFilter) ([]image.Image, error) {
	return s.images.ListFiltered(f.GetImage().GetImage())
}
