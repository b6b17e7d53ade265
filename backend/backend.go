// Package backend names the external dependencies of the pod and container
// lifecycles: containerd, the pod network (CNI), the image store, the host
// (network namespaces and shm mounts) and the clock. The lifecycle
// controllers, recovery, the event monitor and the CRI handlers reach them
// only through these interfaces, one per dependency, so that every caller
// can be driven with fakes in unit tests. Deps bundles one of each.
package backend

import (
	"context"
	ctrdsandbox "github.com/containerd/containerd/v2/core/sandbox"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	gocni "github.com/containerd/go-cni"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cri-containerd/cri-containerd/cni"
	"github.com/cri-containerd/cri-containerd/image"
)

// Containerd is the containerd daemon: containers, images, snapshots and
// leases of our namespace, the task event stream and the task service.
// Containers and tasks it hands out are containerd's own interfaces.
type Containerd interface {
	NewContainer(ctx context.Context, id string, opts ...containerd.NewContainerOpts) (containerd.Container, error)
	// Containers lists the containers of the namespace in ctx that match
	// the filters (records with labels, extensions and spec).
	Containers(ctx context.Context, filters ...string) ([]containerd.Container, error)
	GetImage(ctx context.Context, ref string) (containerd.Image, error)
	SnapshotService(snapshotterName string) snapshots.Snapshotter
	LeasesService() leases.Manager
	// Subscribe streams containerd's events matching the filters.
	Subscribe(ctx context.Context, filters ...string) (ch <-chan *events.Envelope, errs <-chan error)
	// ContainerService is the raw container record store (DeleteContainer).
	ContainerService() containers.Store
	// TaskService is the raw task API (metrics, pids).
	TaskService() tasks.TasksClient
	// SandboxStore is containerd's sandbox records (containerd 1.7+).
	SandboxStore() ctrdsandbox.Store
	// IsServing reports whether containerd answers.
	IsServing(ctx context.Context) (bool, error)
}

// Images is the image store: images known to the daemon by reference, and
// pulls of the images the lifecycles need (the sandbox image).
type Images interface {
	Get(ref string) (image.Image, error)
	EnsureImage(ctx context.Context, ref string, creds *image.Credentials, opts ...image.PullOpt) (image.Image, error)
}

// Network attaches and detaches pod network namespaces (CNI), with the
// pod's CNI arguments.
type Network interface {
	Setup(ctx context.Context, id, path string, args cni.PodArgs) (*gocni.Result, error)
	Remove(ctx context.Context, id, path string, args cni.PodArgs) error
	// Status is nil when the network is ready for pods.
	Status() error
	// Config is the loaded CNI configuration (nil when none).
	Config() *gocni.ConfigResult
}

// NetNS is a pod's network namespace mount.
type NetNS interface {
	GetPath() string
	Closed() (bool, error)
	Remove() error
}

// Host is what the lifecycles do to the host itself: network namespace
// mounts and the pods' /dev/shm tmpfs mounts.
type Host interface {
	// NewNetNS creates a network namespace mounted in dir.
	NewNetNS(dir string) (NetNS, error)
	// LoadNetNS refers to the network namespace mounted at path.
	LoadNetNS(path string) NetNS
	// NewNetNSInUserns creates a network namespace owned by a new user
	// namespace with the (single-line) mappings, mounted in dir, and pins
	// that user namespace at the returned path until UnpinUserns.
	NewNetNSInUserns(dir string, uid, gid runtimespec.LinuxIDMapping) (NetNS, string, error)
	// UnpinUserns unmounts and removes a pinned user namespace (idempotent).
	UnpinUserns(path string) error
	// MountShm mounts a private tmpfs of size bytes at path.
	MountShm(path string, size int64) error
	// UnmountShm unmounts path if mounted (idempotent) and removes it.
	UnmountShm(path string) error
}

// Clock tells the time; fakes make timestamps deterministic.
type Clock interface {
	Now() time.Time
}

// Deps is one of each dependency.
type Deps struct {
	Containerd Containerd
	Images     Images
	Network    Network
	Host       Host
	Clock      Clock
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now is time.Now.
func (SystemClock) Now() time.Time { return time.Now() }

var (
	_ Containerd = (*containerd.Client)(nil)
	_ Images     = (*image.Service)(nil)
	_ Clock      = SystemClock{}
	_ Host       = OS{}
)
