// Package container owns workload containers: the metadata persisted in
// containerd (a container extension), the status the daemon checkpoints to
// disk (so exit codes survive the daemon and the task), and the in-memory store.
package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/typeurl/v2"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/atomicfile"
	"github.com/cri-containerd/cri-containerd/containerio"
	"github.com/cri-containerd/cri-containerd/listwire"
	"github.com/cri-containerd/cri-containerd/pidfd"
	"github.com/cri-containerd/cri-containerd/store"
)

// MetadataExtension is the containerd container extension holding Metadata.
const MetadataExtension = "io.cri-containerd.container.metadata"

func init() {
	typeurl.Register(&Metadata{}, "github.com/cri-containerd/cri-containerd/container", "Metadata")
}

// Metadata is what the daemon persists about a container in containerd.
type Metadata struct {
	Version   int                         `json:"version"`
	ID        string                      `json:"id"`
	Name      string                      `json:"name"`
	SandboxID string                      `json:"sandboxID"`
	Config    *runtimeapi.ContainerConfig `json:"config"`
	// ImageRef is the image ID (config digest); ImageName the reference the user gave.
	ImageRef  string `json:"imageRef"`
	ImageName string `json:"imageName"`
	LogPath   string `json:"logPath,omitempty"`
	// StopSignal comes from the image config.
	StopSignal string `json:"stopSignal,omitempty"`
	// User is the resolved uid/gid/groups (ContainerStatus.User).
	UID                int64   `json:"uid"`
	GID                int64   `json:"gid"`
	SupplementalGroups []int64 `json:"supplementalGroups,omitempty"`
	CreatedAt          int64   `json:"createdAt"`
}

// Status is the lifecycle status of a container, checkpointed to disk.
type Status struct {
	Pid        uint32 `json:"pid"`
	CreatedAt  int64  `json:"createdAt"`
	StartedAt  int64  `json:"startedAt"`
	FinishedAt int64  `json:"finishedAt"`
	ExitCode   int32  `json:"exitCode"`
	Reason     string `json:"reason,omitempty"`
	Message    string `json:"message,omitempty"`
	// Starting is set while StartContainer runs; Removing while
	// RemoveContainer runs. They describe this process's RPCs in flight, so
	// they are never checkpointed: a daemon killed during a start must not
	// come back with a container that is "starting" forever.
	Starting bool `json:"-"`
	Removing bool `json:"-"`
	// SpecUpdated is set once this process changed the containerd record's
	// spec (UpdateContainerResources): the record held by Container, read
	// when it was made or listed, is then stale.
	SpecUpdated bool `json:"-"`
	// Unknown is set when the state cannot be determined (e.g. task lost).
	Unknown bool `json:"unknown,omitempty"`
	// OOMKilled is set when an OOM event was seen for the container.
	OOMKilled bool `json:"oomKilled,omitempty"`
	// PendingExitAt/PendingExitCode checkpoint an exit seen but not yet
	// recorded: the exit handler writes them before it deletes the task and
	// drains the output, so a daemon killed in between still knows the real
	// exit code when the task is gone at the next start.
	PendingExitAt   int64 `json:"pendingExitAt,omitempty"`
	PendingExitCode int32 `json:"pendingExitCode,omitempty"`
	// Resources are the current resources (after UpdateContainerResources).
	Resources *runtimeapi.ContainerResources `json:"resources,omitempty"`
	// CgroupDir is the container's cgroup in the host's cgroup tree, found
	// at start for a container that shares a PID namespace (its exit
	// handler looks there for processes its init left behind).
	CgroupDir string `json:"cgroupDir,omitempty"`
}

// State derives the CRI state from the status.
func (s Status) State() runtimeapi.ContainerState {
	switch {
	case s.Unknown:
		return runtimeapi.ContainerState_CONTAINER_UNKNOWN
	case s.FinishedAt != 0:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	case s.StartedAt != 0:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case s.CreatedAt != 0:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	}
	return runtimeapi.ContainerState_CONTAINER_UNKNOWN
}

// ListKey is what can change in a container's list entry: its state and
// the names its image is reported by (the image store's tags and digests).
type ListKey struct {
	State           runtimeapi.ContainerState
	Image, ImageRef string
}

// Container is one container in the store.
type Container struct {
	Metadata
	Container containerd.Container

	// rootfs are the mounts of the rootfs snapshot as the create prepared
	// it; StartContainer passes them to containerd (nil after a restart:
	// containerd's client then reads them). Set before publication.
	rootfs []mount.Mount

	// io is the container's stdio plumbing (log file, attach fan-out). It is
	// set by StartContainer (or recovery) while other RPCs and the exit
	// handler may read it: use IO and SetIO.
	io atomic.Pointer[containerio.ContainerIO]

	// noTask is true while containerd is known to hold no task of the
	// container: from its create until its start, and once the exit
	// handler deleted the task. Remove then deletes the record and the
	// snapshot without asking (backend.DeleteContainer). False when not
	// known (a container recovery loaded).
	noTask atomic.Bool
	// init is a pidfd of the task's init process while it runs, when this
	// daemon started it and Options.SignalDirect is set (package pidfd).
	init pidfd.Init
	// finishing is set by the first exit handler (Controller.Finish) of
	// the container's task: the stop that saw the exit and the event
	// monitor both call it, and only one deletes the task.
	finishing atomic.Bool

	// ListWire is the container's encoded ListContainers entry (the server
	// makes and reads it).
	ListWire listwire.Memo[ListKey]

	statusPath string
	mu         sync.RWMutex
	status     Status
	stopped    chan struct{}
	// removeLock serialises removals (stops are not serialised: see
	// Controller.Stop): a channel, not a mutex, so that a removal waiting
	// behind one stuck in containerd ends with its request (LockRemove).
	removeLock chan struct{}
	// ResourcesMu serialises changes of the container's resources
	// (UpdateContainerResources) with each other and with the creation and
	// start of its task (StartContainer), so that the stored spec, the
	// task's cgroup and the checkpointed resources agree.
	ResourcesMu sync.Mutex
}

// LockRemove takes the container's removal lock, or returns ctx's error
// when the request ends first.
func (c *Container) LockRemove(ctx context.Context) error {
	select {
	case c.removeLock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for another removal of container %s: %w", c.ID, ctx.Err())
	}
}

// UnlockRemove releases the lock LockRemove took.
func (c *Container) UnlockRemove() { <-c.removeLock }

// NoTask reports whether containerd is known to hold no task of the
// container.
func (c *Container) NoTask() bool { return c.noTask.Load() }

// IO returns the container's IO, or nil when it has none (never started, a
// start that failed, or a task not found again after a restart). Safe for
// concurrent use; read it once into a local variable.
func (c *Container) IO() *containerio.ContainerIO { return c.io.Load() }

// SetIO sets (or, with nil, clears) the container's IO. Safe for
// concurrent use with IO.
func (c *Container) SetIO(io *containerio.ContainerIO) { c.io.Store(io) }

// New returns a container whose status is checkpointed under dir.
func New(md Metadata, dir string, st Status) *Container {
	c := &Container{Metadata: md, statusPath: filepath.Join(dir, statusFile), status: st, stopped: make(chan struct{}), removeLock: make(chan struct{}, 1)}
	if st.FinishedAt != 0 {
		close(c.stopped)
	}
	return c
}

// Status returns a copy of the status.
func (c *Container) Status() Status {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.status
}

// Stopped is closed once the container has exited.
func (c *Container) Stopped() <-chan struct{} {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.stopped
}

// Update changes the status under the lock and checkpoints it. If the
// checkpoint fails the in-memory status is left unchanged.
func (c *Container) Update(f func(*Status) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.status
	if err := f(&st); err != nil {
		return err
	}
	if err := writeStatus(c.statusPath, st); err != nil {
		return err
	}
	c.status = st
	if st.FinishedAt != 0 {
		select {
		case <-c.stopped:
		default:
			close(c.stopped)
		}
	}
	return nil
}

// UpdateMemory changes the status without checkpointing (transient flags).
func (c *Container) UpdateMemory(f func(*Status)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.status)
}

// writeStatus checkpoints st at path atomically and durably: a crash at any
// moment leaves the previous checkpoint or this one, never a torn file.
func writeStatus(path string, st Status) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("marshalling container status: %w", err)
	}
	if err := atomicfile.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating container dir: %w", err)
	}
	if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("writing container status: %w", err)
	}
	return nil
}

// statusFile is the name of the checkpoint in a container's directory.
const statusFile = "status"

// LoadStatus reads a checkpointed status; a missing file gives ok=false.
// Temporary files a crash left behind while checkpointing are removed.
func LoadStatus(dir string) (Status, bool, error) {
	if err := atomicfile.RemoveTemps(dir, statusFile); err != nil {
		klog.ErrorS(err, "Removing leftover temporary status files", "dir", dir)
	}
	b, err := os.ReadFile(filepath.Join(dir, statusFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Status{}, false, nil
		}
		return Status{}, false, err
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return Status{}, false, fmt.Errorf("decoding container status: %w", err)
	}
	return st, true, nil
}

// Store is the in-memory cache of containers, keyed by ID. It resolves
// unique ID prefixes (see store.Store).
type Store struct {
	*store.Store[*Container]
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{Store: store.New("container",
		func(c *Container) string { return c.ID },
		func(c *Container) int64 { return c.CreatedAt })}
}

// ListBySandbox returns the containers of one sandbox.
func (s *Store) ListBySandbox(sandboxID string) []*Container {
	var out []*Container
	for _, c := range s.List() {
		if c.SandboxID == sandboxID {
			out = append(out, c)
		}
	}
	return out
}
