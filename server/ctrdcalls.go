package server

import (
	"context"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// Every call to containerd is a socket round trip for us (an in-process call
// for containerd's built-in CRI), so their number per CRI request is what
// container operations cost. The containerd connection carries client
// interceptors that count each call by containerd method and, when the call
// is made on behalf of a CRI request, against that request; the server
// interceptor then observes the request's count by CRI method.

// ctrdCallsKey is the context key of a request's containerd call count.
type ctrdCallsKey struct{}

// withCtrdCallCount returns ctx with a fresh containerd call counter.
func withCtrdCallCount(ctx context.Context) (context.Context, *atomic.Int64) {
	n := new(atomic.Int64)
	return context.WithValue(ctx, ctrdCallsKey{}, n), n
}

func (m *Metrics) countCtrdCall(ctx context.Context, method string) {
	m.ctrdCalls.WithLabelValues(strings.TrimPrefix(method, "/")).Inc()
	if n, ok := ctx.Value(ctrdCallsKey{}).(*atomic.Int64); ok {
		n.Add(1)
	}
}

// CtrdDialOpts are the containerd connection's counting interceptors.
func (m *Metrics) CtrdDialOpts() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			m.countCtrdCall(ctx, method)
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			m.countCtrdCall(ctx, method)
			return streamer(ctx, desc, cc, method, opts...)
		}),
	}
}

func newCtrdCallMetrics() (*prometheus.CounterVec, *prometheus.HistogramVec) {
	calls := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cri_containerd_containerd_requests_total",
		Help: "Calls made to containerd, by containerd gRPC method.",
	}, []string{"method"})
	perRequest := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "cri_containerd_containerd_calls_per_request",
		Help:    "Calls made to containerd while handling one CRI request, by CRI method.",
		Buckets: []float64{0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64},
	}, []string{"method"})
	return calls, perRequest
}
