package server

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestContainerdCallsCountedPerRequest: calls made on the containerd
// connection while a CRI request is handled are counted by containerd method
// and observed per CRI method; calls outside a request only by method.
func TestContainerdCallsCountedPerRequest(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)

	// A gRPC server standing in for containerd, dialled with the counting options.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()
	cc, err := grpc.NewClient(l.Addr().String(), append(m.CtrdDialOpts(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)

	handler := func(ctx context.Context, _ any) (any, error) {
		for range 3 {
			if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				return nil, err
			}
		}
		return &runtimeapi.VersionResponse{}, nil
	}
	info := &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.RuntimeService/Version", Server: &Service{}}
	if _, err := m.UnaryInterceptor(context.Background(), &runtimeapi.VersionRequest{}, info, handler); err != nil {
		t.Fatal(err)
	}
	// A call outside any CRI request (a background loop).
	if _, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}

	if got := testutil.ToFloat64(m.ctrdCalls.WithLabelValues("grpc.health.v1.Health/Check")); got != 4 {
		t.Errorf("containerd calls by method = %v, want 4", got)
	}
	want := `
# HELP cri_containerd_containerd_calls_per_request Calls made to containerd while handling one CRI request, by CRI method.
# TYPE cri_containerd_containerd_calls_per_request histogram
cri_containerd_containerd_calls_per_request_bucket{method="Version",le="0"} 0
cri_containerd_containerd_calls_per_request_bucket{method="Version",le="1"} 0
cri_containerd_containerd_calls_per_request_bucket{method="Version",le="2"} 0
cri_containerd_containerd_calls_per_request_bucket{method="Version",le="3"} 1
cri_containerd_containerd_calls_per_request_bucket{method="Version",le="4"} 1
cri_containerd_containerd_calls_per_request_bucket{method="Version",le="6"} 1
cri_containerd_containerd_calls_per_request_bucket{method="Version",le="8"} 1
cri_containerd_containerd_calls_per_request_bucket{method="Version",le="12"} 1
cri_containerd_containerd_calls_per_request_bucket{method="Version",le="16"} 1
cri_containerd_containerd_calls_per_request_bucket{method="Version",le="24"} 1
cri_containerd_containerd_calls_per_request_bucket{method="Version",le="32"} 1
cri_containerd_containerd_calls_per_request_bucket{method="Version",le="48"} 1
cri_containerd_containerd_calls_per_request_bucket{method="Version",le="64"} 1
cri_containerd_containerd_calls_per_request_bucket{method="Version",le="+Inf"} 1
cri_containerd_containerd_calls_per_request_sum{method="Version"} 3
cri_containerd_containerd_calls_per_request_count{method="Version"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "cri_containerd_containerd_calls_per_request"); err != nil {
		t.Error(err)
	}
}
