package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/typeurl/v2"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/sandbox"
)

// subscribeTaskEvents subscribes to the exit and OOM events of our namespace's tasks.
func (s *Service) subscribeTaskEvents(ctx context.Context) (<-chan *events.Envelope, <-chan error) {
	return s.deps.Containerd.Subscribe(ctx,
		fmt.Sprintf(`namespace==%q,topic=="/tasks/exit"`, s.config.ContainerdNamespace),
		fmt.Sprintf(`namespace==%q,topic=="/tasks/oom"`, s.config.ContainerdNamespace),
	)
}

// monitorEvents follows containerd's task events on the subscription
// syncState opened before recovery (evCh, errCh; cancel ends it). Until
// recovered is closed the events are only held; then they are handled in
// order and the tasks are reconciled once with containerd. Whenever the
// stream breaks (e.g. containerd restarts) it re-subscribes and reconciles.
func (s *Service) monitorEvents(ctx context.Context, evCh <-chan *events.Envelope, errCh <-chan error, cancel context.CancelFunc, recovered <-chan struct{}) {
	backoff := 100 * time.Millisecond
	var pending []*events.Envelope
	var broken error
hold:
	for {
		select {
		case <-ctx.Done():
			cancel()
			return
		case <-recovered:
			break hold
		case e := <-evCh:
			pending = append(pending, e)
		case err := <-errCh:
			// Re-subscribed (and reconciled) once recovery is done.
			s.ctrdEpoch.Add(1)
			broken = fmt.Errorf("task event stream: %w", err)
			evCh, errCh = nil, nil
		}
	}
	hctx := s.nsCtx(context.WithoutCancel(ctx))
	for _, e := range pending {
		s.handleEvent(hctx, e)
	}
	// An exit that happened before the subscription reached containerd has
	// no event: ask containerd.
	s.reconcileTasks(s.nsCtx(ctx))
	for ctx.Err() == nil {
		if broken == nil {
			broken = s.consumeEvents(ctx, evCh, errCh, &backoff)
			s.ctrdEpoch.Add(1)
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		klog.ErrorS(broken, "containerd event stream broken; re-subscribing", "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
		var sctx context.Context
		sctx, cancel = context.WithCancel(ctx)
		evCh, errCh = s.subscribeTaskEvents(sctx)
		// Exits that happened while we were not subscribed are found by asking containerd.
		s.reconcileTasks(s.nsCtx(ctx))
		// Rollbacks that gave up while containerd was away, aside: each
		// step may wait for containerd up to its bound.
		if s.leftovers.Len() > 0 {
			s.bg.Go(func(ctx context.Context) { s.leftovers.Retry(s.nsCtx(ctx)) })
		}
		broken = nil
	}
	cancel()
}

func (s *Service) consumeEvents(ctx context.Context, evCh <-chan *events.Envelope, errCh <-chan error, backoff *time.Duration) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errCh:
			if err == nil {
				err = errors.New("task event stream closed")
			}
			return err
		case e := <-evCh:
			*backoff = 100 * time.Millisecond
			s.handleEvent(s.nsCtx(context.WithoutCancel(ctx)), e)
		}
	}
}

func (s *Service) handleEvent(ctx context.Context, e *events.Envelope) {
	v, err := typeurl.UnmarshalAny(e.Event)
	if err != nil {
		klog.ErrorS(err, "Decoding containerd event", "topic", e.Topic)
		return
	}
	switch ev := v.(type) {
	case *eventtypes.TaskExit:
		klog.V(4).InfoS("Task exit", "container", ev.ContainerID, "execID", ev.ID, "status", ev.ExitStatus)
		if ev.ID != ev.ContainerID {
			return // an exec process; its caller waits on it
		}
		at := time.Now()
		if ev.ExitedAt != nil {
			at = ev.ExitedAt.AsTime()
		}
		if sb, err := s.sandboxes.Get(ev.ContainerID); err == nil && sb.ID == ev.ContainerID {
			s.handleSandboxExit(ctx, sb, ev.ExitStatus, at)
			return
		}
		// Recording an exit waits for the container's output to drain (up to
		// container.IODrainTimeout): do it aside so one slow container does not hold
		// up the exits of others (a pod stop kills them all at once).
		s.ctrs().HandleExitAsync(ctx, ev.ContainerID, ev.ExitStatus, at)
	case *eventtypes.TaskOOM:
		s.ctrs().HandleOOM(ctx, ev.ContainerID)
	}
}

// handleSandboxExit marks the sandbox NotReady and reaps the pause task,
// aside like a container's exit: deleting the task waits for the shim
// (seconds on a loaded node), and every exit behind it in the stream
// (those a pod stop waits for among them) would wait too.
func (s *Service) handleSandboxExit(ctx context.Context, sb *sandbox.Sandbox, code uint32, at time.Time) {
	if !s.bg.Go(func(context.Context) { s.sandboxController().HandleExit(ctx, sb, code, at) }) {
		s.sandboxController().HandleExit(ctx, sb, code, at) // stopping: in line
	}
}

// reconcileTasks asks containerd for the state of every task we think
// runs, each within config.RecoveryTimeout and at most
// config.RecoveryConcurrency at once (a hung shim holds up only its own).
func (s *Service) reconcileTasks(ctx context.Context) {
	s.sandboxController().Reconcile(ctx)
	s.ctrs().Reconcile(ctx)
}

// leftoverRetryPeriod is how often rollback steps left over are retried
// besides after each re-subscription (a rollback may give up just after
// the re-subscription that followed containerd's return).
const leftoverRetryPeriod = 30 * time.Second

// retryLeftovers retries the rollback steps left over every period until ctx
// ends.
func (s *Service) retryLeftovers(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s.leftovers.Len() > 0 {
				s.leftovers.Retry(s.nsCtx(ctx))
			}
		}
	}
}
