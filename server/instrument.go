package server

import (
	"context"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/containerio"
	"github.com/cri-containerd/cri-containerd/listwire"
)

// Metrics holds the per-RPC Prometheus collectors.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	inflight *prometheus.GaugeVec
	cniOps   *prometheus.HistogramVec
	// ctrdCalls counts calls to containerd by containerd method;
	// ctrdPerRequest observes them per CRI request (ctrdcalls.go).
	ctrdCalls      *prometheus.CounterVec
	ctrdPerRequest *prometheus.HistogramVec
	// reapedShims counts shims killed because containerd lost their task.
	reapedShims prometheus.Counter
	// logErrors counts (cri_containerd_container_log_write_errors_total)
	// and rate-limits the reports of container log records that could not
	// be written.
	logErrors *containerio.LogErrorReporter
	// leftovers are the rollback steps containerd could not take yet
	// (Service.leftovers), counted by cri_containerd_rollback_leftovers.
	leftovers *backend.Leftovers
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
	// Read when collected: it adds the counts of the shim-side log writers.
	m.logErrors = &containerio.LogErrorReporter{}
	logWriteErrors := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "cri_containerd_container_log_write_errors_total",
		Help: "Container log records dropped because the log file could not be written (e.g. a full disk), by the daemon or by the shim-side log writers.",
	}, m.logErrors.Total)
	m.ctrdCalls, m.ctrdPerRequest = newCtrdCallMetrics()
	m.reapedShims = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cri_containerd_reaped_shims_total",
		Help: "Shims killed when their sandbox or container was removed because containerd no longer knew their task.",
	})
	m.leftovers = &backend.Leftovers{}
	leftovers := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cri_containerd_rollback_leftovers",
		Help: "Sandboxes and containers whose failed create could not be undone yet because containerd was unreachable (retried once it is back).",
	}, func() float64 { return float64(m.leftovers.Len()) })
	reg.MustRegister(m.requests, m.latency, m.inflight, m.cniOps, logWriteErrors, m.ctrdCalls, m.ctrdPerRequest, m.reapedShims, leftovers)
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
	logger := klog.FromContext(ctx)
	// The redacted copies (a clone of a request with secrets) are made only
	// when the line is logged.
	if v := logger.V(int(lvl)); v.Enabled() {
		v.Info("CRI request", "method", method, "request", redactForLog(req))
	}
	ctx, calls := withCtrdCallCount(ctx)
	resp, err := validated(ctx, info.Server, req, handler) // validate.go: bad requests never reach a handler
	err = toGRPC(err)
	m.observe(method, start, err)
	m.ctrdPerRequest.WithLabelValues(method).Observe(float64(calls.Load()))
	if err != nil {
		klog.V(lvl).InfoS("CRI request failed", "method", method, "code", status.Code(err).String(), "err", err, "duration", time.Since(start))
		if lvl <= 2 {
			klog.ErrorS(err, "CRI request failed", "method", method, "code", status.Code(err).String())
		}
		return nil, err
	}
	if v := logger.V(int(lvl) + 1); v.Enabled() {
		v.Info("CRI response", "method", method, "response", redactForLog(resp), "duration", time.Since(start))
	}
	return resp, nil
}

// redacted replaces a secret in a logged message.
const redacted = "<redacted>"

// redactForLog returns msg (a CRI request or response) fit for the request
// log, at any verbosity: container environment values, ExecSync output,
// registry credentials, verbose container info (which holds the environment)
// and the tokens of streaming URLs are masked. msg itself is never modified;
// a message with nothing to mask is returned as is.
func redactForLog(msg any) any {
	switch m := msg.(type) {
	case *runtimeapi.CreateContainerRequest:
		if len(m.GetConfig().GetEnvs()) == 0 {
			return msg
		}
		c := proto.Clone(m).(*runtimeapi.CreateContainerRequest)
		for _, kv := range c.Config.Envs {
			kv.Value = redactedBytes(kv.Value)
		}
		return c
	case *runtimeapi.PullImageRequest:
		return redactRequest(m)
	case *runtimeapi.ExecSyncResponse:
		if len(m.GetStdout()) == 0 && len(m.GetStderr()) == 0 {
			return msg
		}
		c := proto.Clone(m).(*runtimeapi.ExecSyncResponse)
		c.Stdout, c.Stderr = redactedBytes(c.Stdout), redactedBytes(c.Stderr)
		return c
	case *runtimeapi.ContainerStatusResponse:
		if len(m.GetInfo()) == 0 {
			return msg
		}
		c := proto.Clone(m).(*runtimeapi.ContainerStatusResponse)
		for k, v := range c.Info {
			c.Info[k] = fmt.Sprintf("%s %d bytes", redacted, len(v))
		}
		return c
	case *runtimeapi.ExecResponse:
		return &runtimeapi.ExecResponse{Url: redactURL(m.GetUrl())}
	case *runtimeapi.ListContainersResponse:
		return listwire.Decode(m) // wireServer's entries are bytes
	case *runtimeapi.ListPodSandboxResponse:
		return listwire.Decode(m)
	case *runtimeapi.AttachResponse:
		return &runtimeapi.AttachResponse{Url: redactURL(m.GetUrl())}
	case *runtimeapi.PortForwardResponse:
		return &runtimeapi.PortForwardResponse{Url: redactURL(m.GetUrl())}
	}
	return msg
}

func redactedBytes(b []byte) []byte {
	if len(b) == 0 {
		return b
	}
	return fmt.Appendf(nil, "%s %d bytes", redacted, len(b))
}

// redactURL keeps the scheme, host and kind (exec, attach, portforward) of a
// streaming URL and masks the rest: the single-use token is a credential.
func redactURL(raw string) string {
	if raw == "" {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return redacted
	}
	kind, _, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	return (&url.URL{Scheme: u.Scheme, Host: u.Host}).String() + "/" + kind + "/" + redacted
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
