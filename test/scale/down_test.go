package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// teardownRecorder is a RuntimeServiceClient that records the order of a
// pod teardown's calls. Its StopContainer calls wait for each other (up to
// a bound), so that they only all return early when made concurrently.
type teardownRecorder struct {
	runtimeapi.RuntimeServiceClient
	mu      sync.Mutex
	calls   []string
	stops   int
	allIn   chan struct{}
	waitFor int
}

func (f *teardownRecorder) record(c string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
}

func (f *teardownRecorder) StopContainer(_ context.Context, r *runtimeapi.StopContainerRequest, _ ...grpc.CallOption) (*runtimeapi.StopContainerResponse, error) {
	f.mu.Lock()
	f.stops++
	if f.stops == f.waitFor {
		close(f.allIn)
	}
	f.mu.Unlock()
	select {
	case <-f.allIn:
		f.record("stop " + r.ContainerId)
	case <-time.After(2 * time.Second):
		f.record("stop-alone " + r.ContainerId)
	}
	return &runtimeapi.StopContainerResponse{}, nil
}

func (f *teardownRecorder) RemoveContainer(_ context.Context, r *runtimeapi.RemoveContainerRequest, _ ...grpc.CallOption) (*runtimeapi.RemoveContainerResponse, error) {
	f.record("rm " + r.ContainerId)
	return &runtimeapi.RemoveContainerResponse{}, nil
}

func (f *teardownRecorder) StopPodSandbox(context.Context, *runtimeapi.StopPodSandboxRequest, ...grpc.CallOption) (*runtimeapi.StopPodSandboxResponse, error) {
	f.record("stopp")
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

func (f *teardownRecorder) RemovePodSandbox(context.Context, *runtimeapi.RemovePodSandboxRequest, ...grpc.CallOption) (*runtimeapi.RemovePodSandboxResponse, error) {
	f.record("rmp")
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

// TestDownStopsContainersConcurrentlyThenThePodThenRemoves pins the
// kubelet-like teardown: the pod's containers stopped at once, then the
// sandbox, then the removals.
func TestDownStopsContainersConcurrentlyThenThePodThenRemoves(t *testing.T) {
	ctrs := []string{"a", "b", "c"}
	f := &teardownRecorder{allIn: make(chan struct{}), waitFor: len(ctrs)}
	r := &runner{cfg: Config{CallTimeout: time.Minute}, rc: f, rec: newRecorder()}
	r.down(context.Background(), &pod{id: "p", ctrs: ctrs})

	if len(f.calls) != 2*len(ctrs)+2 {
		t.Fatalf("calls %v", f.calls)
	}
	for i, c := range f.calls[:len(ctrs)] {
		if c[:5] != "stop " {
			t.Errorf("call %d = %q, want a stop made concurrently with the others (calls %v)", i, c, f.calls)
		}
	}
	want := []string{"stopp", "rm a", "rm b", "rm c", "rmp"}
	for i, w := range want {
		if got := f.calls[len(ctrs)+i]; got != w {
			t.Errorf("call %d = %q, want %q (calls %v)", len(ctrs)+i, got, w, f.calls)
		}
	}
	if n := len(r.rec.lat["StopContainer"]); n != len(ctrs) {
		t.Errorf("%d StopContainer latencies recorded, want %d", n, len(ctrs))
	}
}
