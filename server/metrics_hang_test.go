package server

import (
	"context"
	"testing"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"google.golang.org/grpc"

	"github.com/cri-containerd/cri-containerd/backend/backendtest"
)

// stuckShimTasks is a task API whose ListPids never answers (a hung shim)
// until the caller gives up.
type stuckShimTasks struct{ tasks.TasksClient }

func (stuckShimTasks) ListPids(ctx context.Context, _ *tasks.ListPidsRequest, _ ...grpc.CallOption) (*tasks.ListPidsResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

type stuckShimCtrd struct{ *backendtest.Ctrd }

func (stuckShimCtrd) TaskService() tasks.TasksClient { return stuckShimTasks{} }

// TestRegressionListPodSandboxMetricsHangsOnStuckShim: the live fuzzer
// (100,000 requests) saw ListPodSandboxMetrics hit its 30 s deadline: it
// asked every running container's shim for its processes (ListPids) with
// no bound of its own, and one shim did not answer. A shim's answer is now
// awaited for a second; the container is reported without process counts.
func TestRegressionListPodSandboxMetricsHangsOnStuckShim(t *testing.T) {
	s := benchStatsService(t, 2, 2)
	s.deps.Containerd = stuckShimCtrd{backendtest.NewCtrd()}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	out, err := s.listPodSandboxMetrics(ctx)
	if err != nil {
		t.Fatalf("ListPodSandboxMetrics: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("ListPodSandboxMetrics waited %s on a shim that does not answer", took)
	}
	n := 0
	for _, pm := range out {
		n += len(pm.GetContainerMetrics())
	}
	if len(out) != 2 || n != 4 {
		t.Errorf("%d pods, %d containers reported, want 2 and 4", len(out), n)
	}
}
