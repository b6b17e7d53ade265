package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/backend/backendtest"
)

// TestRegressionRunPodSandboxRollbackLeftByLongOutage: a RunPodSandbox that
// fails while containerd stays unreachable for longer than the rollback's
// bound used to leave the pause's containerd container and its snapshot
// until the daemon restarted. The deletion is kept and done once containerd
// answers again: by the periodic retry here, by the event monitor's
// re-subscription in the daemon.
func TestRegressionRunPodSandboxRollbackLeftByLongOutage(t *testing.T) {
	e := newTestEnv(t)
	e.s.leftovers = &backend.Leftovers{Timeout: 200 * time.Millisecond}
	down := status.Error(codes.Unavailable, "connection error: connect: connection refused")
	undo := e.configureCtr(func(c *backendtest.Container) {
		c.NewTaskErr = backendtest.ErrInjected
		c.DeleteErr = down
	})
	_, err := e.s.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: podConfig("web")})
	undo()
	if !errors.Is(err, backendtest.ErrInjected) {
		t.Fatalf("RunPodSandbox: %v, want the injected NewTask failure", err)
	}
	if len(e.ctrd.Created) != 1 {
		t.Fatalf("%d containerd containers created, want 1", len(e.ctrd.Created))
	}
	pause := e.ctrd.Created[0]
	if deleted, _, _ := pause.State(); deleted {
		t.Fatal("the pause container was deleted while containerd was down")
	}
	if n := e.s.leftovers.Len(); n != 1 {
		t.Fatalf("%d objects left over, want 1", n)
	}

	// containerd is back.
	pause.Mu.Lock()
	pause.DeleteErr = nil
	pause.Mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.s.retryLeftovers(ctx, 20*time.Millisecond)
	backendtest.WaitFor(t, "the left over rollback to be done", func() bool { return e.s.leftovers.Len() == 0 })
	if deleted, cleanup, _ := pause.State(); !deleted || !cleanup {
		t.Errorf("pause container: deleted %v with snapshot cleanup %v", deleted, cleanup)
	}
	if n := e.s.sandboxNames.Len(); n != 0 {
		t.Errorf("%d sandbox names still reserved", n)
	}
}
