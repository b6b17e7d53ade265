package server

import (
	"context"
	"path"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/containerio"
)

// Metrics holds the per-RPC Prometheus collectors.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	inflight *prometheus.GaugeVec
	cniOps   *prometheus.HistogramVec
	// logErrors counts (cri_containerd_container_log_write_errors_total)
	// and rate-limits the reports of container log records that could not
	// be written.
	logErrors *containerio.LogErrorReporter
}

// NewMetrics registers the RPC collectors in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cri_containerd_grpc_requests_total",
			Help: "CRI RPCs handled, by method and gRPC status code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cri_containerd_grpc_request_duration_seconds",
			Help:    "CRI RPC latency, by method and gRPC status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"method", "code"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cri_containerd_grpc_requests_in_flight",
			Help: "CRI RPCs currently being handled, by method.",
		}, []string{"method"}),
	}
	m.cniOps = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "cri_containerd_cni_operation_duration_seconds",
		Help:    "CNI setup/teardown latency, by operation and result.",
		Buckets: prometheus.DefBuckets,
	}, []string{"operation", "result"})
	logWriteErrors := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cri_containerd_container_log_write_errors_total",
		Help: "Container log records dropped because the log file could not be written (e.g. a full disk).",
	})
	m.logErrors = &containerio.LogErrorReporter{Counter: logWriteErrors}
	reg.MustRegister(m.requests, m.latency, m.inflight, m.cniOps, logWriteErrors)
	return m
}

// readOnly RPCs are polled constantly by kubelet; they are logged at a higher verbosity.
var readOnly = map[string]bool{
	"Version": true, "Status": true, "ListPodSandbox": true, "PodSandboxStatus": true,
	"ListContainers": true, "ContainerStatus": true, "ListImages": true, "ImageStatus": true,
	"ImageFsInfo": true, "ContainerStats": true, "ListContainerStats": true, "PodSandboxStats": true,
	"ListPodSandboxStats": true, "ListMetricDescriptors": true, "ListPodSandboxMetrics": true,
	"RuntimeConfig": true, "ExecSync": true,
}

func (m *Metrics) observe(method string, start time.Time, err error) {
	code := status.Code(err).String()
	m.requests.WithLabelValues(method, code).Inc()
	m.latency.WithLabelValues(method, code).Observe(time.Since(start).Seconds())
}

func logLevel(method string) klog.Level {
	if readOnly[method] {
		return 5
	}
	return 2
}

// UnaryInterceptor logs, times and maps the errors of every unary CRI RPC.
func (m *Metrics) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := path.Base(info.FullMethod)
	start := time.Now()
	lvl := logLevel(method)
	m.inflight.WithLabelValues(method).Inc()
	defer m.inflight.WithLabelValues(method).Dec()
	klog.V(lvl).InfoS("CRI request", "method", method, "request", redactRequest(req))
	resp, err := validated(ctx, info.Server, req, handler) // validate.go: bad requests never reach a handler
	err = toGRPC(err)
	m.observe(method, start, err)
	if err != nil {
		klog.V(lvl).InfoS("CRI request failed", "method", method, "code", status.Code(err).String(), "err", err, "duration", time.Since(start))
		if lvl <= 2 {
			klog.ErrorS(err, "CRI request failed", "method", method, "code", status.Code(err).String())
		}
		return nil, err
	}
	klog.V(lvl+1).InfoS("CRI response", "method", method, "response", resp, "duration", time.Since(start))
	return resp, nil
}

// StreamInterceptor does the same for server-streaming RPCs.
func (m *Metrics) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	method := path.Base(info.FullMethod)
	start := time.Now()
	m.inflight.WithLabelValues(method).Inc()
	defer m.inflight.WithLabelValues(method).Dec()
	klog.V(4).InfoS("CRI stream opened", "method", method)
	err := toGRPC(handler(srv, validatingStream(srv, ss)))
	m.observe(method, start, err)
	klog.V(4).InfoS("CRI stream closed", "method", method, "err", err, "duration", time.Since(start))
	return err
}

// observeCNI records a CNI operation's latency and result.
func (s *Service) observeCNI(op string, start time.Time, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	s.metrics.cniOps.WithLabelValues(op, result).Observe(time.Since(start).Seconds())
}
