package e2e

import (
	"context"
	"encoding/hex"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// otlpReceiver is an OTLP/gRPC trace receiver in the test process.
type otlpReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu       sync.Mutex
	spans    []*tracepb.Span
	services map[string]bool
}

func (r *otlpReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				r.services[a.GetValue().GetStringValue()] = true
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) snapshot() []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.Span(nil), r.spans...)
}

// TestTracingSpanTreeOfRunPodSandbox: with --tracing-endpoint, one
// RunPodSandbox is one span whose descendants are the containerd calls it
// made (gRPC client spans, some below the containerd client's own spans)
// and its CNI ADD, in the same trace and within its time, exported over
// OTLP under the configured service name.
func TestTracingSpanTreeOfRunPodSandbox(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	recv := &otlpReceiver{services: map[string]bool{}}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, recv)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop) // after the daemon's cleanup, which flushes its spans here

	e := newCtrEnv(t, "--tracing-endpoint", "http://"+l.Addr().String(), "--tracing-service-name", "cri-containerd-e2e")
	podID, _ := e.runPod("traced")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.rc().StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}

	var run *tracepb.Span
	var children []*tracepb.Span
	deadline := time.Now().Add(30 * time.Second)
	for {
		spans := recv.snapshot()
		run, children = nil, nil
		for _, s := range spans {
			if strings.HasSuffix(s.GetName(), "RuntimeService/RunPodSandbox") {
				run = s
			}
		}
		if run != nil {
			children = descendants(spans, run)
		}
		if run != nil && hasSpan(children, "cni.Setup") && hasSpan(children, "Tasks/Start") {
			break
		}
		if time.Now().After(deadline) {
			names := []string{}
			for _, s := range spans {
				names = append(names, s.GetName())
			}
			t.Fatalf("no RunPodSandbox span tree after 30s; spans: %v; children: %d", names, len(children))
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, c := range children {
		if hex.EncodeToString(c.GetTraceId()) != hex.EncodeToString(run.GetTraceId()) {
			t.Errorf("child %s in trace %x, want %x", c.GetName(), c.GetTraceId(), run.GetTraceId())
		}
		if c.GetStartTimeUnixNano() < run.GetStartTimeUnixNano() || c.GetEndTimeUnixNano() > run.GetEndTimeUnixNano() {
			t.Errorf("child %s [%d, %d] outside its parent [%d, %d]", c.GetName(), c.GetStartTimeUnixNano(), c.GetEndTimeUnixNano(), run.GetStartTimeUnixNano(), run.GetEndTimeUnixNano())
		}
	}
	for _, want := range []string{"Containers/Create", "Tasks/Create", "Tasks/Start", "cni.Setup"} {
		if !hasSpan(children, want) {
			t.Errorf("RunPodSandbox has no descendant span %q", want)
		}
	}
	names := make([]string, 0, len(children))
	for _, c := range children {
		names = append(names, c.GetName())
	}
	t.Logf("RunPodSandbox span %x: %d descendants: %v", run.GetSpanId(), len(children), names)
	recv.mu.Lock()
	defer recv.mu.Unlock()
	if !recv.services["cri-containerd-e2e"] {
		t.Errorf("service names = %v, want cri-containerd-e2e", recv.services)
	}
}

// descendants are the spans below root, transitively.
func descendants(spans []*tracepb.Span, root *tracepb.Span) []*tracepb.Span {
	byParent := map[string][]*tracepb.Span{}
	for _, s := range spans {
		byParent[string(s.GetParentSpanId())] = append(byParent[string(s.GetParentSpanId())], s)
	}
	var out []*tracepb.Span
	queue := []*tracepb.Span{root}
	for len(queue) > 0 {
		kids := byParent[string(queue[0].GetSpanId())]
		queue = append(queue[1:], kids...)
		out = append(out, kids...)
	}
	return out
}

func hasSpan(spans []*tracepb.Span, suffix string) bool {
	for _, s := range spans {
		if strings.HasSuffix(s.GetName(), suffix) {
			return true
		}
	}
	return false
}

var _ = framework.BusyboxImageRef
