// Package sandbox owns pod sandboxes: their persisted metadata (kept in
// containerd as a container extension, so a crashed daemon can find what it
// made), the in-memory store, their state machine, and the per-pod files
// (hostname, hosts, resolv.conf, /dev/shm) and network namespace paths.
package sandbox

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/typeurl/v2"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/listwire"
	"github.com/cri-containerd/cri-containerd/pidfd"
)

const (
	// LabelKind marks every containerd container we create; value KindSandbox or KindContainer.
	LabelKind = "io.cri-containerd.kind"
	// KindSandbox is the LabelKind value of pause containers.
	KindSandbox = "sandbox"
	// KindContainer is the LabelKind value of workload containers.
	KindContainer = "container"
	// LabelSandboxID names the sandbox a workload container belongs to.
	LabelSandboxID = "io.cri-containerd.sandbox-id"
	// MetadataExtension is the containerd container extension that holds Metadata.
	MetadataExtension = "io.cri-containerd.sandbox.metadata"
)

func init() {
	typeurl.Register(&Metadata{}, "github.com/cri-containerd/cri-containerd/sandbox", "Metadata")
}

// Phase records how far RunPodSandbox got; it is persisted so recovery
// knows whether a sandbox was fully made.
type Phase string

const (
	// PhaseCreating: the containerd container exists; network or task may not.
	PhaseCreating Phase = "creating"
	// PhaseCreated: RunPodSandbox finished.
	PhaseCreated Phase = "created"
)

// Metadata is what the daemon persists about a sandbox (JSON in a containerd
// container extension). It never holds runtime state that containerd owns.
type Metadata struct {
	Version        int                          `json:"version"`
	ID             string                       `json:"id"`
	Name           string                       `json:"name"`
	Config         *runtimeapi.PodSandboxConfig `json:"config"`
	RuntimeHandler string                       `json:"runtimeHandler"`
	RuntimeType    string                       `json:"runtimeType"`
	NetNSPath      string                       `json:"netnsPath,omitempty"`
	IP             string                       `json:"ip,omitempty"`
	AdditionalIPs  []string                     `json:"additionalIPs,omitempty"`
	CNIResult      []byte                       `json:"cniResult,omitempty"`
	CreatedAt      int64                        `json:"createdAt"`
	Phase          Phase                        `json:"phase"`
	// NetworkTornDown is set once CNI DEL succeeded and the netns is gone.
	NetworkTornDown bool `json:"networkTornDown,omitempty"`
	// Resources and Overhead are the pod-level resources last set by
	// UpdatePodSandboxResources (nil: those of Config.Linux).
	Resources *runtimeapi.LinuxContainerResources `json:"resources,omitempty"`
	Overhead  *runtimeapi.LinuxContainerResources `json:"overhead,omitempty"`
	// ImageID is the pause image's config digest.
	ImageID string `json:"imageID,omitempty"`
	// ShimGroup is set when containerd holds a sandbox record named for
	// the sandbox (Options.ShimGroups): its containers are made with that
	// sandbox ID, and containerd creates their tasks in the pause's shim
	// directly instead of running the shim binary to find that shim.
	ShimGroup bool `json:"shimGroup,omitempty"`
}

// State is the CRI-visible state of a sandbox.
type State int

const (
	// StateUnknown: not yet known (e.g. during creation).
	StateUnknown State = iota
	// StateReady: the pause task runs.
	StateReady
	// StateNotReady: the pause task is gone or stopped.
	StateNotReady
)

// Sandbox is one pod sandbox in the store.
type Sandbox struct {
	Metadata

	// Container is the containerd container of the pause process.
	Container containerd.Container

	mu       sync.RWMutex
	state    State
	pid      uint32
	exitedAt time.Time
	exitCode uint32
	stopped  chan struct{}
	// stopLock serialises stop/remove on this sandbox (LockStop): a
	// channel, not a mutex, so that waiting for it ends with the request.
	stopLock chan struct{}
	// deleteLock serialises the deletions of the pause task (deletePause).
	deleteLock chan struct{}
	// noTask is true once containerd is known to hold no pause task (the
	// stop or the exit handler deleted it, or found none): the removal then
	// deletes the record and the snapshot without asking
	// (backend.DeleteContainer), and a stop asks nothing.
	noTask atomic.Bool
	// init is a pidfd of the pause process while it runs, when this daemon
	// started it and Options.SignalDirect is set (package pidfd).
	init pidfd.Init
	// imageVolumes is true once a container of the pod mounted (or tried
	// to mount) image volumes, or when not known (a sandbox recovery
	// loaded): the removal then releases them (two containerd calls,
	// one a listing of every snapshot).
	imageVolumes atomic.Bool
	// runEpoch is Options.ContainerdEpoch plus one as it was before Run
	// made the pause task; 0 when not known (a sandbox recovery loaded or
	// a failed Run kept). Set before publication.
	runEpoch uint64

	// ListWire is the sandbox's encoded ListPodSandbox entry, by CRI state
	// (the server makes and reads it; nothing else in the entry changes).
	ListWire listwire.Memo[runtimeapi.PodSandboxState]
}

// MarkImageVolumes records that a container of the pod mounts image
// volumes (before it mounts them).
func (s *Sandbox) MarkImageVolumes() { s.imageVolumes.Store(true) }

// NoTask reports whether containerd is known to hold no pause task.
func (s *Sandbox) NoTask() bool { return s.noTask.Load() }

// New returns a sandbox in StateUnknown.
func New(md Metadata) *Sandbox {
	s := &Sandbox{Metadata: md, stopped: make(chan struct{}), stopLock: make(chan struct{}, 1), deleteLock: make(chan struct{}, 1)}
	s.imageVolumes.Store(true) // not known; Run clears it
	return s
}

// LockStop takes the sandbox's stop/remove lock, or returns ctx's error
// when the request ends first (a stop stuck elsewhere, e.g. in a CNI DEL,
// must not make other requests on the pod outlive their deadline).
func (s *Sandbox) LockStop(ctx context.Context) error {
	select {
	case s.stopLock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for another stop or removal of sandbox %s: %w", s.ID, ctx.Err())
	}
}

// UnlockStop releases the lock LockStop took.
func (s *Sandbox) UnlockStop() { <-s.stopLock }

// State returns the current state and pause pid.
func (s *Sandbox) State() (State, uint32) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.state, s.pid
}

// SetReady records a running pause process. It only moves a sandbox out of
// StateUnknown: if the pause process's exit was already recorded (it died
// between task start and this call), the sandbox stays NotReady.
func (s *Sandbox) SetReady(pid uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != StateUnknown {
		return false
	}
	s.state = StateReady
	s.pid = pid
	return true
}

// SetNotReady records that the pause process exited (or never ran). It is
// idempotent and wakes Stopped waiters.
func (s *Sandbox) SetNotReady(code uint32, at time.Time) (changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == StateNotReady {
		return false
	}
	s.state = StateNotReady
	s.pid = 0
	s.exitCode = code
	s.exitedAt = at
	select {
	case <-s.stopped:
	default:
		close(s.stopped)
	}
	return true
}

// Stopped is closed once the sandbox is NotReady.
func (s *Sandbox) Stopped() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.stopped
}

// UpdateMetadata changes the in-memory metadata under the lock and returns a copy.
func (s *Sandbox) UpdateMetadata(f func(*Metadata)) Metadata {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.Metadata)
	return s.Metadata
}

// GetMetadata returns a copy of the metadata.
func (s *Sandbox) GetMetadata() Metadata {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.Metadata
}
