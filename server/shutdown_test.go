package server

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend/backendtest"
)

// TestRegressionShutdownHangsOnEventStream: on SIGTERM, Serve called
// GracefulStop without a deadline, and GetContainerEvents streams only ended
// when the client left (kubelet's evented PLEG never leaves): the daemon
// never exited. Serve must end the streams, stop within ShutdownTimeout, and
// stop and join its background goroutines before it returns.
func TestRegressionShutdownHangsOnEventStream(t *testing.T) {
	e, _ := newRecoveryEnv(t)
	dir, err := os.MkdirTemp("", "cri-shutdown-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	e.s.config.SocketPath = filepath.Join(dir, "cri.sock")
	e.s.config.ShutdownTimeout.Duration = time.Second
	watcherDone := make(chan struct{})
	e.s.watchers = []func(context.Context){func(ctx context.Context) {
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond) // a watcher that takes a moment to stop
		close(watcherDone)
	}}
	startState(t, e.s)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- e.s.Serve(ctx) }()

	conn, err := grpc.NewClient("unix://"+e.s.config.SocketPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rc := runtimeapi.NewRuntimeServiceClient(conn)
	backendtest.WaitFor(t, "the CRI socket", func() bool {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		defer ccancel()
		_, err := rc.Version(cctx, &runtimeapi.VersionRequest{})
		return err == nil
	})
	stream, err := rc.GetContainerEvents(context.Background(), &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	backendtest.WaitFor(t, "the event stream to be subscribed", func() bool {
		e.s.events.mu.Lock()
		defer e.s.events.mu.Unlock()
		return len(e.s.events.subs) == 1
	})

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after its context ended, with a GetContainerEvents stream open")
	}
	select {
	case <-watcherDone:
	default:
		t.Error("Serve returned before its watcher goroutine stopped")
	}
	recvErr := make(chan error, 1)
	go func() { _, err := stream.Recv(); recvErr <- err }()
	select {
	case err := <-recvErr:
		if err == nil {
			t.Error("event stream delivered an event instead of ending")
		}
	case <-time.After(30 * time.Second):
		t.Error("event stream still open after Serve returned")
	}
}
