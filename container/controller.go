package container

import (
	"context"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/config"
	"github.com/cri-containerd/cri-containerd/containerio"
	"github.com/cri-containerd/cri-containerd/recovery"
	"github.com/cri-containerd/cri-containerd/registrar"
	"github.com/cri-containerd/cri-containerd/sandbox"
	"github.com/cri-containerd/cri-containerd/spec"
)

// Options is what a Controller is built from: the external dependencies,
// the stores it keeps, where containers keep their files, and the hooks of
// its owner (background goroutines, bounded fan-out, lifecycle events).
type Options struct {
	// Config is the daemon's configuration: its RootDir and StateDir hold
	// each container's directory under "containers/<id>" (persistent and
	// volatile respectively); runtimes, snapshotters and log settings.
	Config config.Config
	Deps   backend.Deps
	Store  *Store
	Names  *registrar.Registrar
	// Sandboxes are the pod sandboxes the containers run in.
	Sandboxes *sandbox.Store
	// HandlerFeatures are the features of a runtime handler (nil: none).
	HandlerFeatures func(handler string) *runtimeapi.RuntimeHandlerFeatures
	// LogErrors counts the log records that could not be written.
	LogErrors *containerio.LogErrorReporter
	// Go runs f in a background goroutine that the owner cancels and
	// joins when it stops; it reports false (and does not run f) once
	// the owner is stopping. Nil runs f in a plain goroutine.
	Go func(f func(ctx context.Context)) bool
	// Each runs f(i) for i in [0, n), bounded in concurrency and each
	// within a deadline. Nil runs them one by one.
	Each func(ctx context.Context, n int, f func(ctx context.Context, i int))
	// OnEvent is told about lifecycle changes (stopped, deleted...).
	OnEvent func(c *Container, t runtimeapi.ContainerEventType)
	// ReapShims kills the shims that still serve the container once its
	// containerd record is deleted (shims containerd forgot). Nil: none.
	ReapShims func(c *Container)
	// Leftovers keeps the rollback steps of failed CreateContainer calls
	// that containerd could not take; nil: they are only logged.
	Leftovers *backend.Leftovers
	// Recovery runs the recovery of the containers (bound and deadline).
	Recovery recovery.Runner
	// CleanupTimeout bounds an exit handler run in the background.
	CleanupTimeout time.Duration
	// SignalDirect makes a stop signal the init process of a container this
	// daemon started through a pidfd of it, without containerd and runc
	// (package pidfd). Unit tests with fake tasks (fake pids) leave it off.
	SignalDirect bool
	// SpecGen builds the OCI spec changes (resources).
	SpecGen *spec.Generator
	// Hooks are told of a creation or start before it is done (NRI);
	// nil: none.
	Hooks Hooks
	// RestrictOOM clamps oom_score_adj to the daemon's own.
	RestrictOOM bool
}

// Controller owns the lifecycle of workload containers: create, start, stop, remove, recovery,
// resource updates, the recording of exits and OOM kills, and the
// reconciliation of the tasks with containerd. It is safe for concurrent
// use; all its state is in the store and in the containers.
type Controller struct {
	o Options
}

// NewController returns a controller over o.
func NewController(o Options) *Controller {
	if o.Go == nil {
		o.Go = func(f func(context.Context)) bool {
			go f(context.Background())
			return true
		}
	}
	if o.Each == nil {
		o.Each = func(ctx context.Context, n int, f func(context.Context, int)) {
			for i := 0; i < n; i++ {
				f(ctx, i)
			}
		}
	}
	if o.OnEvent == nil {
		o.OnEvent = func(*Container, runtimeapi.ContainerEventType) {}
	}
	if o.ReapShims == nil {
		o.ReapShims = func(*Container) {}
	}
	if o.CleanupTimeout <= 0 {
		o.CleanupTimeout = time.Minute
	}
	if o.HandlerFeatures == nil {
		o.HandlerFeatures = func(string) *runtimeapi.RuntimeHandlerFeatures { return &runtimeapi.RuntimeHandlerFeatures{} }
	}
	if o.Sandboxes == nil {
		o.Sandboxes = sandbox.NewStore()
	}
	if o.Deps.Clock == nil {
		o.Deps.Clock = backend.SystemClock{}
	}
	return &Controller{o: o}
}

func (c *Controller) now() time.Time { return c.o.Deps.Clock.Now() }
