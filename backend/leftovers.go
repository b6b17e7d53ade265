package backend

import (
	"context"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"k8s.io/klog/v2"
)

// maxLeftoverFailures is how many retries of a step may fail for another
// reason than containerd being unreachable before the step is given up.
const maxLeftoverFailures = 10

// Leftovers keeps the rollback steps of failed creates that could not be
// done: containerd stayed unreachable for longer than the rollback's bound
// (CleanupTimeout), or refused. Without it a pod or container create cut by
// a containerd outage of more than a minute leaves its containerd container,
// snapshot, sandbox record and pause task (with its shim) until the daemon
// restarts, since no store holds them and kubelet never hears of them. The
// event monitor retries them once containerd is back (Retry after each
// re-subscription) and the owner retries them periodically.
//
// Steps are kept per object ID, in the order they were added (a rollback
// runs its undo steps in order: the pause task before its container); a
// retry stops at an object's first step that fails. A step is done when it
// returns nil or NotFound. One that fails for another reason than
// containerd being unreachable maxLeftoverFailures times is given up
// (logged). A nil *Leftovers keeps nothing.
type Leftovers struct {
	// Timeout bounds each rollback step made through Rollback (default
	// CleanupTimeout).
	Timeout time.Duration

	mu    sync.Mutex
	order []string // object IDs in the order first added
	steps map[string][]*leftoverStep
	retry sync.Mutex // one Retry at a time
}

type leftoverStep struct {
	what     string
	f        func(context.Context) error
	failures int
}

// Rollback runs one undo step of a failed create, with a context that
// survives the request's cancellation, retrying while containerd is
// unreachable, up to Timeout. A step that is still not done is kept for
// Retry (unless l is nil) and logged. It reports whether the step is done.
func (l *Leftovers) Rollback(ctx context.Context, id, what string, log klog.Logger, f func(context.Context) error) bool {
	timeout := l.stepTimeout()
	if l.pending(id) {
		// An earlier step of this object is kept: this one comes after it.
		log.Info("Rollback: "+what+" kept until an earlier step is done", "id", id)
		l.add(id, what, f)
		return false
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	err := RetryWhileUnavailable(cctx, f)
	if err == nil || errdefs.IsNotFound(err) {
		return true
	}
	if l == nil {
		log.Error(err, "Rollback: "+what)
		return false
	}
	log.Error(err, "Rollback: "+what+"; retried once containerd is back", "id", id)
	l.add(id, what, f)
	return false
}

// stepTimeout bounds one step: Timeout, CleanupTimeout by default (also
// for a nil l).
func (l *Leftovers) stepTimeout() time.Duration {
	if l != nil && l.Timeout > 0 {
		return l.Timeout
	}
	return CleanupTimeout
}

// pending reports whether steps of object id are kept.
func (l *Leftovers) pending(id string) bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.steps[id]) > 0
}

// add keeps a step of object id.
func (l *Leftovers) add(id, what string, f func(context.Context) error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.steps == nil {
		l.steps = map[string][]*leftoverStep{}
	}
	if _, ok := l.steps[id]; !ok {
		l.order = append(l.order, id)
	}
	l.steps[id] = append(l.steps[id], &leftoverStep{what: what, f: f})
}

// Len is the number of objects with steps kept.
func (l *Leftovers) Len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.steps)
}

// Retry runs the kept steps, each object's in order, each step within
// Timeout; it returns the number of objects still left.
func (l *Leftovers) Retry(ctx context.Context) int {
	if l == nil {
		return 0
	}
	l.retry.Lock()
	defer l.retry.Unlock()
	l.mu.Lock()
	ids := append([]string(nil), l.order...)
	l.mu.Unlock()
	timeout := l.stepTimeout()
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		l.mu.Lock()
		steps := append([]*leftoverStep(nil), l.steps[id]...)
		l.mu.Unlock()
		done := 0
		for _, s := range steps {
			sctx, cancel := context.WithTimeout(ctx, timeout)
			err := s.f(sctx)
			cancel()
			if err == nil || errdefs.IsNotFound(err) {
				klog.InfoS("Rollback left over finished", "id", id, "step", s.what)
				done++
				continue
			}
			if !isUnavailable(err) {
				s.failures++
				if s.failures >= maxLeftoverFailures {
					klog.ErrorS(err, "Rollback left over given up", "id", id, "step", s.what, "attempts", s.failures)
					done++
					continue
				}
			}
			klog.V(2).InfoS("Rollback left over still failing", "id", id, "step", s.what, "err", err)
			break
		}
		l.mu.Lock()
		if rest := l.steps[id][done:]; len(rest) == 0 {
			delete(l.steps, id)
			for i, o := range l.order {
				if o == id {
					l.order = append(l.order[:i:i], l.order[i+1:]...)
					break
				}
			}
		} else {
			l.steps[id] = rest
		}
		l.mu.Unlock()
	}
	return l.Len()
}
