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
//
// Additions (compatible): Pull and EnsureImage take optional PullOpts
// (WithSnapshotter for a runtime handler's snapshotter); Remove also accepts
// any reference and is idempotent (nil when the image is absent); FsInfo and
// SnapshotUsage report snapshotter filesystem usage (ImageFsInfo, container
// writable layers).
//
// Every ctx handed in must carry the containerd namespace.
//
// Naming in containerd: an image pulled as "repo:tag" gets the records
// "repo:tag", "repo@sha256:<manifest>" and "sha256:<config>" (its ID), all
// pointing at the same target and labelled io.cri-containerd.image=managed,
// the way containerd's own CRI names them.
package image

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"
)

const (
	// ImageLabelKey/Value mark the containerd image records this service manages.
	ImageLabelKey   = "io.cri-containerd.image"
	ImageLabelValue = "managed"
	// PinnedLabelKey/Value mark records of pinned images (never garbage collected by kubelet).
	PinnedLabelKey   = "io.cri-containerd.pinned"
	PinnedLabelValue = "pinned"
)

// Options configures the image service.
type Options struct {
	Namespace           string
	Snapshotter         string
	RegistryConfigPath  string
	PullProgressTimeout time.Duration
	// MaxConcurrentDownloads limits concurrent layer downloads, per pull and
	// across all pulls of the daemon (default 3).
	MaxConcurrentDownloads int
	// PinnedImages are references whose images report pinned=true (the sandbox image).
	PinnedImages []string
	// StatsCollectPeriod is how long snapshot usage (FsInfo) is cached (default 10s).
	StatsCollectPeriod time.Duration
	// ExtraSnapshotters are further snapshotters (of runtime handlers) that
	// FsInfo reports after the default one.
	ExtraSnapshotters []string

	// progressCheckInterval overrides the watchdog tick (tests).
	progressCheckInterval time.Duration
}

// Credentials are per-request registry credentials (from CRI AuthConfig).
type Credentials struct {
	Username, Password, Auth, ServerAddress, IdentityToken, RegistryToken string
}

// Image is one image in the cache, keyed by its config digest.
type Image struct {
	// ID is the image config digest ("sha256:...").
	ID string
	// RepoTags and RepoDigests are the names containerd knows the image by
	// (sorted).
	RepoTags    []string
	RepoDigests []string
	// References are all containerd record names of the image (tags,
	// digests and the ID record), sorted.
	References []string
	// ChainID of the rootfs (for snapshot lookups).
	ChainID string
	// Size is the compressed size of the image's content.
	Size int64
	// Config is the OCI image config.
	Config ocispec.Image
	Pinned bool
}

func (i Image) clone() Image {
	i.RepoTags = append([]string(nil), i.RepoTags...)
	i.RepoDigests = append([]string(nil), i.RepoDigests...)
	i.References = append([]string(nil), i.References...)
	return i
}

// User returns the uid (numeric image user) or user name of the image's
// configured user, as CRI Image.Uid / Image.Username report it.
func (i Image) User() (*int64, string) { return UserFromConfig(i.Config.Config.User) }

// Service is the image cache and operations.
type Service struct {
	client *containerd.Client
	// images and content are the client's image and content stores; the
	// record bookkeeping (pull naming, refresh, removal) uses only these.
	images  images.Store
	content content.InfoReaderProvider
	// readBlob reads a whole blob (manifest, index, config) from content.
	readBlob func(context.Context, ocispec.Descriptor) ([]byte, error)
	opts     Options
	store    *store
	metrics  *metrics
	flight   flightGroup
	// infos caches the ID-level facts of image targets (manifest or index
	// digests): content-addressed, so they never change.
	infos *infoCache
	// viaTransfer and viaClient pull through containerd's Transfer
	// service and client-side (see fetch); noTransfer is set once
	// containerd turned out to have no Transfer service.
	viaTransfer, viaClient fetchFunc
	noTransfer             atomic.Bool
	// lease runs an operation under a temporary lease
	// (withTemporaryLease; tests replace it).
	lease func(ctx context.Context, op, ref string, fn func(context.Context) error) error
	// downloads limits concurrent layer downloads across all pulls
	// (MaxConcurrentDownloads), as containerd's CRI does.
	downloads *semaphore.Weighted

	fsMu sync.Mutex
	fs   map[string]*fsCache
}

// NewService builds the service; call Recover before use.
func NewService(cli *containerd.Client, opts Options, reg prometheus.Registerer) *Service {
	if opts.Snapshotter == "" {
		opts.Snapshotter = "overlayfs"
	}
	if opts.MaxConcurrentDownloads < 1 {
		opts.MaxConcurrentDownloads = 3
	}
	s := &Service{
		client:  cli,
		opts:    opts,
		store:   newStore(opts.PinnedImages),
		metrics: newMetrics(reg),
		infos:   newInfoCache(infoCacheSize),
		fs:      map[string]*fsCache{},

		downloads: semaphore.NewWeighted(int64(opts.MaxConcurrentDownloads)),
	}
	if cli != nil {
		s.images = cli.ImageService()
		s.content = cli.ContentStore()
		s.readBlob = blobReader(cli.Conn(), s.content)
		s.viaClient = s.pullViaClient
		s.lease = s.withTemporaryLease
		if _, ok := cli.Conn().(*grpc.ClientConn); ok {
			s.viaTransfer = s.transfer
		}
	}
	return s
}

// Get finds an image by ID ("sha256:<hex>"), unique ID prefix (at least 12
// hex digits, or any length after "sha256:"), tag or digest reference
// (normalized: "busybox" is "docker.io/library/busybox:latest"). It wraps
// errdefs.ErrNotFound when absent and errdefs.ErrInvalidArgument for an
// empty or malformed reference.
func (s *Service) Get(ref string) (Image, error) {
	return s.store.resolve(ref)
}

// List returns every cached image, sorted by first repo tag / repo digest / ID.
func (s *Service) List() []Image { return s.store.list() }

// EnsureImage returns the cached image for ref, pulling it when absent. With
// WithSnapshotter naming another snapshotter than the default, a cached image
// is unpacked there when it is not yet.
func (s *Service) EnsureImage(ctx context.Context, ref string, creds *Credentials, opts ...PullOpt) (Image, error) {
	img, err := s.Get(ref)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return s.Pull(ctx, ref, creds, opts...)
		}
		return Image{}, err
	}
	o := s.pullOptions(opts)
	if o.snapshotter != s.opts.Snapshotter {
		if err := s.ensureUnpacked(ctx, img, o.snapshotter); err != nil {
			return Image{}, err
		}
	}
	return img, nil
}

// ensureUnpacked unpacks img into snapshotter unless it is there already.
func (s *Service) ensureUnpacked(ctx context.Context, img Image, snapshotter string) error {
	for _, name := range img.References {
		rec, err := s.images.Get(ctx, name)
		if err != nil {
			continue
		}
		ci := containerd.NewImage(s.client, rec)
		ok, err := ci.IsUnpacked(ctx, snapshotter)
		if err == nil && ok {
			return nil
		}
		klog.InfoS("Unpacking image into snapshotter", "image", name, "id", img.ID, "snapshotter", snapshotter)
		if err := ci.Unpack(ctx, snapshotter); err != nil {
			return fmt.Errorf("unpacking image %s into snapshotter %q: %w", img.ID, snapshotter, err)
		}
		s.invalidateFsInfo()
		return nil
	}
	return fmt.Errorf("image %s has no record in containerd: %w", img.ID, errdefs.ErrNotFound)
}
