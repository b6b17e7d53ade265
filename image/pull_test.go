package image

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
)

func TestClassifyPullError(t *testing.T) {
	status := func(code int) error {
		return fmt.Errorf("resolving: %w", remoteerrors.ErrUnexpectedStatus{StatusCode: code, Status: fmt.Sprint(code)})
	}
	for _, tc := range []struct {
		name string
		err  error
		is   func(error) bool
	}{
		{"wrong credentials", fmt.Errorf("pull access denied: %w", docker.ErrInvalidAuthorization), errdefs.IsUnauthorized},
		{"401", status(401), errdefs.IsUnauthorized},
		{"403", status(403), errdefs.IsPermissionDenied},
		{"404", status(404), errdefs.IsNotFound},
		{"429", status(429), errdefs.IsResourceExhausted},
		{"503", status(503), errdefs.IsUnavailable},
		{"not found", fmt.Errorf("x: %w", errdefs.ErrNotFound), errdefs.IsNotFound},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, errdefs.IsUnavailable},
		{"dns", &net.DNSError{Err: "no such host", Name: "nope.invalid"}, errdefs.IsUnavailable},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := classifyPullError("r", tc.err)
			if !tc.is(got) {
				t.Fatalf("classifyPullError(%v) = %v: wrong class", tc.err, got)
			}
		})
	}
}

func TestFlightGroupDeduplicates(t *testing.T) {
	var g flightGroup
	var runs atomic.Int32
	release := make(chan struct{})
	fn := func(ctx context.Context) (Image, error) {
		runs.Add(1)
		<-release
		return Image{ID: "sha256:x"}, nil
	}
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Go(func() {
			img, err := g.do(context.Background(), "k", fn)
			if err != nil || img.ID != "sha256:x" {
				t.Errorf("do = %v, %v", img, err)
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if n := runs.Load(); n != 1 {
		t.Errorf("fn ran %d times, want 1", n)
	}
}

func TestFlightGroupCancelsWhenAllWaitersLeave(t *testing.T) {
	var g flightGroup
	cancelled := make(chan struct{})
	fn := func(ctx context.Context) (Image, error) {
		<-ctx.Done()
		close(cancelled)
		return Image{}, ctx.Err()
	}
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Hour)
	errs := make(chan error, 2)
	go func() { _, err := g.do(ctx1, "k", fn); errs <- err }()
	go func() { _, err := g.do(ctx2, "k", fn); errs <- err }()
	time.Sleep(50 * time.Millisecond)
	cancel1()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("first waiter: %v", err)
	}
	select {
	case <-cancelled:
		t.Fatal("shared pull cancelled while a waiter remained")
	case <-time.After(50 * time.Millisecond):
	}
	cancel2()
	<-errs
	select {
	case <-cancelled:
	case <-time.After(time.Second):
		t.Fatal("shared pull not cancelled after the last waiter left")
	}
}
