package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/config"
	"github.com/cri-containerd/cri-containerd/recovery"
	"github.com/cri-containerd/cri-containerd/registrar"
	"github.com/cri-containerd/cri-containerd/spec"
)

// Options is what a Controller works with. Everything external goes
// through Deps; the server keeps the CRI events and metrics and hears of
// them through the callbacks.
type Options struct {
	Config config.Config
	Deps   backend.Deps
	// Store and Names are the sandboxes and their reserved CRI names.
	Store *Store
	Names *registrar.Registrar
	// SpecGen builds the pause container's OCI spec.
	SpecGen *spec.Generator
	// Hooks are told of a pod before it is visible (NRI); nil: none.
	Hooks Hooks
	// RestrictOOMScoreAdj clamps oom_score_adj to the daemon's own.
	RestrictOOMScoreAdj bool
	// PodCIDRs are the node's pod CIDRs of the moment (may be nil).
	PodCIDRs func() []string
	// ObserveCNI, when set, is told of each CNI call (op "setup"/"teardown").
	ObserveCNI func(op string, start time.Time, err error)
	// OnEvent, when set, is told of each lifecycle change of a sandbox.
	OnEvent func(sb *Sandbox, kind runtimeapi.ContainerEventType)
	// ImageVolumes, when set, releases the image volumes the pod's
	// containers mounted (they live in the sandbox's directories but are
	// made by the container side). Nil: the pod has none.
	ImageVolumes ImageVolumes
	// Each runs f(i) for i in [0, n), bounded in concurrency and each
	// within a deadline (a hung shim holds up only its own). Nil runs them
	// one by one.
	Each func(ctx context.Context, n int, f func(ctx context.Context, i int))
	// ReapShims, when set, kills the shims that still serve id after its
	// containerd container was deleted (containerd can lose a task whose
	// shim keeps running); handler is the pod's runtime handler.
	ReapShims func(id, handler string)
	// ContainerdEpoch, when set, counts the breaks of containerd's event
	// stream (every containerd restart is one). containerd loses a task
	// whose shim keeps running only when it dies while making it: a pod
	// this process ran with no break since before its pause task was made
	// needs no ReapShims at its removal (a /proc scan, ~13 ms with 800
	// processes). Nil: every removal reaps.
	ContainerdEpoch func() uint64
	// SignalDirect makes a stop kill the pause process this daemon started
	// through a pidfd of it, without containerd and runc (package pidfd).
	// Unit tests with fake tasks (fake pids) leave it off.
	SignalDirect bool
	// Leftovers keeps the rollback steps of failed RunPodSandbox calls that
	// containerd could not take (an outage longer than the rollback's bound);
	// nil: they are only logged.
	Leftovers *backend.Leftovers
	// Recovery runs the recovery of the sandboxes (bound and deadline).
	Recovery recovery.Runner
	// ShimGroups makes each pod a containerd sandbox record (containerd
	// 2.x), so that its containers' tasks join the pause's shim directly
	// (see Metadata.ShimGroup).
	ShimGroups bool
}

// ImageVolumes releases the image volumes of a pod.
type ImageVolumes interface {
	// Unmount unmounts the pod's image volumes (stop).
	Unmount(sandboxID string) error
	// Remove unmounts them and drops their snapshots and lease (remove).
	Remove(ctx context.Context, sandboxID, snapshotter string)
}

type noImageVolumes struct{}

func (noImageVolumes) Unmount(string) error                   { return nil }
func (noImageVolumes) Remove(context.Context, string, string) {}

// Controller owns the lifecycle of pod sandboxes: create and start (Run),
// stop, remove, the recording of pause exits, and recovery at start-up.
type Controller struct {
	o Options
}

// NewController is a controller working with o.
func NewController(o Options) *Controller {
	if o.ImageVolumes == nil {
		o.ImageVolumes = noImageVolumes{}
	}
	if o.Each == nil {
		o.Each = func(ctx context.Context, n int, f func(context.Context, int)) {
			for i := 0; i < n; i++ {
				f(ctx, i)
			}
		}
	}
	if o.Deps.Clock == nil {
		o.Deps.Clock = backend.SystemClock{}
	}
	return &Controller{o: o}
}

func (c *Controller) now() time.Time { return c.o.Deps.Clock.Now() }

func (c *Controller) podCIDRs() []string {
	if c.o.PodCIDRs == nil {
		return nil
	}
	return c.o.PodCIDRs()
}

func (c *Controller) observeCNI(op string, start time.Time, err error) {
	if c.o.ObserveCNI != nil {
		c.o.ObserveCNI(op, start, err)
	}
}

func (c *Controller) emit(sb *Sandbox, kind runtimeapi.ContainerEventType) {
	if c.o.OnEvent != nil {
		c.o.OnEvent(sb, kind)
	}
}

// NewID is a new random sandbox or container ID (64 hex digits).
func NewID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Name is the unique CRI name of a pod sandbox.
func Name(md *runtimeapi.PodSandboxMetadata) string {
	return strings.Join([]string{md.GetName(), md.GetNamespace(), md.GetUid(), fmt.Sprint(md.GetAttempt())}, "_")
}

// Annotations are the CRI annotations of a pause container's spec.
func Annotations(id string, cfg *runtimeapi.PodSandboxConfig) map[string]string {
	return map[string]string{
		"io.kubernetes.cri.container-type": "sandbox",
		AnnotationID:                       id,
		AnnotationName:                     cfg.GetMetadata().GetName(),
		AnnotationNamespace:                cfg.GetMetadata().GetNamespace(),
		AnnotationUID:                      cfg.GetMetadata().GetUid(),
		AnnotationLogDirectory:             cfg.GetLogDirectory(),
	}
}
