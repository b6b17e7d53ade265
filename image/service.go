// Package image owns cri-containerd's image cache and every image operation
// against containerd: pull (with per-request credentials and hosts.toml
// registry configuration), lookup by ID / tag / digest, removal and
// filesystem usage. The cache is rebuilt from containerd on start.
//
// CONTRACT (used by server/ and sandbox code; keep these signatures):
//
//	NewService(cli, Options, prometheus.Registerer) *Service
//	(*Service).Recover(ctx) error
//	(*Service).Get(ref string) (Image, error)            // ID, short ID, tag, digest ref; errdefs.ErrNotFound
//	(*Service).Pull(ctx, ref string, creds *Credentials) (Image, error)
//	(*Service).EnsureImage(ctx, ref string, creds *Credentials) (Image, error) // Get, else Pull
//	(*Service).List() []Image
//	(*Service).Remove(ctx, id string) error
package image

import (
	"context"
	"fmt"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configures the image service.
type Options struct {
	Namespace              string
	Snapshotter            string
	RegistryConfigPath     string
	PullProgressTimeout    time.Duration
	MaxConcurrentDownloads int
	// PinnedImages are references whose images report pinned=true (the sandbox image).
	PinnedImages []string
}

// Credentials are per-request registry credentials (from CRI AuthConfig).
type Credentials struct {
	Username, Password, Auth, ServerAddress, IdentityToken, RegistryToken string
}

// Image is one image in the cache, keyed by its config digest.
type Image struct {
	// ID is the image config digest ("sha256:...").
	ID string
	// RepoTags and RepoDigests are the names containerd knows the image by.
	RepoTags    []string
	RepoDigests []string
	// ChainID of the rootfs (for snapshot lookups).
	ChainID string
	// Size is the compressed size of the image's content.
	Size int64
	// Config is the OCI image config.
	Config ocispec.Image
	Pinned bool
}

// Service is the image cache and operations.
type Service struct {
	client *containerd.Client
	opts   Options
}

// NewService builds the service; call Recover before use.
func NewService(cli *containerd.Client, opts Options, reg prometheus.Registerer) *Service {
	return &Service{client: cli, opts: opts}
}

// Recover rebuilds the cache from containerd.
func (s *Service) Recover(ctx context.Context) error { return nil }

// Get finds an image by ID, unique ID prefix, tag or digest reference.
func (s *Service) Get(ref string) (Image, error) {
	return Image{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}

// Pull pulls ref and unpacks it into the snapshotter.
func (s *Service) Pull(ctx context.Context, ref string, creds *Credentials) (Image, error) {
	return Image{}, fmt.Errorf("pull: %w", errdefs.ErrNotImplemented)
}

// EnsureImage returns the cached image for ref, pulling it when absent.
func (s *Service) EnsureImage(ctx context.Context, ref string, creds *Credentials) (Image, error) {
	if img, err := s.Get(ref); err == nil {
		return img, nil
	}
	return s.Pull(ctx, ref, creds)
}

// List returns every cached image.
func (s *Service) List() []Image { return nil }

// Remove removes the image with the given ID and every name it has.
func (s *Service) Remove(ctx context.Context, id string) error { return nil }
