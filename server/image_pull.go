package server

import (
	"context"
	"fmt"
	"sort"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/config"
	"github.com/cri-containerd/cri-containerd/image"
)

// PullImage pulls an image with the request's credentials and returns its ID
// (config digest), the same identifier ListImages/ImageStatus report.
func (s *Service) PullImage(ctx context.Context, r *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	ref := r.GetImage().GetImage()
	if ref == "" {
		return nil, fmt.Errorf("image reference must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	var opts []image.PullOpt
	if sn := s.handlerSnapshotter(r.GetImage().GetRuntimeHandler()); sn != "" {
		opts = append(opts, image.WithSnapshotter(sn))
	}
	img, err := s.images.Pull(s.nsCtx(ctx), ref, credentialsFromAuth(r.GetAuth()), opts...)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PullImageResponse{ImageRef: img.ID}, nil
}

// credentialsFromAuth converts a CRI AuthConfig (nil = anonymous).
func credentialsFromAuth(a *runtimeapi.AuthConfig) *image.Credentials {
	if a == nil {
		return nil
	}
	return &image.Credentials{
		Username:      a.GetUsername(),
		Password:      a.GetPassword(),
		Auth:          a.GetAuth(),
		ServerAddress: a.GetServerAddress(),
		IdentityToken: a.GetIdentityToken(),
		RegistryToken: a.GetRegistryToken(),
	}
}

// handlerSnapshotter is the snapshotter configured for a runtime handler
// ("" = the default snapshotter).
func (s *Service) handlerSnapshotter(handler string) string {
	if handler == "" {
		return ""
	}
	if rt, ok := s.config.Runtimes[handler]; ok {
		return rt.Snapshotter
	}
	return ""
}

// runtimeSnapshotters lists the snapshotters runtime handlers override the default with.
func runtimeSnapshotters(cfg config.Config) []string {
	var out []string
	for _, rt := range cfg.Runtimes {
		if rt.Snapshotter != "" && rt.Snapshotter != cfg.Snapshotter {
			out = append(out, rt.Snapshotter)
		}
	}
	sort.Strings(out)
	return out
}

// redactRequest returns req fit for logging: a PullImageRequest's
// credentials are masked (the request logger would print them otherwise).
func redactRequest(req any) any {
	r, ok := req.(*runtimeapi.PullImageRequest)
	if !ok || r.GetAuth() == nil {
		return req
	}
	c := proto.Clone(r).(*runtimeapi.PullImageRequest)
	mask := func(s *string) {
		if *s != "" {
			*s = "<redacted>"
		}
	}
	mask(&c.Auth.Password)
	mask(&c.Auth.Auth)
	mask(&c.Auth.IdentityToken)
	mask(&c.Auth.RegistryToken)
	return c
}
