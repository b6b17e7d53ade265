package server

import (
	"context"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/netns"
	gocni "github.com/containerd/go-cni"

	"github.com/cri-containerd/cri-containerd/cni"
	"github.com/cri-containerd/cri-containerd/image"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// The narrow dependencies of the sandbox and container lifecycle RPCs
// (RunPodSandbox, StopPodSandbox, RemovePodSandbox, CreateContainer,
// StartContainer), so that unit tests can drive them with fakes. New wires
// them to the real implementations; see the seam fields of Service.

// containerClient is the part of the containerd client the lifecycle RPCs use.
// Containers and tasks it hands out are containerd's own interfaces.
type containerClient interface {
	NewContainer(ctx context.Context, id string, opts ...containerd.NewContainerOpts) (containerd.Container, error)
	GetImage(ctx context.Context, ref string) (containerd.Image, error)
	SnapshotService(snapshotterName string) snapshots.Snapshotter
	LeasesService() leases.Manager
}

// imageStore is the part of the image service the lifecycle RPCs use.
type imageStore interface {
	Get(ref string) (image.Image, error)
	EnsureImage(ctx context.Context, ref string, creds *image.Credentials, opts ...image.PullOpt) (image.Image, error)
}

// networkPlugin attaches and detaches pod network namespaces.
type networkPlugin interface {
	Setup(ctx context.Context, id, path string, opts ...gocni.NamespaceOpts) (*gocni.Result, error)
	Remove(ctx context.Context, id, path string, opts ...gocni.NamespaceOpts) error
	Status() error
	Config() *gocni.ConfigResult
}

// podNetNS is a pod's network namespace mount.
type podNetNS interface {
	GetPath() string
	Closed() (bool, error)
	Remove() error
}

var (
	_ containerClient = (*containerd.Client)(nil)
	_ imageStore      = (*image.Service)(nil)
	_ networkPlugin   = (*cni.Manager)(nil)
	_ podNetNS        = (*netns.NetNS)(nil)
)

// newHostNetNS creates a network namespace mounted in dir.
func newHostNetNS(dir string) (podNetNS, error) {
	ns, err := netns.NewNetNS(dir)
	if err != nil {
		return nil, err
	}
	return ns, nil
}

// loadHostNetNS refers to the network namespace mounted at path.
func loadHostNetNS(path string) podNetNS { return netns.LoadNetNS(path) }

// setHostSeams points the seams at the real containerd client, image
// service, CNI manager, network namespaces and shm mounts.
func (s *Service) setHostSeams() {
	s.ctrdClient = s.client
	s.imgStore = s.images
	s.netPlugin = s.cni
	s.newNetNS = newHostNetNS
	s.loadNetNS = loadHostNetNS
	s.mountShm = sandbox.MountShm
	s.unmountShm = sandbox.UnmountShm
}
